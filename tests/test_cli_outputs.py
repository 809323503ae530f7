"""What ``explain`` writes and what the command adds around it: GAD from the command line
(fit, then ``--method gad:saliency``), the manifest, output names that never collide,
centre-crop preprocessing, ``export``, the 80-column summary, ``--device auto`` and the
light start-up."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import env, make_images, make_model_file, one_thread
from PIL import Image
from typer.testing import CliRunner

import cleargrad as cg
from cleargrad.cli import app
from cleargrad.evaluation.modelspec import load_model

runner = CliRunner()


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("outputs")
    return {"dir": d, "model": make_model_file(d), "images": make_images(d, per_class=3)}


def spec(ws: dict[str, Path]) -> str:
    return f"{ws['model']}:factory"


def _prep_image(path: Path) -> torch.Tensor:
    """One 28×28 grayscale PNG as the default preprocessing gives it (Fashion-MNIST mean/std)."""
    arr = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    return ((torch.from_numpy(arr) - cg.data.FASHION_MNIST_MEAN) / cg.data.FASHION_MNIST_STD)[None, None]


@pytest.fixture(scope="module")
def gad_dir(ws: dict[str, Path]) -> Path:
    out = ws["dir"] / "gad"
    with one_thread():
        r = invoke(
            "gad", "fit", "--model", spec(ws), "--dataset", str(ws["images"]), "--classes", "0,1",
            "--support", "2", "--epochs", "1", "--lr", "1e-3", "--batch-size", "4", "--out", str(out),
            "--device", "cpu", "-q",
        )
    assert r.exit_code == 0, r.output
    return out


def test_gad_fit_writes_a_loadable_gad_and_a_record(ws: dict[str, Path], gad_dir: Path) -> None:
    assert {p.name for p in gad_dir.iterdir()} == {"gad.json", "support.safetensors", "fit.json"}
    record = json.loads((gad_dir / "fit.json").read_text())
    assert record["settings"]["classes"] == [0, 1] and record["settings"]["n_support"] == 2
    assert record["images"] == 6 and len(record["stats"][0]["models"]) == 2
    gad = cg.GAD.load(str(gad_dir), load_model(spec(ws)))
    assert gad.n_support == 2 and gad.classes == (0, 1)
    # the same command again finds the fit and does nothing
    r = invoke("gad", "fit", "--model", spec(ws), "--dataset", str(ws["images"]), "--classes", "0,1",
               "--support", "2", "--epochs", "1", "--lr", "1e-3", "--batch-size", "4", "--out", str(gad_dir),
               "--device", "cpu")
    assert r.exit_code == 0 and "nothing to do" in r.stderr
    assert "skipped 1 unreadable" in r.stderr and "bad.png" in r.stderr  # the corrupt file is named
    # other settings into the same folder are refused, the folder is left alone
    r = invoke("gad", "fit", "--model", spec(ws), "--dataset", str(ws["images"]), "--classes", "0,1",
               "--support", "3", "--epochs", "1", "--out", str(gad_dir), "--device", "cpu", "-q")
    assert r.exit_code == 2 and "other settings" in r.stderr
    assert json.loads((gad_dir / "fit.json").read_text())["key"] == record["key"]


def test_explain_gad_saliency_end_to_end(ws: dict[str, Path], gad_dir: Path) -> None:
    out = ws["dir"] / "explain-gad"
    with one_thread():
        r = invoke("explain", "--model", spec(ws), "--images", str(ws["images"]), "--method", "saliency,gad:saliency",
                   "--gad", str(gad_dir), "--out", str(out), "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    rows = _csv(out / "manifest.csv")
    gad_rows = [row for row in rows if row["method"] == "gad_saliency"]
    assert len(gad_rows) == 6 and len(rows) == 12
    model = load_model(spec(ws))
    gad = cg.GAD.load(str(gad_dir), model)
    for row in gad_rows:
        x = _prep_image(Path(row["input"]))
        with torch.no_grad():
            logits = model(x)[0]
        k = int(row["class_index"])
        assert k == int(logits[:2].argmax())  # auto = the prediction among the GAD's classes
        assert row["target_rule"] == "prediction among classes 0,1"
        expected = gad.attribute(x, target=k)[0].numpy()
        np.testing.assert_allclose(np.load(out / row["array"]), expected, rtol=1e-5, atol=1e-6)
        # the library entry point gives the same map from the folder
        np.testing.assert_allclose(
            cg.explain(model, x, method="gad:saliency", gad=str(gad_dir), target=k)[0].numpy(), expected,
            rtol=1e-5, atol=1e-6,
        )


def test_gad_methods_need_a_gad_folder_and_bad_names_get_valid_suggestions(ws: dict[str, Path]) -> None:
    r = invoke("explain", "--model", spec(ws), "--images", str(ws["images"]), "--method", "gad:saliency",
               "--out", str(ws["dir"] / "nogad"))
    assert r.exit_code == 2 and "--gad DIR" in r.stderr
    r = invoke("explain", "--model", spec(ws), "--images", str(ws["images"]), "--method", "gad",
               "--out", str(ws["dir"] / "nogad"))
    assert r.exit_code == 2 and "gad:saliency" in r.stderr
    valid = set(cg.methods())
    for wrong in ("gradiant", "gradcamm", "smoothgrd", "integrated"):
        with pytest.raises(cg.ConfigError) as e:
            cg.explain(load_model(spec(ws)), torch.zeros(1, 1, 28, 28), method=wrong)
        hint = str(e.value).split("Did you mean: ")[1].split("?")[0]
        suggested = [s.split(" (alias")[0] for s in hint.split(", ")]
        assert suggested and set(suggested) <= valid, hint


def test_manifest_rows_match_the_files(ws: dict[str, Path], tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("zero\none\ntwo\n")
    out = tmp_path / "out"
    with one_thread():
        r = invoke("explain", "--model", spec(ws), "--images", str(ws["images"]), "--method", "saliency,gradcam",
                   "--class-names", str(names), "--out", str(out), "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    rows = _csv(out / "manifest.csv")
    payload = json.loads((out / "manifest.json").read_text())
    assert len(rows) == len(payload["rows"]) == 6 * 2
    assert payload["run"]["preprocess"]["resize"] == "crop" and payload["run"]["device"] == "cpu"
    listed = {row["overlay"] for row in rows} | {row["array"] for row in rows}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in (".png", ".npy")}
    assert listed == on_disk  # every file is listed, every listed file exists
    model = load_model(spec(ws))
    for row, js in zip(rows, payload["rows"]):
        assert js["overlay"] == row["overlay"] and js["method"] == row["method"]
        x = _prep_image(Path(row["input"]))
        with torch.no_grad():
            p = torch.softmax(model(x), 1)[0]
        k = int(row["class_index"])
        assert k == int(p.argmax()) and row["target_rule"] == "prediction"
        assert row["class_name"] == ["zero", "one", "two"][k]
        assert float(row["probability"]) == pytest.approx(float(p[k]), rel=1e-5)
        assert row["label_name"] == Path(row["input"]).parent.name
        a = np.load(out / row["array"])
        if row["method"] == "saliency":
            np.testing.assert_allclose(a, cg.Saliency(model).attribute(x, target=k)[0].numpy(), rtol=1e-5, atol=1e-7)
        with Image.open(out / row["overlay"]) as im:  # a figure: wider than two panels of the input
            assert im.format == "PNG" and im.size[0] > 2 * im.size[1] * 0.9
    # --plain keeps bare overlays (the input's aspect, enlarged)
    plain = tmp_path / "plain"
    r = invoke("explain", "--model", spec(ws), "--images", str(ws["images"] / "boot" / "img0.png"),
               "--method", "saliency", "--plain", "--out", str(plain), "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    with Image.open(plain / "img0.png__saliency.png") as im:
        assert im.size[0] == im.size[1] >= 112


def test_colliding_input_names_give_distinct_stable_files(ws: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(3)
    files = ["a.png", "a.jpg", "a b.png", "a_b.png", "A.PNG", "x.png"]
    for name in files:
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(folder / name, format=(
            "JPEG" if name.endswith(".jpg") else "PNG"))
    out = tmp_path / "out"
    with one_thread():
        r = invoke("explain", "--model", spec(ws), "--images", str(folder), "--method", "saliency",
                   "--out", str(out), "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    rows = _csv(out / "manifest.csv")
    assert sorted(Path(r["input"]).name for r in rows) == sorted(files)
    overlays = [r["overlay"] for r in rows]
    assert len({o.casefold() for o in overlays}) == len(files)  # distinct, also on case-insensitive disks
    assert len(list(out.glob("*.npy"))) == len(files)
    by_input = {Path(r["input"]).name: r for r in rows}
    digest = hashlib.sha256(b"a b.png").hexdigest()[:8]
    assert by_input["a b.png"]["overlay"] == f"a_b.png~{digest}__saliency.png"
    assert by_input["a_b.png"]["overlay"] == "a_b.png__saliency.png"
    assert by_input["x.png"]["overlay"] == "x.png__saliency.png"
    model = load_model(spec(ws))
    for name, row in by_input.items():  # each file holds its own image's map
        x = _prep_image(folder / name)
        k = int(row["class_index"])
        np.testing.assert_allclose(np.load(out / row["array"]), cg.Saliency(model).attribute(x, target=k)[0].numpy(),
                                   rtol=1e-5, atol=1e-7)


def _square_image(path: Path) -> None:
    """100×50 (W×H) white image with a black 20×20 square in the middle."""
    arr = np.full((50, 100), 255, dtype=np.uint8)
    arr[15:35, 40:60] = 0
    Image.fromarray(arr).convert("RGB").save(path)


def _dark_extent(img: np.ndarray) -> tuple[int, int]:
    dark = img < 0.5
    rows, cols = np.nonzero(dark.any(axis=1))[0], np.nonzero(dark.any(axis=0))[0]
    return cols.max() - cols.min() + 1, rows.max() - rows.min() + 1


def test_centre_crop_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    from torchvision.transforms import CenterCrop, Resize

    from cleargrad.evaluation.images import default_preprocess, image_set

    path = tmp_path / "wide.png"
    _square_image(path)
    crop = cg.data.load_image_folder([path], size=26, channels=1).images[0, 0].numpy()
    squash = cg.data.load_image_folder([path], size=26, channels=1, resize="squash").images[0, 0].numpy()
    w, h = _dark_extent(crop)
    assert w == h and 10 <= w <= 12  # the square stays square (20 px * 26/50)
    w, h = _dark_extent(squash)
    assert h >= 1.5 * w  # squashing halves the width only (5.2 vs 10.4 px, edges blurred)
    with Image.open(path) as im:  # torchvision's convention, pixel for pixel
        ref = np.asarray(CenterCrop(26)(Resize(26)(im.convert("L"))), dtype=np.float32) / 255
    np.testing.assert_allclose(crop, ref, atol=1e-6)
    # the command's default for RGB models at 224: torchvision's ImageNet evaluation transform
    rgb_model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    prep = default_preprocess(rgb_model)
    assert (prep.size, prep.resize, prep.crop_fraction) == (224, "crop", 0.875)
    x, _ = image_set([path], prep).load([0])
    with Image.open(path) as im:
        ref = np.asarray(CenterCrop(224)(Resize(256)(im.convert("RGB"))), dtype=np.float32) / 255
    np.testing.assert_allclose(prep.denormalize(x[0]).permute(1, 2, 0).numpy(), ref, atol=1e-5)


@pytest.fixture(scope="module")
def store(ws: dict[str, Path], gad_dir: Path) -> Path:
    path = ws["dir"] / "eval.sqlite"
    with one_thread():
        r = invoke("evaluate", "--model", spec(ws), "--dataset", str(ws["images"]), "--methods",
                   "saliency,gradcam,gad:saliency", "--gad", str(gad_dir), "--metrics",
                   "deletion,sparseness,region_complexity", "--reference", "gradcam", "--store", str(path),
                   "--batch-size", "4", "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    return path


def test_evaluate_runs_gad_and_compares_it_with_its_base(store: Path) -> None:
    con = sqlite3.connect(str(store))
    rc = dict(con.execute("SELECT method, AVG(value) FROM results WHERE metric='region_complexity' "
                          "GROUP BY method").fetchall())
    (n,) = con.execute("SELECT COUNT(*) FROM results WHERE method='gad_saliency'").fetchone()
    targets = {t for (t,) in con.execute("SELECT DISTINCT target FROM results WHERE method='gad_saliency'")}
    con.close()
    assert n == 6 * 3 and targets <= {0, 1}
    assert rc["gradcam"] == 1.0  # --reference compares plain methods with gradcam ...
    assert rc["gad_saliency"] <= 1.0  # ... and GAD with saliency, whose region contains GAD's


def test_export_csv_and_parquet(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.csv"
    r = invoke("export", str(store), "--format", "csv", "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = _csv(out)
    con = sqlite3.connect(str(store))
    stored = con.execute("SELECT image_id, method, metric, value FROM results").fetchall()
    con.close()
    assert len(rows) == len(stored)
    got = {(r["image_id"], r["method"], r["metric"]): r["value"] for r in rows}
    for image_id, method, metric, value in stored:
        assert float(got[(image_id, method, metric)]) == pytest.approx(value, rel=1e-12)
    runs = json.loads((tmp_path / "r.runs.json").read_text())
    assert {row["settings_hash"] for row in rows} == {run["settings_hash"] for run in runs}
    pq = pytest.importorskip("pyarrow.parquet")
    r = invoke("export", str(store), "--format", "parquet", "--out", str(tmp_path / "r.parquet"))
    assert r.exit_code == 0, r.output
    table = pq.read_table(str(tmp_path / "r.parquet")).to_pylist()
    assert [(t["image_id"], t["method"], t["metric"]) for t in table] == [
        (r["image_id"], r["method"], r["metric"]) for r in rows
    ]
    assert [t["value"] for t in table] == pytest.approx([float(r["value"]) for r in rows])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    r = invoke("export", str(store), "--format", "parquet", "--out", str(tmp_path / "x.parquet"))
    assert r.exit_code == 2 and "pyarrow" in r.stderr and not (tmp_path / "x.parquet").exists()


def test_summary_fits_80_columns(store: Path) -> None:
    from rich.console import Console

    from cleargrad.cli.tables import results_tables
    from cleargrad.store import ResultStore

    with ResultStore(store) as st:
        for width in (80, 300):  # three metrics: the full table fits both
            con = Console(width=width, record=True, file=io.StringIO(), color_system=None)
            for t in results_tables(st, None, width, str(store)):
                con.print(t)
            text = con.export_text()
            assert max(len(line) for line in text.splitlines()) <= width
            for metric in ("deletion", "sparseness", "region_complexity"):
                assert metric in text
            assert all(m in text for m in ("saliency", "gradcam", "gad_saliency"))


def test_many_methods_summary_stays_within_80_columns(tmp_path: Path) -> None:
    from rich.console import Console

    from cleargrad.cli.tables import results_tables
    from cleargrad.store import ResultRow, ResultStore

    methods = [f"method_with_a_long_name_{i}" for i in range(19)]
    metrics = ["insertion", "deletion", "average_drop", "infidelity", "sparseness", "complexity",
               "region_complexity", "region_sensitivity"]
    with ResultStore(tmp_path / "s.sqlite") as st:
        h = st.record_run({"x": 1}, {})
        st.add_metric_info((m, "lower" if m in ("deletion", "infidelity") else "higher", "c", "") for m in metrics)
        st.add_results([ResultRow(f"img{i}", m, k, float(j + i) / 10, 0)
                        for i in range(3) for j, m in enumerate(methods) for k in metrics], h)
        con = Console(width=80, record=True, file=io.StringIO(), color_system=None)
        for t in results_tables(st, h, 80, "s.sqlite"):
            con.print(t)
    text = con.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    best_line = next(line for line in text.splitlines() if "deletion" in line)
    assert methods[0] in best_line and "0.1" in best_line  # lowest deletion: the first method
    assert methods[-1] in next(line for line in text.splitlines() if "insertion" in line)
    assert "cleargrad report s.sqlite" in text  # where the full table is


def test_device_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    from cleargrad.evaluation.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    r = invoke("explain", "--help")
    assert "auto" in r.stdout and "[default: auto]" in r.stdout


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from cleargrad.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['explain', '--help'])\nexcept SystemExit:\n    pass\n"
        "import cleargrad\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "explain" in r.stdout and "--method" in r.stdout
