import nbformat as nbf, pathlib, sys
out = pathlib.Path("/work/wt/docs/docs")
def nb(path, cells):
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.cells = [nbf.v4.new_markdown_cell(s.strip()) if k == "md" else nbf.v4.new_code_cell(s.strip()) for k, s in cells]
    (out / path).write_text(nbf.writes(n))
SETUP = """%matplotlib inline
import torch
import cleargrad as cg
from cleargrad import metrics as M
from cleargrad import viz
torch.manual_seed(0)"""

nb("tutorials/your-photos.ipynb", [
("md", """# Explain your own model on your photos

This tutorial explains a torchvision classifier on a folder of photos, from Python.
The photos are three of the samples scikit-image ships (an astronaut, a cat, a cup of
coffee), written to a folder as yours would be. The model is a **randomly initialised**
`torchvision.models.resnet18` (`weights=None`): nothing is downloaded when these docs
are built, so its maps show the mechanics, not what a trained ResNet looks at. With your
own model, load its trained weights instead (`model.load_state_dict(...)`)."""),
("code", SETUP + """
import tempfile, pathlib
import skimage.data
import torchvision
from PIL import Image

photos = pathlib.Path(tempfile.mkdtemp()) / "photos"
photos.mkdir()
for name in ("astronaut", "chelsea", "coffee"):
    Image.fromarray(getattr(skimage.data, name)()).save(photos / f"{name}.png")
print(sorted(p.name for p in photos.iterdir()))"""),
("md", """## Load the photos the way the model expects

`load_image_folder` returns one batch tensor. For an ImageNet model use the same
preprocessing as torchvision's evaluation transform (shorter side 256, centre crop 224, the
ImageNet mean and std): `size=224, crop_fraction=0.875` and the mean/std below. Files it
cannot read are listed in `skipped`, never silently dropped."""),
("code", """IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
data = cg.data.load_image_folder(photos, size=224, crop_fraction=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD)
x = data.images
print(x.shape, [pathlib.Path(p).name for p in data.paths], "skipped:", data.skipped)

model = torchvision.models.resnet18(weights=None).eval()   # random init: see the note above"""),
("md", """## A CAM and a pixel method

`layer="auto"` picks the last block with a 4-D output (`layer4` here). `target=None`
explains the model's prediction for each image."""),
("code", """cam = cg.GradCAM(model, layer="auto").attribute(x, target=None)                   # (3, 1, 224, 224)
ig = cg.IntegratedGradients(model).attribute(x, target=None, n_steps=4)          # (3, 3, 224, 224)
pred = model(x).argmax(1)
print(cam.shape, ig.shape, "predicted classes:", pred.tolist())"""),
("md", """`viz.explanation_figure` returns a matplotlib `Figure`: the input, the map over it with a
colour bar in the map's own units, and a caption. A notebook shows it inline; pass
`path=` to also save it. (`cleargrad explain` writes the same figure for every photo.)"""),
("code", """viz.explanation_figure(x[1], cam[1], f"Grad-CAM · class {pred[1].item()} · random-init resnet18")"""),
("md", """## Every photo, several methods

`viz.figure_grid` draws one row per image and one column per method (each map min-max
normalised per panel). It returns the `Figure`; nothing is written unless you give a path."""),
("code", """rows = [(pathlib.Path(p).stem, x[i], {"Grad-CAM": cam[i], "Integrated Gradients": ig[i]})
        for i, p in enumerate(data.paths)]
viz.figure_grid(rows, panel_size=2.0)"""),
("md", """## The same from the command line

```bash
cleargrad explain --model torchvision.models:resnet18 --weights resnet18.pth \\
    --images photos/ --method gradcam,integrated_gradients --out explanations/
```

writes the annotated figure, the raw map (`.npy`) and a manifest per photo and method; see
[the CLI guide](../guides/cli.md)."""),
])

