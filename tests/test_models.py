"""Reference architectures, the model registry, the training loop and the weights cache."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

import cleargrad as cg
from cleargrad.core import find_layer, layer_name
from cleargrad.data import write_idx
from cleargrad.models import (
    FashionMNISTRecipe,
    SmallCNN,
    SmallVGG,
    WeightsCache,
    build_model,
    cifar_mobilenet_v2,
    cifar_resnet18,
    config_key,
    evaluate_accuracy,
    fashion_mnist_model,
    fashion_mnist_model_record,
    model_names,
    small_cnn_fashion_mnist,
    small_cnn_fashion_mnist_record,
    train_classifier,
)

BUILDERS = {
    "small-cnn": lambda c, k: SmallCNN(in_channels=c, num_classes=k, width=4),
    "cifar-resnet18": lambda c, k: cifar_resnet18(in_channels=c, num_classes=k, width=0.125),
    "cifar-mobilenet-v2": lambda c, k: cifar_mobilenet_v2(in_channels=c, num_classes=k, width=0.25),
}
AUTO_LAYER = {"small-cnn": "features", "cifar-resnet18": "layer4", "cifar-mobilenet-v2": "features"}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- architectures


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_output_shape(name: str, shape: tuple[int, int, int]) -> None:
    model = BUILDERS[name](shape[0], 7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_auto_layer_is_last_conv_block(name: str, shape: tuple[int, int, int]) -> None:
    model = BUILDERS[name](shape[0], 5).eval()
    x = torch.randn(1, *shape)
    layer = find_layer(model, "auto", example=x)
    assert layer_name(model, layer) == AUTO_LAYER[name]
    # the auto layer's output is exactly what the GAP head pools: the logits follow from it
    acts = []
    h = layer.register_forward_hook(lambda _m, _i, o: acts.append(o.clone()))
    with torch.no_grad():
        out = model(x)
    h.remove()
    head = model.fc if name == "cifar-resnet18" else model.classifier
    torch.testing.assert_close(head(acts[-1].mean(dim=(2, 3))), out)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_small_vgg_auto_layer_and_nonlinear_head(shape: tuple[int, int, int]) -> None:
    model = SmallVGG(in_channels=shape[0], num_classes=6, width=4, hidden=16).eval()
    x = torch.randn(3, *shape)
    layer = find_layer(model, "auto", example=x)
    assert layer_name(model, layer) == "features"
    acts = []
    h = layer.register_forward_hook(lambda _m, _i, o: acts.append(o.clone()))
    with torch.no_grad():
        out = model(x)
    h.remove()
    a = acts[-1]
    assert a.shape[1:] == (16, shape[1] // 4, shape[2] // 4) and out.shape == (3, 6)
    # the head after the layer: 3x3 max-pool, flatten, Linear-ReLU-Dropout-Linear (not GAP-linear)
    torch.testing.assert_close(model.classifier(nn.functional.adaptive_max_pool2d(a, 3)), out)
    kinds = [type(m) for m in model.classifier]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]


def test_mobilenet_auto_layer_is_the_1x1_head_conv() -> None:
    model = cifar_mobilenet_v2(in_channels=1, width=0.25).eval()
    last = model.features[-1]
    assert last[0].kernel_size == (1, 1) and last[0].out_channels == 1280  # not narrowed below 1
    assert isinstance(last[2], nn.ReLU6)
    with torch.no_grad():
        assert model.features(torch.randn(1, 1, 28, 28)).shape == (1, 1280, 4, 4)


def test_resnet_stem_and_stage_resolution() -> None:
    m = cifar_resnet18(width=0.125).eval()
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in m.modules())
    assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = m.relu(m.bn1(m.conv1(x)))
        sizes = []
        for i in range(1, 5):
            a = getattr(m, f"layer{i}")(a)
            sizes.append(tuple(a.shape[1:]))
    assert sizes == [(8, 32, 32), (16, 16, 16), (32, 8, 8), (64, 4, 4)]


def test_resnet18_equals_torchvision_resnet18_with_cifar_stem() -> None:
    """Same parameter names/shapes as torchvision's resnet18 (apart from the stem), and the
    same function once torchvision's stem is swapped for a 3x3 stride-1 conv without max-pool."""
    ours = cifar_resnet18(in_channels=3, num_classes=10).eval()
    ref = torchvision.models.resnet18(weights=None, num_classes=10)
    ref.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    ref.maxpool = nn.Identity()
    ref.eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert n_params(ours) == 11_173_962
    with torch.no_grad():
        for mod in ours.modules():  # non-trivial BN statistics
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.8, 1.2)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("width", [0.5, 1.0])
def test_mobilenet_v2_equals_torchvision_with_cifar_strides(width: float) -> None:
    """Same parameters as torchvision's mobilenet_v2(width_mult=w) and the same function
    once torchvision's stem and second stage are set to stride 1."""
    ours = cifar_mobilenet_v2(in_channels=3, num_classes=10, width=width).eval()
    ref = torchvision.models.mobilenet_v2(weights=None, num_classes=10, width_mult=width)
    ref.features[0][0].stride = (1, 1)  # stem
    ref.features[2].conv[1][0].stride = (1, 1)  # first block of the 24-channel stage (depthwise conv)
    ref.eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("builder", [cifar_resnet18, cifar_mobilenet_v2])
