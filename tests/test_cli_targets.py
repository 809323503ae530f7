"""``--target`` specs and ``--output`` on the command line (explain, evaluate), the resolved
CAM layer in the manifest, store and report, and AD/AG/AI / ``SharedBatch`` with target
objects.

The command's maps are compared with the Python API given the matching target objects
(built here from the model's own clean output, as the command says it does)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_images, one_thread
from PIL import Image
from typer.testing import CliRunner

import cleargrad as cg
from cleargrad.cli import app
from cleargrad.evaluation.modelspec import load_model
from cleargrad.evaluation.targets import TargetSpec, parse_target
from cleargrad.metrics import SharedBatch, average_drop, average_gain, average_increase, deletion, insertion

runner = CliRunner()

MODELS = '''
import torch
from torch import nn


class TinySeg(nn.Module):
    """(N, 1, H, W) -> {"out": (N, 3, H, W), "aux": zeros}: a stand-in segmentation model."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        h = self.head(self.features(x))
        h = torch.cat([h[:, :1], h[:, 1:2] + 2 * x, h[:, 2:]], dim=1)  # class 1 where the image is bright
        return {"out": h, "aux": torch.zeros_like(h)}


class TinyClf(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4 * 4, k)

    def forward(self, x):
        return self.fc(nn.functional.adaptive_avg_pool2d(self.features(x), 2).flatten(1))


class Wrapped(nn.Module):
    """A classifier whose forward returns an object with a ``logits`` attribute."""

    def __init__(self):
        super().__init__()
        self.inner = TinyClf()

    def forward(self, x):
        return type("Out", (), {"logits": self.inner(x)})()