nb("tutorials/evaluate-and-report.ipynb", [
("md", """# Evaluate methods and read the report

Which method explains the model best? This tutorial scores three methods and a random map
with two faithfulness metrics on the shipped SmallCNN (Fashion-MNIST, 90 % test accuracy),
first from Python, then with `cleargrad evaluate` and its HTML report."""),
("code", SETUP + """
model = cg.models.small_cnn_fashion_mnist()
test = cg.data.load_fashion_mnist("test", normalize=True, limit=32)
x, y = test.images, test.labels
maps = {
    "saliency": cg.Saliency(model).attribute(x, target=y),
    "gradcam": cg.GradCAM(model).attribute(x, target=y),
    "integrated_gradients": cg.IntegratedGradients(model).attribute(x, target=y, n_steps=16),
    "random map (control)": torch.rand(x.shape[0], 1, 28, 28, generator=torch.Generator().manual_seed(0)),
}"""),
("md", """## Score them, and compare with a random map first

Insertion AUC (higher is better) restores the most important pixels first; deletion AUC
(lower is better) removes them first. A metric that cannot tell a method from a random map
on your model and data says nothing about it: check that before ranking methods."""),
("code", """def mean_se(v):
    v = v[torch.isfinite(v)]
    return f"{v.mean():.3f} ± {v.std() / len(v) ** 0.5:.3f}"

print(f"{'method':24s} {'insertion (higher)':>20s} {'deletion (lower)':>20s}")
scores = {}
for name, m in maps.items():
    ins = M.insertion(model, x, m, target=y)
    dele = M.deletion(model, x, m, target=y)
    scores[name] = (ins, dele)
    print(f"{name:24s} {mean_se(ins):>20s} {mean_se(dele):>20s}")"""),
("md", """Paired differences are what to compare (each image is scored under every method), with
their standard error:"""),
("code", """ins_r, del_r = scores["random map (control)"]
for name, (ins, dele) in scores.items():
    if name.startswith("random"):
        continue
    print(f"{name:22s} insertion − random {mean_se(ins - ins_r)}    deletion − random {mean_se(dele - del_r)}")"""),
("md", """## The same protocol from the command line, with the report

`cleargrad evaluate` stores one row per image, method and metric in SQLite (a killed run
resumes), and `cleargrad report` turns the store into one self-contained HTML page: the
method × metric table with 95 % confidence intervals, per-image strip plots, the mean
insertion/deletion curves and a gallery. `export` writes the same rows as a flat table."""),
("code", """import subprocess, sys, tempfile, pathlib, csv
work = pathlib.Path(tempfile.mkdtemp())
def run(*args):
    r = subprocess.run([sys.executable, "-m", "cleargrad", *args], capture_output=True, text=True)
    print(r.stdout[-1500:] or r.stderr[-1500:])
    r.check_returncode()

run("evaluate", "--model", "small-cnn-fashion-mnist", "--dataset", "fashion-mnist", "--limit", "8",
    "--methods", "saliency,gradcam", "--metrics", "insertion,deletion", "--store", str(work / "runs.sqlite"), "--quiet")
run("report", str(work / "runs.sqlite"), "--out", str(work / "report.html"))
run("export", str(work / "runs.sqlite"), "--format", "csv")"""),
("code", """rows = list(csv.DictReader(open(work / "runs.csv")))
print(len(rows), "rows; columns:", list(rows[0]))
print("report:", (work / "report.html").stat().st_size // 1024, "KiB, self-contained (images as data URIs)")"""),
("md", """## Reading the report

- **Notes** at the top name methods that give the same maps (on this GAP-linear SmallCNN,
  CAM, Grad-CAM, HiResCAM and XGrad-CAM agree up to a positive scale) and metrics that
  separate no pair of methods (paired t-test, Holm-corrected): do not rank by those.
- The **table** highlights the best mean only where the metric separates something; read
  the confidence interval before the mean.
- The **strip plots** show every image: a mean moved by a few outliers looks different
  from a shift of the whole cloud.

More in [the report guide](../guides/report.md) and [metrics and how to choose them](../guides/metrics.md)."""),
])

