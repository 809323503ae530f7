"""First-hour friction (issue 31): a factory model without weights warns and the report
says "random init"; a `cleargrad train` run folder loads back; the Python preset equals
the CLI preprocessing; option spellings agree; a bad $CLEARGRAD_FASHION_MNIST is an error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_images, make_model_file, one_thread
from PIL import Image
from typer.testing import CliRunner

from cleargrad.cli.app import app
from cleargrad.errors import DataError
from cleargrad.evaluation.modelspec import ModelLoadError, load_model


def _invoke(args: list[str]):
    with one_thread():
        return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """Two classes of 16x16 grayscale images (a bright square top-left or bottom-right)."""
    root = tmp_path_factory.mktemp("friction") / "shapes"
    rng = np.random.default_rng(0)
    for c, (r, s) in enumerate([(2, 2), (9, 9)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(6):
            a = rng.random((16, 16)) * 0.3
            a[r : r + 5, s : s + 5] = 1.0
            Image.fromarray((a * 255).astype(np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def train_run(shapes: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    r = _invoke([
        "train", "--model", "small-cnn", "--width", "2", "--dataset", shapes, "--grayscale", "--size", "16",
        "--epochs", "1", "--batch-size", "8", "--loss", "ce", "--out", out, "--quiet",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    return out


def test_a_factory_model_without_weights_warns_and_the_report_says_random_init(tmp_path: Path) -> None:
    model = make_model_file(tmp_path)
    images = make_images(tmp_path, per_class=2, corrupt=False)
    names = tmp_path / "names.txt"
    names.write_text("boot\nsandal\n")
    store = tmp_path / "s.sqlite"
    r = _invoke([
        "evaluate", "--model", f"{model}:factory", "--dataset", images, "--method", "saliency",
        "--metrics", "sparseness", "--store", store, "--class-names", names,
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "model factory" in r.output and "without --weights has random weights" in r.output
    r = _invoke(["report", store, "--out", tmp_path / "r.html"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    head = html[html.index('id="what-ran"') : html.index("</table>", html.index('id="what-ran"'))]
    assert "random init" in head
    assert "class names" in head and "boot, sandal" in head  # the file's names, not the folders'
    assert "``" not in html and "|Phi|" in html  # sparseness's summary, reST literals rendered as text


def test_the_report_names_the_weights_file_and_digest(tmp_path: Path, train_run: Path, shapes: Path) -> None:
    store = tmp_path / "s.sqlite"
    r = _invoke([
        "evaluate", "--model", "small-cnn", "--weights", train_run, "--dataset", shapes, "--size", "16",
        "--methods", "saliency", "--metrics", "sparseness", "--store", store, "-q",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "random weights" not in r.output
    _invoke(["report", store, "--out", tmp_path / "r.html"])
    html = (tmp_path / "r.html").read_text()
    head = html[html.index('id="what-ran"') : html.index("</table>", html.index('id="what-ran"'))]
    assert "model.safetensors" in head or str(train_run) in head
    assert "sha256" in head and "random init" not in head
    assert "class0, class1" in head


@pytest.mark.parametrize("where", ["folder", "file"])
def test_a_train_run_loads_back_by_its_folder_or_its_weights_file(
    tmp_path: Path, train_run: Path, shapes: Path, where: str
) -> None:
    weights = train_run if where == "folder" else train_run / "model.safetensors"
    net = load_model("small-cnn", weights)
    from safetensors.torch import load_file

    saved = load_file(str(train_run / "model.safetensors"))
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
    r = _invoke([
        "explain", "--model", "small-cnn", "--weights", weights, "--images", shapes / "class1",
        "--size", "16", "--method", "saliency", "--out", tmp_path / "ex", "-q",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "ex" / "manifest.json").read_text())
    assert manifest["run"]["class_names_used"] == ["class0", "class1"]  # from run.json's classes
    assert manifest["run"]["weights_used"] == str(weights)
    assert {row["class_name"] for row in manifest["rows"]} <= {"class0", "class1"}


def test_a_size_mismatch_is_one_line_naming_the_width(tmp_path: Path, train_run: Path) -> None:
    loose = tmp_path / "w.safetensors"  # the same weights outside their run folder
    loose.write_bytes((train_run / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError) as err:
        load_model("small-cnn", loose)
    msg = str(err.value)
    assert "\n" not in msg and "--width" in msg and "size mismatch for" in msg and "RUN_FOLDER" in msg
    with pytest.raises(ModelLoadError, match="no run.json"):
        load_model("small-cnn", tmp_path)


def test_the_imagenet_preset_equals_the_cli_preprocessing(tmp_path: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from torch import nn

    from cleargrad.data import IMAGENET_MEAN, load_image_folder
    from cleargrad.evaluation.images import default_preprocess, image_set

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()[:, 40:]).save(photo)  # not square: the crop matters
    cli = default_preprocess(nn.Sequential(nn.Conv2d(3, 4, 3)))
    assert cli.mean == IMAGENET_MEAN
    x_cli, _ = image_set([photo], cli).load([0])
    x_py = load_image_folder(photo, preset="imagenet").images
    assert x_py.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x_py, x_cli, rtol=0, atol=0)
    plain = load_image_folder(photo, size=224)  # explicit arguments still win over nothing
    assert not torch.equal(plain.images, x_py)


def test_explain_takes_methods_and_target_label(tmp_path: Path) -> None:
    model = make_model_file(tmp_path)
    images = make_images(tmp_path, per_class=1, corrupt=False)
    r = _invoke([
        "explain", "--model", f"{model}:factory", "--images", images, "--methods", "saliency",
        "--target", "label", "--out", tmp_path / "ex", "-q",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "ex" / "manifest.json").read_text())
    assert manifest["run"]["target"] == "label" and manifest["run"]["weights_used"] == "random init"
    assert all(row["class_index"] == row["label"] for row in manifest["rows"])  # explained for the label
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(loose / "a.png")
    r = _invoke([
        "explain", "--model", f"{model}:factory", "--images", loose, "--method", "saliency",
        "--target", "label", "--out", tmp_path / "ex2", "-q",
    ])  # fmt: skip
    assert r.exit_code == 2 and "--target label needs a class for every image" in r.output


def test_a_missing_fashion_mnist_folder_in_the_variable_is_an_error(tmp_path: Path, monkeypatch) -> None:
    from cleargrad.data import fashion_mnist_dir

    monkeypatch.setenv("CLEARGRAD_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="CLEARGRAD_FASHION_MNIST=.*nowhere is not a folder"):
        fashion_mnist_dir()


def test_methods_shows_the_whole_first_sentence() -> None:
    import io

    from rich.console import Console

    from cleargrad.cli.tables import print_methods
    from cleargrad.evaluation.console import UI

    ui = UI(quiet=True)
    buf = io.StringIO()
    ui.out = Console(file=buf, width=2000)
    print_methods(ui)
    out = buf.getvalue()
    # HiResCAM's and Attention rollout's first sentences run over two docstring lines
    assert "the gradient is not averaged" in out and "with the residual identity; class-agnostic." in out
    assert "``" not in out


def test_report_curves_get_distinct_hues(monkeypatch) -> None:
    import colorsys

    import matplotlib.axes
    import matplotlib.colors

    from cleargrad.report.plots import curves_uri

    colours: list[tuple[float, ...]] = []
    real = matplotlib.axes.Axes.plot

    def plot(self, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        colours.append(matplotlib.colors.to_rgb(kw["color"]))
        return real(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    methods = [f"m{k}" for k in range(10)]
    curves_uri("insertion", methods, {m: np.linspace(0, 1, 5) for m in methods}, {m: 1 for m in methods})
    hsv = [colorsys.rgb_to_hsv(*c) for c in colours]
    assert len(hsv) == 10
    for i in range(10):
        for j in range(i + 1, 10):
            if hsv[i][1] > 0.2 and hsv[j][1] > 0.2:  # two coloured (not grey) curves
                d = abs(hsv[i][0] - hsv[j][0])
                assert min(d, 1 - d) > 0.02, (i, j, colours[i], colours[j])


def test_the_reference_smallcnn_message_says_the_weights_ship(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    photo = tmp_path / "a.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(photo)
    r = _invoke([
        "explain", "--model", "small-cnn-fashion-mnist", "--images", photo, "--method", "saliency",
        "--out", tmp_path / "ex",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "first use" not in r.output and "ship" in r.output