def test_width_multiplier_changes_parameter_count(builder) -> None:
    counts = [n_params(builder(in_channels=1, num_classes=10, width=w)) for w in (0.25, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2]


def test_resnet_width_scales_every_stage() -> None:
    m = cifar_resnet18(width=0.25)
    assert m.conv1.out_channels == 16
    assert [getattr(m, f"layer{i}")[-1].conv2.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert m.fc.in_features == 128


@pytest.mark.parametrize("builder", [cifar_resnet18, cifar_mobilenet_v2])
@pytest.mark.parametrize("width", [0, -1.0, "wide"])
def test_bad_width_is_config_error(builder, width) -> None:
    with pytest.raises(cg.ConfigError, match="width"):
        builder(width=width)


# ---------------------------------------------------------------- registry


def test_build_model_names() -> None:
    assert model_names() == ["cifar-mobilenet-v2", "cifar-resnet18", "small-cnn", "small-vgg"]
    assert isinstance(build_model("small_vgg", width=2), SmallVGG)
    m = build_model("cifar-resnet18", in_channels=1, num_classes=4, width=0.125)
    assert type(m).__name__ == "CifarResNet" and m.fc.out_features == 4 and m.conv1.in_channels == 1
    assert isinstance(build_model("SMALL_CNN", width=2), SmallCNN)
    assert build_model("cifar_mobilenet_v2", width=0.25).classifier[-1].out_features == 10


def test_build_model_errors() -> None:
    with pytest.raises(cg.ConfigError, match="Did you mean: cifar-resnet18"):
        build_model("cifar-resnet-18")
    with pytest.raises(cg.ConfigError, match="bad arguments"):
        build_model("small-cnn", depth=3)


# ---------------------------------------------------------------- training loop


def _toy_data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart by the sign of the mean of the image."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(2, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
    return x, y


def test_train_classifier_learns_and_is_reproducible() -> None:
    x, y = _toy_data()
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        m = SmallCNN(width=2, num_classes=2)
        before = evaluate_accuracy(m, (x, y))
        res = train_classifier(m, (x, y), epochs=3, batch_size=32, lr=1e-2, quiet=True, eval_data=(x, y))
        assert not m.training
        assert res.steps == 12 and res.epochs == 3 and len(res.losses) == 3
        assert res.losses[-1] < res.losses[0]
        assert res.eval_accuracy is not None and res.eval_accuracy >= 0.95 > before
        models.append(m)
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)


def test_train_classifier_accepts_datasets_and_loaders() -> None:
    x, y = _toy_data(64)
    ds = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=16)
    for data in (ds, loader):
        res = train_classifier(SmallCNN(width=2, num_classes=2), data, epochs=5, max_steps=3, quiet=True)
        assert res.steps == 3