nb("tutorials/gad-end-to-end.ipynb", [
("md", """# GAD end to end

Gradient Artificial Distancing explains why a model tells two confusable classes apart:
it trains support copies of the model whose logits push the two classes further apart,
explains the original and every copy with a base method, and keeps only the pixels all
of them agree on. Here: T-shirt/top (0) vs Shirt (6) on the shipped SmallCNN, with a
deliberately short fit (2 support models, 3 epochs, 300 training images) so that the page
builds in seconds; the library's defaults (30 epochs) distance the classes much better."""),
("code", SETUP + """
model = cg.models.small_cnn_fashion_mnist()
train = cg.data.load_fashion_mnist("train", normalize=True, limit=3000)
keep = (train.labels == 0) | (train.labels == 6)
xs, ys = train.images[keep][:300], train.labels[keep][:300]

gad = cg.GAD(model, base="saliency", classes=(0, 6), n_support=2, epochs=3, progress=False)
gad.fit((xs, ys))
for s in gad.stats_[0]:
    print(f"alpha {s.alpha}  fidelity first/second {s.fidelity_first:.2f} / {s.fidelity_second:.2f}  accuracy {s.accuracy:.3f}")"""),
("md", """`fidelity` is the realised fraction of the intended margin gain (1 = fully distanced).
Now explain test images of the two classes: the fused map keeps what the original and
both support models find important."""),
("code", """test = cg.data.load_fashion_mnist("test", normalize=True, limit=200)
sel = (test.labels == 0) | (test.labels == 6)
x, y = test.images[sel][:6], test.labels[sel][:6]
fused, maps = gad.attribute(x, target=y, return_all=True)     # (N, 1, H, W), (N, S+1, H, W)
base = cg.Saliency(model).attribute(x, target=y)
names = cg.data.FASHION_MNIST_CLASSES
rows = [(names[int(y[i])], x[i], {"saliency": base[i], "support 1": maps[i, 1], "support 2": maps[i, 2], "GAD": fused[i]})
        for i in range(4)]
viz.figure_grid(rows, panel_size=1.6)"""),
("md", """## Does the region shrink?

Region Complexity RC = |R(GAD)| / |R(saliency)| (convex-hull regions, the paper's rule):
below 1, GAD's region is smaller than the base map's."""),
("code", """rc = M.region_complexity(fused, base)
print("RC per image:", [round(v, 2) for v in rc.tolist()])
print("mean RC:", M.nan_summary(rc))"""),
("md", """Save the fit and load it back (safetensors + JSON), or use it from the command line with
`--method gad:saliency --gad FOLDER`. What holds of the paper's claims at the default
settings: [GAD findings](../research/gad.md)."""),
("code", """import tempfile
folder = tempfile.mkdtemp()
gad.save(folder)
again = cg.GAD.load(folder, model)
print(torch.allclose(again.attribute(x, target=y), fused))"""),
])

