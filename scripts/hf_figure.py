"""Draw docs/figures/hf_models.png: cleargrad on HuggingFace image classifiers built from
tiny configs at random init (nothing downloaded), on one Fashion-MNIST test image.

    PYTHONPATH=src python scripts/hf_figure.py

The maps show what the methods compute on an untrained network, not what a trained one
attends to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers

import cleargrad as cg
from cleargrad.data import load_fashion_mnist
from cleargrad.viz import figure_grid
from cleargrad.viz.annotated import save_figure

SIZE = 64
VIT = dict(image_size=SIZE, patch_size=8, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
           intermediate_size=96, num_labels=10)


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "ViT": transformers.ViTForImageClassification(transformers.ViTConfig(**VIT)),
        "DeiT (distilled)": transformers.DeiTForImageClassificationWithTeacher(transformers.DeiTConfig(**VIT)),
        "Swin": transformers.SwinForImageClassification(transformers.SwinConfig(
            image_size=SIZE, patch_size=4, embed_dim=24, depths=[1, 1, 1], num_heads=[1, 2, 4], window_size=4,
            num_labels=10)),
        "ConvNeXt": transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
            hidden_sizes=[16, 32, 64], depths=[1, 1, 1], num_stages=3, num_labels=10)),
    }


def main() -> None:
    ds = load_fashion_mnist(split="test", limit=1)
    img = ds[0][0] if isinstance(ds[0], tuple) else ds[0]
    img = F.interpolate(img.reshape(1, 1, 28, 28).float(), size=SIZE, mode="bilinear", align_corners=False)
    x = img.expand(1, 3, SIZE, SIZE).clone()
    x = (x - x.mean()) / x.std()
    shown = (x[0] - x.min()) / (x.max() - x.min())
    rows, attention = [], []
    for name, model in models().items():
        model.eval()
        with torch.no_grad():
            y = int(model(x).logits.argmax(1))  # no output=: cleargrad takes the ImageClassifierOutput's logits
        maps = {
            "Grad-CAM (layer=auto)": cg.GradCAM(model).attribute(x, target=y, normalize=True),
            "Score-CAM": cg.ScoreCAM(model).attribute(x, target=y, normalize=True),
            "LayerCAM": cg.LayerCAM(model).attribute(x, target=y, normalize=True),
            "Integrated Gradients": cg.IntegratedGradients(model).attribute(x, target=y, n_steps=16).abs().sum(1),
        }
        rows.append((f"HF {name}\nrandom init", shown, {k: v[0].squeeze(0) for k, v in maps.items()}))
        if name in ("ViT", "DeiT (distilled)"):  # global attention (Swin's is windowed: refused)
            att = {
                "attention rollout": cg.AttentionRollout(model).attribute(x, normalize=True),
                "attention relevance": cg.AttentionRelevance(model).attribute(x, target=y, normalize=True),
            }
            attention.append((f"HF {name}\nrandom init", shown, {k: v[0].squeeze(0) for k, v in att.items()}))
    for grid, path in ((rows, "docs/figures/hf_models.png"), (attention, "docs/figures/hf_attention.png")):
        fig = figure_grid(grid, panel_size=1.9)
        fig.suptitle("HuggingFace models built from configs, RANDOM INIT (untrained): the maps show the mechanics "
                     "only", fontsize=7)
        fig.tight_layout(rect=(0, 0, 1, 0.94))
        save_figure(fig, path)


if __name__ == "__main__":
    main()