def test_evaluate_accuracy_counts_and_restores_mode() -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long(), 3).float()

    m = Fixed().train()
    x = torch.tensor([0.0, 1.0, 2.0, 2.0]).view(4, 1, 1, 1)
    y = torch.tensor([0, 1, 1, 2])
    assert evaluate_accuracy(m, (x, y), batch_size=3) == 0.75
    assert m.training


def test_train_classifier_rejects_bad_options() -> None:
    x, y = _toy_data(16)
    with pytest.raises(cg.ConfigError):
        train_classifier(SmallCNN(width=2), (x, y), epochs=0)
    with pytest.raises(cg.ConfigError):
        train_classifier(SmallCNN(width=2), (x, y), epochs=1, schedule="step")
    with pytest.raises(cg.DataError):
        train_classifier(SmallCNN(width=2), (x, y[:3]), epochs=1)


# ---------------------------------------------------------------- weights cache


@pytest.fixture()
def tiny_fmnist(tmp_path):
    """A fake Fashion-MNIST (random 28x28 images) in the IDX layout."""
    rng = np.random.default_rng(0)
    d = tmp_path / "fmnist"
    for prefix, n in (("train", 64), ("t10k", 32)):
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,), dtype=np.uint8))
    return d


TINY = FashionMNISTRecipe(width=2, epochs=1, batch_size=16, max_steps=3)


def test_cache_roundtrip(tmp_path, tiny_fmnist, monkeypatch) -> None:
    cache = tmp_path / "cache"
    assert small_cnn_fashion_mnist_record(cache, TINY) is None
    first = small_cnn_fashion_mnist(cache, TINY, data_root=tiny_fmnist, quiet=True, device="cpu")
    assert isinstance(first, SmallCNN) and not first.training
    rec = small_cnn_fashion_mnist_record(cache, TINY)
    assert rec is not None and rec["steps"] == 3 and rec["test_images"] == 32
    assert 0.0 <= rec["test_accuracy"] <= 1.0
    assert rec["config"] == TINY.config() and rec["key"] == config_key(TINY.config())
    files = sorted(p.name for p in (cache / "weights").iterdir())
    stem = f"small-cnn-fashion-mnist-{config_key(TINY.config())}"
    assert files == [f"{stem}.json", f"{stem}.safetensors"]
    assert json.loads((cache / "weights" / f"{stem}.json").read_text())["test_accuracy"] == rec["test_accuracy"]
    # the safetensors file holds exactly the trained state
    stored = load_file(cache / "weights" / f"{stem}.safetensors")
    state = first.state_dict()
    assert stored.keys() == state.keys() and all(torch.equal(stored[k], state[k]) for k in state)

    # second call: no training, no data, no pickle; identical weights; fast
    def no_training(*a, **k):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr("cleargrad.models.pretrained.train_classifier", no_training)
    monkeypatch.setattr("cleargrad.models.pretrained.load_fashion_mnist", no_training)
    monkeypatch.setattr(torch, "load", no_training)
    t0 = time.perf_counter()
    second = small_cnn_fashion_mnist(cache, TINY, quiet=True, device="cpu")
    assert time.perf_counter() - t0 < 1.0
    for k, v in second.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not second.training


@pytest.mark.parametrize("arch", ["small-vgg", "cifar-resnet18"])
def test_other_reference_models_train_once_and_load(tmp_path, tiny_fmnist, arch) -> None:
    cache = tmp_path / "cache"
    recipe = FashionMNISTRecipe(width=2 if arch == "small-vgg" else 0.125, epochs=1, batch_size=16, max_steps=2)
    assert fashion_mnist_model_record(arch, cache, recipe) is None
    first = fashion_mnist_model(arch, cache, recipe, data_root=tiny_fmnist, quiet=True, device="cpu")
    rec = fashion_mnist_model_record(arch, cache, recipe)
    assert rec is not None and rec["config"]["model"] == arch and rec["steps"] == 2
    assert (cache / "weights" / f"{arch}-fashion-mnist-{config_key(recipe.config(arch))}.safetensors").is_file()
    second = fashion_mnist_model(arch, cache, recipe, quiet=True, device="cpu")  # no data needed now
    assert type(second) is type(first) and not second.training
    for k, v in second.state_dict().items():
        assert torch.equal(v, first.state_dict()[k]), k