nb("tutorials/expected-gradcam-saturation.ipynb", [
("md", """# Expected Grad-CAM vs Grad-CAM under saturation

Grad-CAM weighs a layer's channels by the gradient at the input. When the layer
*saturates* along the way from a reference image to the input, that gradient carries
little signal; Expected Grad-CAM integrates gradients along sampled paths instead. This
tutorial measures how saturated a layer of the shipped SmallCNN is for each image, and
compares the two methods by deletion on the most and least saturated images.

The measured benchmark (1,000 images per model) found Expected Grad-CAM better only on the
images where the layer saturates, and not on average: see
[the findings](../research/expected-gradcam.md). With the 48 images used here, read the
standard errors before the means."""),
("code", SETUP + """
model = cg.models.small_cnn_fashion_mnist()
test = cg.data.load_fashion_mnist("test", normalize=True, limit=48)
train = cg.data.load_fashion_mnist("train", normalize=True, limit=100)
x, y = test.images, test.labels
layer = "features.2"      # a block followed by a nonlinear part of the network (Grad-CAM is exact at features.3)
t, cos = cg.internal_saturation(model, x, layer, n_points=21)
print(t.shape, cos.shape)"""),
("md", """`cos[i, k]` is the cosine between the layer's embedding at `t_k` on the straight path
from the all-zero (mean) image and at the image itself. A curve that reaches about 1 early
means the layer stops changing: the gradient at `t = 1` sees little of the path."""),
("code", """from matplotlib.figure import Figure
auc = torch.trapezoid(cos, t, dim=1)                 # area under the curve: higher = saturates earlier
order = auc.argsort()
fig = Figure(figsize=(5, 3))
ax = fig.subplots()
for i in order[:3].tolist() + order[-3:].tolist():
    ax.plot(t, cos[i], color="tab:red" if i in order[-3:].tolist() else "tab:blue")
ax.set_xlabel("t on the path"); ax.set_ylabel("cosine with A(x)")
ax.set_title("most (red) and least (blue) saturated images")
fig"""),
("code", """gen = torch.Generator().manual_seed(0)
gc = cg.GradCAM(model, layer=layer).attribute(x, target=y)
egc = cg.ExpectedGradCAM(model, layer=layer).attribute(x, target=y, references=train.images, n_samples=16, generator=gen)
d_gc, d_egc = M.deletion(model, x, gc, target=y), M.deletion(model, x, egc, target=y)
third = len(x) // 3
for label, idx in (("least saturated third", order[:third]), ("most saturated third", order[-third:]), ("all", order)):
    diff = d_egc[idx] - d_gc[idx]
    print(f"{label:22s} deletion EGC − Grad-CAM: {diff.mean():+.4f} ± {diff.std() / len(idx) ** 0.5:.4f} (lower is better)")"""),
("code", """rows = [(f"image {i} (sat. AUC {auc[i]:.2f})", x[i], {"Grad-CAM": gc[i], "Expected Grad-CAM": egc[i]})
        for i in order[-3:].tolist()]
viz.figure_grid(rows, panel_size=1.8)"""),
("md", """Expected Grad-CAM costs `n_samples` partial passes per image (16 here) against one for
Grad-CAM. Use it where `internal_saturation` says the layer saturates; on a GAP-linear head
right after the layer, Grad-CAM is exact and there is nothing to gain. Options:
[the Expected Grad-CAM guide](../guides/expected-gradcam.md)."""),
])

nb("tutorials/interpretable-training.ipynb", [
("md", """# Train with the interpretable-gradient loss

`InterpretableGradientLoss` adds to the cross-entropy a term that pulls the plain input
gradient towards the guided-backprop gradient, so that the gradients CAMs use later are
less noisy (Torres Figueroa et al., VISAPP 2024). This tutorial trains two tiny SmallCNNs
(width 8) for one epoch on 1,000 Fashion-MNIST images, one with plain cross-entropy and one
with the cosine loss, then compares accuracy and how close each model's gradient is to its
guided gradient. It takes seconds; the measured comparison over seeds (where the paper's
effect does not show beyond the noise) is in [the findings](../research/interpretable-training.md)."""),
("code", SETUP + """
from cleargrad.training import fit
from cleargrad.models import SmallCNN
train = cg.data.load_fashion_mnist("train", normalize=True, limit=1000)
test = cg.data.load_fashion_mnist("test", normalize=True, limit=500)

loss_fn = cg.InterpretableGradientLoss(error="cosine", lam=0.025)
models = {}
for name, loss in (("cross-entropy", None), ("cosine, λ = 0.025", loss_fn)):
    torch.manual_seed(0)
    m = SmallCNN(in_channels=1, num_classes=10, width=8)
    r = fit(m, train, test, epochs=1, loss_fn=loss, seed=0, quiet=True)
    models[name] = m.eval()
    print(f"{name:20s} test accuracy {r.history[-1]['test_accuracy']:.3f}")"""),
("md", """`parts = loss_fn(model, x, y)` gives the two terms separately: the classification loss
and the regulariser (`1 − cos(grad, guided grad)` averaged over the batch)."""),
("code", """x, y = test.images[:64], test.labels[:64]
for name, m in models.items():
    m.train()
    parts = loss_fn(m, x, y)
    m.eval()
    print(f"{name:20s} cross-entropy {parts.classification.item():.3f}   1 − cos(grad, guided) {parts.regulariser.item():.3f}")"""),
("code", """rows = []
for i in range(3):
    maps = {}
    for name, m in models.items():
        maps[f"saliency, {name}"] = cg.Saliency(m).attribute(x[i:i + 1], target=y[i:i + 1])[0]
        maps[f"Grad-CAM, {name}"] = cg.GradCAM(m).attribute(x[i:i + 1], target=y[i:i + 1])[0]
    rows.append((cg.data.FASHION_MNIST_CLASSES[int(y[i])], x[i], maps))
viz.figure_grid(rows, panel_size=1.5)"""),
("md", """For a real run use `fit(..., epochs=30, checkpoint_dir=...)` (resumable) or
`cleargrad train --loss cosine --lam 0.025 --baseline runs/baseline --evaluate`, which
reports the CAM metrics as paired differences from the baseline; see
[the training guide](../guides/interpretable-training.md)."""),
])

