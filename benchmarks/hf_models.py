"""Grad-CAM and attention rollout on HuggingFace image classifiers against the peers on the
same model: pytorch-grad-cam (on ``lambda x: model(x).logits``, with the matching
``reshape_transform``) and a rollout by hand from ``output_attentions`` of an eager copy.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/hf_models.py [--repeats 15] [--batch 8]

Tiny configs at random init (those of tests/test_hf_models.py), 32x32 inputs, one thread;
ours and the peer run interleaved in one process, so read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt_s, interleaved, markdown_table  # noqa: E402

import cleargrad as cg  # noqa: E402


def _models() -> dict[str, tuple[torch.nn.Module, str, int]]:
    import transformers

    vit = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, num_labels=5)
    torch.manual_seed(7)
    return {
        "ViT": (transformers.ViTForImageClassification(transformers.ViTConfig(**vit)).eval(),
                "vit.layers.1.layernorm_before", 1),
        "Swin": (transformers.SwinForImageClassification(transformers.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
            num_labels=5)).eval(), "swin.layernorm", 0),
        "ConvNeXt": (transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
            hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=5)).eval(),
            "convnext.encoder.stages.1", -1),
    }


class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def _reshape(prefix: int):  # noqa: ANN202
    if prefix < 0:
        return None

    def rt(t: torch.Tensor) -> torch.Tensor:
        side = math.isqrt(t.shape[1] - prefix)
        return t[:, prefix:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)

    return rt


def _hand_rollout(eager: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        atts = eager(x, output_attentions=True).attentions
    t = atts[0].shape[-1]
    eye = torch.eye(t)
    r = eye.expand(x.shape[0], t, t)
    for a in atts:
        a = 0.5 * a.mean(1) + 0.5 * eye
        r = (a / a.sum(-1, keepdim=True)) @ r
    return r[:, 0, 1:]


def main() -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = [i % 5 for i in range(args.batch)]
    rows = []
    for name, (model, layer, prefix) in _models().items():
        module = dict(model.named_modules())[layer]
        ours = cg.GradCAM(model)  # layer="auto", reshape="auto", no output=
        peer = GradCAM(model=_Logits(model), target_layers=[module], reshape_transform=_reshape(prefix))
        tg = [ClassifierOutputTarget(t) for t in targets]
        a = ours.attribute(x, target=targets, normalize=True)[:, 0].numpy()
        b = peer(input_tensor=x, targets=tg)
        s = interleaved({"ours": lambda ours=ours: ours.attribute(x, target=targets),
                         "peer": lambda peer=peer, tg=tg: peer(input_tensor=x, targets=tg)}, repeats=args.repeats)
        rows.append([f"{name} Grad-CAM (`{layer}`), 32x32", fmt_s(s["ours"].median), fmt_s(s["peer"].median),
                     f"{s['ours'].median / s['peer'].median:.2f}", f"{abs(a - b).max():.1e}"])
        if name == "ViT":
            eager = copy.deepcopy(model)
            eager.set_attn_implementation("eager")
            rollout = cg.AttentionRollout(model)
            got = rollout.attribute(x, upsample=False).flatten(1)
            diff = float((got - _hand_rollout(eager, x)).abs().max())
            s = interleaved({"ours": lambda r=rollout: r.attribute(x, upsample=False),
                             "peer": lambda e=eager: _hand_rollout(e, x)}, repeats=args.repeats)
            rows.append(["ViT attention rollout (sdpa model) vs by hand (eager copy, output_attentions), 32x32",
                         fmt_s(s["ours"].median), fmt_s(s["peer"].median),
                         f"{s['ours'].median / s['peer'].median:.2f}", f"{diff:.1e}"])
    import transformers

    torch.manual_seed(7)  # a wider ViT: how much of the rollout's cost is per call, not per op
    wide = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=64, patch_size=8, hidden_size=192, num_hidden_layers=6, num_attention_heads=3,
        intermediate_size=768, num_labels=5)).eval()
    eager = copy.deepcopy(wide)
    eager.set_attn_implementation("eager")
    xw = torch.randn(args.batch, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    rollout = cg.AttentionRollout(wide)
    diff = float((rollout.attribute(xw, upsample=False).flatten(1) - _hand_rollout(eager, xw)).abs().max())
    s = interleaved({"ours": lambda: rollout.attribute(xw, upsample=False),
                     "peer": lambda: _hand_rollout(eager, xw)}, repeats=args.repeats)
    rows.append(["ViT 6x192, 64x64 (65 tokens): attention rollout vs by hand", fmt_s(s["ours"].median),
                 fmt_s(s["peer"].median), f"{s['ours'].median / s['peer'].median:.2f}", f"{diff:.1e}"])
    print(f"batch {args.batch}, threads 1, medians of {args.repeats} interleaved runs\n")
    print(markdown_table(["what", "ours", "peer", "ours/peer", "max diff (Grad-CAM: normalised maps; rollout: raw)"],
                         rows))


if __name__ == "__main__":
    main()