class TinyDet(nn.Module):
    """A stand-in detector with torchvision's eval output: per image a list of two fixed
    boxes whose scores come from the image, sorted by score (so detection 0 differs)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.score = nn.Linear(4 * 4, 2)
        self.register_buffer("anchors", torch.tensor([[2.0, 2.0, 14.0, 14.0], [10.0, 8.0, 26.0, 27.0]]))

    def forward(self, x):
        bias = 2 * (x[:, 0, :14, :14].mean((1, 2)) - x[:, 0, 14:, 14:].mean((1, 2)))  # which box wins
        s = self.score(nn.functional.adaptive_avg_pool2d(self.features(x), 2).flatten(1))
        s = torch.sigmoid(s + torch.stack([bias, -bias], dim=1))
        out = []
        for row in s:
            order = row.argsort(descending=True)
            out.append({"boxes": self.anchors[order], "labels": torch.tensor([1, 2])[order], "scores": row[order]})
        return out


def seg():
    torch.manual_seed(0)
    return TinySeg()


def det():
    torch.manual_seed(0)
    return TinyDet()


def clf():
    torch.manual_seed(0)
    return TinyClf()


def wrapped():
    torch.manual_seed(0)
    return Wrapped()
'''


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("targets")
    (d / "tiny_targets.py").write_text(MODELS)
    boxes = d / "boxes"  # two images, bright in the first box's corner or in the second's
    boxes.mkdir()
    rng = np.random.default_rng(1)
    for name, corner in (("a.png", np.s_[:14, :14]), ("b.png", np.s_[14:, 14:])):
        arr = rng.random((28, 28)) * 0.5
        arr[corner] += 0.5
        Image.fromarray((arr * 255).astype(np.uint8)).save(boxes / name)
    return {"dir": d, "models": d / "tiny_targets.py", "images": make_images(d, per_class=2, corrupt=False),
            "boxes": boxes}


def spec(ws: dict[str, Path], factory: str) -> str:
    return f"{ws['models']}:{factory}"


def invoke(*args: str):
    with one_thread():
        return runner.invoke(app, list(args))


def _prep(path: Path) -> torch.Tensor:
    arr = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    return ((torch.from_numpy(arr) - cg.data.FASHION_MNIST_MEAN) / cg.data.FASHION_MNIST_STD)[None, None]


def _explain(ws: dict[str, Path], out: Path, factory: str, *args: str, images: str = "images") -> dict:
    r = invoke("explain", "-m", spec(ws, factory), "-i", str(ws[images]), "--out", str(out), "--device", "cpu",
               "-q", *args)
    assert r.exit_code == 0, r.output
    return json.loads((out / "manifest.json").read_text())


# -- parsing ------------------------------------------------------------------------------


def test_parse_target_keeps_todays_forms_and_reads_the_new_ones() -> None:
    assert parse_target("auto", True) == "auto" and parse_target("label", True) == "label"
    assert parse_target("7", True) == 7 and parse_target(3, True) == 3
    assert parse_target("class:15", True) == 15 and parse_target("class:label", True) == "label"
    assert parse_target("pred", True) == "auto"
    assert parse_target("softmax:15", True) == TargetSpec("softmax", rule=15)
    assert parse_target("softmax", True) == TargetSpec("softmax", rule="auto")
    assert parse_target("binary", True) == TargetSpec("binary", values=(1,))
    assert parse_target("binary:0", True) == TargetSpec("binary", values=(0,))
    assert parse_target("binary:1:2", True) == TargetSpec("binary", values=(1, 2))
    assert parse_target("labels:3, 7", True) == TargetSpec("labels", values=(3, 7))
    assert parse_target("seg:15", True) == TargetSpec("seg", values=(15,))
    assert parse_target("box:0", True) == TargetSpec("box", values=(0,))
    assert parse_target("regression", True) == TargetSpec("regression")
    assert parse_target("regression:2", True) == TargetSpec("regression", values=(2,))
    for text in ("softmax:15", "labels:3,7", "seg:15", "box:0", "binary:0", "regression:2"):
        assert parse_target(str(parse_target(text, True)), True) == parse_target(text, True)  # canonical text


@pytest.mark.parametrize(
    "bad", ["bogus", "seg:x", "labels:", "labels:3,x", "binary:2", "box:-1", "softmax:1.5", "class:", "seg", "a:b:c"]
)
def test_bad_target_specs_are_one_line_usage_errors_naming_the_forms(ws: dict[str, Path], bad: str) -> None:
    r = invoke("explain", "-m", spec(ws, "clf"), "-i", str(ws["images"]), "--method", "saliency", "--target", bad,
               "--out", str(ws["dir"] / "never"), "--device", "cpu", "-q")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("usage error:"), r.output
    assert "softmax:K" in lines[0] and "seg:K" in lines[0] and "box:I" in lines[0], lines[0]
    assert bad in lines[0]  # as typed (no ':x:' turned into an emoji)
    assert not (ws["dir"] / "never").exists()


def test_help_documents_the_target_forms_and_output() -> None:
    for command in ("explain", "evaluate"):
        text = " ".join(runner.invoke(app, [command, "--help"], terminal_width=200).output.split())
        for form in ("softmax:K", "labels:3,7", "seg:K", "box:I", "regression:I", "--output", "logits"):
            assert form in text, (command, form)


def test_a_task_target_on_the_wrong_output_says_what_to_pass(ws: dict[str, Path], tmp_path: Path) -> None:
    base = ["explain", "-i", str(ws["images"]), "--method", "saliency", "--out", str(tmp_path), "--device", "cpu", "-q"]
    r = invoke(*base, "-m", spec(ws, "seg"), "--target", "seg:1")  # a dict output, no --output
    assert r.exit_code == 2 and "--output" in r.output, r.output
    r = invoke(*base, "-m", spec(ws, "seg"), "--output", "out")  # class targets on a segmentation output
    assert r.exit_code == 2 and "seg:K" in r.output and "(N, C)" in r.output, r.output
    r = invoke(*base, "-m", spec(ws, "seg"), "--output", "out", "--target", "seg:3")  # 3 classes: 0..2
    assert r.exit_code == 2 and "out of range" in r.output, r.output
    r = invoke(*base, "-m", spec(ws, "clf"), "--target", "box:0")
    assert r.exit_code == 2 and "detector" in r.output, r.output
    r = invoke(*base, "-m", spec(ws, "seg"), "--output", "nokey", "--target", "seg:1")
    assert r.exit_code == 1 and "nokey" in r.output and "out, aux" in r.output, r.output


# -- explain ------------------------------------------------------------------------------


def test_explain_seg_target_equals_the_python_api(ws: dict[str, Path], tmp_path: Path) -> None:
    payload = _explain(ws, tmp_path, "seg", "--method", "gradcam,integrated_gradients", "--target", "seg:1",
                       "--output", "out", "-o", "integrated_gradients.n_steps=4")
    run = payload["run"]
    assert run["target"] == "seg:1" and run["output"] == "out"
    model = load_model(spec(ws, "seg")).eval()
    layer = run["layers"]["gradcam"]
    probe = cg.GradCAM(model, output="out").attribute_layers(torch.randn(1, 1, 28, 28), cg.SegmentationTarget(1))
    assert layer == probe.layers[0]
    assert run["layers"]["integrated_gradients"] is None
    assert len(payload["rows"]) == 4 * 2
    for row in payload["rows"]:
        x = _prep(Path(row["input"]))
        with torch.no_grad():
            mask = model(x)["out"][0].argmax(0) == 1
        assert 0 < int(mask.sum()) < mask.numel()  # a real region, not all or nothing
        target = [cg.SegmentationTarget(1, mask.float())]
        if row["method"] == "gradcam":
            ref = cg.GradCAM(model, layer=layer, output="out").attribute(x, target=target)
        else:
            ref = cg.IntegratedGradients(model, output="out").attribute(x, target=target, n_steps=4)
        a = np.load(tmp_path / row["array"])
        np.testing.assert_allclose(a, ref[0].numpy(), rtol=1e-4, atol=1e-6)
        assert row["class_index"] == 1 and row["probability"] is None and row["predicted"] is None
        assert row["target_rule"].startswith("segmentation class 1")
    # the mask is the image's own prediction: a whole-batch argmax-free target differs for IG
    x = _prep(Path(payload["rows"][0]["input"]))
    moving = cg.IntegratedGradients(model, output="out").attribute(x, target=cg.SegmentationTarget(1), n_steps=4)
    ig_row = next(r for r in payload["rows"] if r["method"] == "integrated_gradients")
    assert not np.allclose(np.load(tmp_path / ig_row["array"]), moving[0].numpy(), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "make"),
    [
        ("softmax:2", lambda k: cg.SoftmaxTarget(2)),
        ("softmax", lambda k: cg.SoftmaxTarget(k)),
        ("labels:0,2", lambda k: cg.MultiLabelTarget([0, 2])),
        ("regression:1", lambda k: cg.RegressionTarget(1)),
        ("binary:0:1", lambda k: cg.BinaryTarget(0, index=1)),
    ],
)
def test_explain_class_score_targets_equal_the_python_api(ws: dict[str, Path], tmp_path: Path, text, make) -> None:
    payload = _explain(ws, tmp_path, "clf", "--method", "saliency,gradcam", "--target", text)
    assert payload["run"]["target"] == str(parse_target(text, True))
    model = load_model(spec(ws, "clf")).eval()
    for row in payload["rows"]:
        x = _prep(Path(row["input"]))
        with torch.no_grad():
            logits = model(x)
        pred = int(logits.argmax(1))
        target = make(pred)
        m = cg.Saliency(model) if row["method"] == "saliency" else cg.GradCAM(model, layer="features")
        np.testing.assert_allclose(np.load(tmp_path / row["array"]), m.attribute(x, target=target)[0].numpy(),
                                   rtol=1e-4, atol=1e-7)
        assert row["predicted"] == pred
        if text.startswith("softmax"):
            k = 2 if text == "softmax:2" else pred
            assert row["class_index"] == k
            assert row["probability"] == pytest.approx(float(logits.softmax(1)[0, k]), rel=1e-5)
        else:
            assert row["class_index"] is None and row["probability"] is None
    assert payload["run"]["layers"] == {"saliency": None, "gradcam": "features"}


def test_explain_box_target_equals_the_python_api(ws: dict[str, Path], tmp_path: Path) -> None:
    payload = _explain(ws, tmp_path, "det", "--method", "saliency,integrated_gradients", "--target", "box:0",
                       "-o", "integrated_gradients.n_steps=4", images="boxes")
    assert payload["run"]["target"] == "box:0"
    model = load_model(spec(ws, "det")).eval()
    labels = set()
    for row in payload["rows"]:
        x = _prep(Path(row["input"]))
        with torch.no_grad():
            d = model(x)[0]
        target = cg.BoxScoreTarget([int(d["labels"][0])], d["boxes"][0])
        if row["method"] == "saliency":
            ref = cg.Saliency(model).attribute(x, target=target)
        else:  # expanded batch (the steps): every row is scored by the image's box
            ref = cg.IntegratedGradients(model).attribute(x, target=target, n_steps=4)
        assert float(ref.abs().sum()) > 0
        np.testing.assert_allclose(np.load(tmp_path / row["array"]), ref[0].numpy(), rtol=1e-4, atol=1e-7)
        assert row["class_index"] == int(d["labels"][0]) and row["probability"] is None
        labels.add(row["class_index"])
    assert labels == {1, 2}  # the top detection differs between the images: each has its own box
    r = invoke("explain", "-m", spec(ws, "det"), "-i", str(ws["boxes"]), "--method", "saliency", "--target", "box:2",
               "--out", str(tmp_path / "b2"), "--device", "cpu", "-q")
    assert r.exit_code == 2 and "2 detection(s), so no detection 2" in r.output, r.output


def test_explain_output_by_attribute(ws: dict[str, Path], tmp_path: Path) -> None:
    payload = _explain(ws, tmp_path, "wrapped", "--method", "saliency", "--output", "logits", "--target", "1")
    model = load_model(spec(ws, "wrapped")).eval()
    row = payload["rows"][0]
    x = _prep(Path(row["input"]))
    ref = cg.Saliency(model.inner).attribute(x, target=1)
    np.testing.assert_allclose(np.load(tmp_path / row["array"]), ref[0].numpy(), rtol=1e-5, atol=1e-7)


def test_explain_records_the_auto_layer(ws: dict[str, Path], tmp_path: Path) -> None:
    """Fails on the code before: the manifest recorded only ``"layer": "auto"``."""
    payload = _explain(ws, tmp_path, "clf", "--method", "gradcam,gradcampp")
    assert payload["run"]["layer"] == "auto"
    assert payload["run"]["layers"] == {"gradcam": "features", "gradcam_pp": "features"}


# -- evaluate -----------------------------------------------------------------------------


def _evaluate(ws: dict[str, Path], store: Path, factory: str, *args: str) -> None:
    r = invoke("evaluate", "-m", spec(ws, factory), "-d", str(ws["images"]), "-s", str(store), "--device", "cpu",
               "-q", "--gallery", "2", *args)
    assert r.exit_code == 0, r.output


def _runs(store: Path) -> dict[str, dict]:
    con = sqlite3.connect(str(store))
    try:
        return {h: json.loads(s) for h, s in con.execute("SELECT settings_hash, settings FROM runs")}
    finally:
        con.close()


def test_evaluate_records_target_output_and_layers(ws: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    common = ["--methods", "gradcam,saliency", "--metrics", "deletion,average_drop,sparseness"]
    _evaluate(ws, store, "clf", *common)
    _evaluate(ws, store, "clf", *common, "--target", "auto")  # the default spelled out: the same run
    _evaluate(ws, store, "clf", *common, "--target", "class:auto")
    assert len(_runs(store)) == 1
    (default,) = _runs(store).values()
    assert default["target"] == "auto" and "output" not in default
    _evaluate(ws, store, "clf", *common, "--target", "softmax:auto")
    _evaluate(ws, store, "seg", *common, "--target", "seg:1", "--output", "out")
    runs = _runs(store)
    assert len(runs) == 3
    by_target = {s["target"]: (h, s) for h, s in runs.items()}
    assert set(by_target) == {"auto", "softmax:auto", "seg:1"}
    _evaluate(ws, tmp_path / "det.sqlite", "det", "--methods", "saliency", "--metrics", "deletion,sparseness",
              "--target", "box:0")
    with cg.store.ResultStore(tmp_path / "det.sqlite", readonly=True) as st:
        ((h_det, s_det, _, _),) = st.runs()
        det_rows = st.results(h_det)
    assert s_det["target"] == "box:0" and len(det_rows) == 4 * 2
    assert {r.target for r in det_rows} <= {1, 2} and all(r.value is not None for r in det_rows)
    h_seg, s_seg = by_target["seg:1"]
    assert s_seg["output"] == "out"
    with cg.store.ResultStore(store, readonly=True) as st:
        assert st.layers(h_seg) == {"gradcam": "head"}
        assert st.layers(by_target["auto"][0]) == {"gradcam": "features"}
        seg_rows = st.results(h_seg)
    assert {r.target for r in seg_rows} == {1}  # the segmentation class
    html = cg.report.render_report(cg.store.ResultStore(store, readonly=True), settings=h_seg, plots=False)
    assert "CAM layers" in html and "gradcam: head" in html and "seg:1" in html


def test_evaluate_softmax_target_equals_the_class_probability_default(ws: dict[str, Path], tmp_path: Path) -> None:
    """AD/AG/AI and deletion score a class's probability; ``softmax:auto`` is that same
    probability as a target object, through the shared passes: equal values for maps that do
    not depend on the target (random, EigenCAM)."""
    store = tmp_path / "s.sqlite"
    common = ["--methods", "random,eigencam", "--metrics", "average_drop,average_gain,average_increase,deletion"]
    _evaluate(ws, store, "clf", *common)
    _evaluate(ws, store, "clf", *common, "--target", "softmax:auto")
    with cg.store.ResultStore(store, readonly=True) as st:
        by = {s["target"]: {(r.image_id, r.metric): r.value for r in st.results(h)} for h, s, _, _ in st.runs()}
    assert by["auto"].keys() == by["softmax:auto"].keys()
    for k, v in by["auto"].items():
        assert by["softmax:auto"][k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


# -- metrics with target objects ------------------------------------------------------------


def _clf_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    ).eval()
    x = torch.randn(3, 1, 12, 12)
    a = torch.rand(3, 1, 12, 12)
    t = torch.tensor([0, 2, 1])
    return model, x, a, t


@pytest.mark.parametrize("fn", [average_drop, average_gain, average_increase])
def test_average_metrics_take_softmax_targets(fn) -> None:
    """Fails on the code before (these metrics took class indices only)."""
    model, x, a, t = _clf_batch()
    by_class = fn(model, x, a, t)
    objects = [cg.SoftmaxTarget(int(c)) for c in t]
    torch.testing.assert_close(fn(model, x, a, objects), by_class)
    swapped = [cg.SoftmaxTarget(int(c)) for c in t.flip(0)]
    by_swapped_class = fn(model, x, a, t.flip(0))
    torch.testing.assert_close(fn(model, x, a, swapped), by_swapped_class)
    if fn is not average_increase:  # AI is 0/100 per image: it may coincide
        assert not torch.allclose(fn(model, x, a, swapped), by_class)


def test_shared_batch_with_target_objects_equals_the_standalone_metrics() -> None:
    model, x, a, t = _clf_batch()
    objects = [cg.SoftmaxTarget(int(c)) for c in t]
    shared = SharedBatch(model, x)
    for name, fn in (("average_drop", average_drop), ("average_gain", average_gain), ("deletion", deletion),
                     ("insertion", insertion)):
        got = shared.score(name, {"m": a}, objects)["m"]
        torch.testing.assert_close(got, fn(model, x, a, objects), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got, shared.score(name, {"m": a}, t)["m"] if name.startswith("average") else got)
    # a segmentation model's dict output: the shared batch holds it and scores per-image masks
    seg = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1))
    seg_model = _DictOut(seg).eval()
    with torch.no_grad():
        pred = seg_model(x)["out"].argmax(1)
    targets = [cg.SegmentationTarget(1, (pred[i] == 1).float()) for i in range(3)]
    sb = SharedBatch(seg_model, x, output="out")
    assert sb.output_value.shape == (3, 3, 12, 12)
    with pytest.raises(cg.InputError):
        _ = sb.logits  # not class scores
    for name, fn in (("average_drop", average_drop), ("deletion", deletion)):
        torch.testing.assert_close(
            sb.score(name, {"m": a}, targets)["m"], fn(seg_model, x, a, targets, output="out"), rtol=1e-5, atol=1e-5
        )


class _DictOut(torch.nn.Module):
    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(x)}


def test_sensitivity_metrics_carry_target_objects_to_the_perturbed_copies() -> None:
    """Fails on the code before ("target sequence must hold ints")."""
    model, x, a, t = _clf_batch()
    sal = cg.Saliency(model)

    def by_index(xx: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:  # the same targets, built from indices
        return sal.attribute(xx, target=[cg.SoftmaxTarget(int(c)) for c in tt])

    objects = [cg.SoftmaxTarget(int(c)) for c in t]
    for fn in (cg.metrics.max_sensitivity, cg.metrics.avg_sensitivity):
        got = fn(sal.attribute, x, objects, n_samples=3, generator=torch.Generator().manual_seed(0))
        ref = fn(by_index, x, t, n_samples=3, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(got, ref)
        swapped = fn(sal.attribute, x, objects[::-1], n_samples=3, generator=torch.Generator().manual_seed(0))
        assert not torch.allclose(swapped, ref)