nb("gallery.ipynb", [
("md", """# Gallery: every method on the same images

Every registered pixel method and CAM (`cg.methods()`), run with `cg.explain` on the same
images, so their maps can be compared side by side. Top: the shipped SmallCNN on
Fashion-MNIST test images (trained, 90 % accuracy). Bottom: a **randomly initialised**
torchvision ResNet-18 on scikit-image's sample photos (no weights are downloaded when the
docs are built; its maps show each method's mechanics, not what a trained model sees).
Methods that need something the gallery does not give (a fitted GAD, attention layers) are
listed instead. Expensive methods get a few samples or steps to keep the build short; the
options are printed."""),
("code", SETUP + """
import time
from cleargrad.core import list_methods

FAST = {"integrated_gradients": {"n_steps": 16}, "integrated_gradcam": {"n_steps": 8}}
RANDOM = {"smoothgrad": {"n_samples": 8}, "expected_gradients": {"n_samples": 8},   # these also get generator=
          "expected_gradcam": {"n_samples": 8}, "smooth_gradcam_pp": {"n_samples": 4}}
names = [i.name for i in list_methods() if i.family != "attention"]

def gallery(model, x, titles, references):
    maps, notes = {}, []
    for name in names:
        opts = dict(FAST.get(name, {}))
        if name in RANDOM:
            opts.update(RANDOM[name], generator=torch.Generator().manual_seed(0))
        if name == "expected_gradients":
            opts["references"] = references
        t0 = time.perf_counter()
        try:
            maps[name] = cg.explain(model, x, method=name, target=None, **opts)
        except cg.ExplanationError as e:
            notes.append(f"{name}: not shown ({type(e).__name__}: {str(e)[:100]})")
            continue
        shown = {k: v for k, v in opts.items() if k not in ("generator", "references")}
        notes.append(f"{name}: {time.perf_counter() - t0:.2f} s {shown or ''}")
    print("\\n".join(notes))
    return [(titles[i], x[i], {n: m[i] for n, m in maps.items()}) for i in range(len(x))]"""),
("md", "## SmallCNN on Fashion-MNIST"),
("code", """model = cg.models.small_cnn_fashion_mnist()
test = cg.data.load_fashion_mnist("test", normalize=True, limit=4)
refs = cg.data.load_fashion_mnist("train", normalize=True, limit=32).images
rows = gallery(model, test.images, [cg.data.FASHION_MNIST_CLASSES[int(c)] for c in test.labels], refs)
viz.figure_grid(rows, panel_size=1.2)"""),
("md", "## Random-init ResNet-18 on photos"),
("code", """import numpy as np, skimage.data, torchvision
from PIL import Image
photos = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB").resize((64, 64)) for n in ("astronaut", "chelsea", "coffee")]
mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
x = torch.stack([(torch.from_numpy(np.array(p)).permute(2, 0, 1).float() / 255 - mean) / std for p in photos])
resnet = torchvision.models.resnet18(weights=None).eval()     # random init
rows = gallery(resnet, x, ["astronaut", "chelsea", "coffee"], torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
viz.figure_grid(rows, panel_size=1.2)"""),
])