def test_fashion_mnist_model_small_cnn_is_the_reference_entry(tmp_path, tiny_fmnist) -> None:
    cache = tmp_path / "cache"
    a = small_cnn_fashion_mnist(cache, TINY, data_root=tiny_fmnist, quiet=True, device="cpu")
    assert fashion_mnist_model_record("small-cnn", cache, TINY) == small_cnn_fashion_mnist_record(cache, TINY)
    b = fashion_mnist_model("small-cnn", cache, TINY, quiet=True, device="cpu")
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    with pytest.raises(cg.ConfigError, match="unknown reference model"):
        fashion_mnist_model("vgg16", cache)


def test_cache_key_depends_on_recipe(tmp_path, tiny_fmnist) -> None:
    other = FashionMNISTRecipe(width=2, epochs=1, batch_size=16, max_steps=3, seed=1)
    assert config_key(other.config()) != config_key(TINY.config())
    assert config_key({"a": 1, "b": 2}) == config_key({"b": 2, "a": 1})
    cache = tmp_path / "cache"
    a = small_cnn_fashion_mnist(cache, TINY, data_root=tiny_fmnist, quiet=True, device="cpu")
    b = small_cnn_fashion_mnist(cache, other, data_root=tiny_fmnist, quiet=True, device="cpu")
    assert len(list((cache / "weights").glob("*.safetensors"))) == 2
    assert not torch.equal(a.classifier.weight, b.classifier.weight)


def test_cache_dir_from_env_and_retrain(tmp_path, tiny_fmnist, monkeypatch) -> None:
    monkeypatch.setenv("CLEARGRAD_CACHE", str(tmp_path / "envcache"))
    small_cnn_fashion_mnist(recipe=TINY, data_root=tiny_fmnist, quiet=True, device="cpu")
    entry = WeightsCache().entry("small-cnn-fashion-mnist", TINY.config())
    assert entry.weights.parent == tmp_path / "envcache" / "weights" and entry.exists()
    stamp = json.loads(entry.record.read_text())["trained_at"]
    calls = []
    monkeypatch.setattr(
        "cleargrad.models.pretrained.train_classifier",
        lambda *a, **k: calls.append(1) or train_classifier(*a, **k),
    )
    small_cnn_fashion_mnist(recipe=TINY, data_root=tiny_fmnist, quiet=True, device="cpu", retrain=True)
    assert calls == [1] and json.loads(entry.record.read_text())["trained_at"] >= stamp


def test_corrupt_cache_is_data_error(tmp_path, tiny_fmnist) -> None:
    cache = tmp_path / "cache"
    small_cnn_fashion_mnist(cache, TINY, data_root=tiny_fmnist, quiet=True, device="cpu")
    entry = WeightsCache(cache).entry("small-cnn-fashion-mnist", TINY.config())
    entry.weights.write_bytes(b"not a safetensors file")
    with pytest.raises(cg.DataError, match="delete it to retrain"):
        small_cnn_fashion_mnist(cache, TINY, quiet=True, device="cpu")


def test_cache_refuses_weights_of_another_shape(tmp_path) -> None:
    cache = WeightsCache(tmp_path)
    cache.save(SmallCNN(width=2), "m", {"w": 2}, {})
    with pytest.raises(cg.DataError):
        cache.load(SmallCNN(width=3), "m", {"w": 2})


def test_training_leaves_the_global_rng_alone(tmp_path, tiny_fmnist) -> None:
    x, y = _toy_data(32)
    model = SmallCNN(width=2, num_classes=2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(model, (x, y), epochs=1, quiet=True, seed=5)
    small_cnn_fashion_mnist(tmp_path, TINY, data_root=tiny_fmnist, quiet=True, device="cpu")
    assert torch.equal(torch.rand(3), expected)
