"""GAD end to end on a tiny model and a tiny synthetic pair: fit, attribute, save/load,
reproducibility, the original model left untouched, and clear errors."""

from __future__ import annotations

import time

import pytest
import torch
from helpers import ModelSnapshot, tiny_cnn
from torch.utils.data import DataLoader, TensorDataset

import cleargrad as cg
from cleargrad.api import make_method
from cleargrad.gad import GAD, fuse

BASES = ["saliency", "deconvolution", "input_x_gradient", "guided_backprop", "integrated_gradients"]
FAST = {"n_support": 3, "epochs": 4, "lr": 1e-2, "batch_size": 8, "progress": False}


def pair_data(n: int = 32, seed: int = 0, classes: tuple[int, ...] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``classes[i]`` lights up horizontal band ``i`` of an 8x8 image."""
    g = torch.Generator().manual_seed(seed)
    k = len(classes)
    idx = torch.arange(n) % k
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    band = 8 // k
    for i in range(k):
        x[idx == i, :, i * band : (i + 1) * band] += 1.0
    return x, torch.tensor(classes)[idx]


_TRAINED: dict[int, dict] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster, and avoids oversubscribing shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trained_model(num_classes: int = 2) -> torch.nn.Module:
    """A tiny CNN trained (briefly, seeded) to separate the synthetic classes."""
    if num_classes not in _TRAINED:
        m = tiny_cnn(0, num_classes=num_classes).train()
        x, y = pair_data(64, seed=1, classes=tuple(range(num_classes)))
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(40):
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _TRAINED[num_classes] = {k: v.clone() for k, v in m.state_dict().items()}
    m = tiny_cnn(0, num_classes=num_classes)
    m.load_state_dict(_TRAINED[num_classes])
    return m.eval()


@pytest.fixture(scope="module")
def fitted() -> GAD:
    return GAD(trained_model(), base="saliency", classes=(0, 1), **FAST).fit(pair_data())


def test_fit_is_fast_and_margins_grow_with_alpha() -> None:
    model = trained_model()
    x, y = pair_data()
    start = time.perf_counter()
    gad = GAD(model, base="saliency", classes=(0, 1), n_support=3, alphas=[1.0, 2.0, 3.0], epochs=15, lr=1e-2,
              batch_size=8, progress=False).fit((x, y))
    assert time.perf_counter() - start < 20
    with torch.no_grad():
        z = model(x)
    m0 = (z[:, 0] - z[:, 1])[y == 0].mean(), (z[:, 1] - z[:, 0])[y == 1].mean()
    stats = gad.stats_[0]
    assert [s.alpha for s in stats] == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    for prev, cur in zip(stats, stats[1:]):
        assert cur.margin_first > prev.margin_first + 0.5 and cur.margin_second > prev.margin_second + 0.5
    for s in stats:  # the regression reaches the distanced margins
        assert abs(s.margin_first - (m0[0] + s.alpha[0])) < 0.4
        assert abs(s.margin_second - (m0[1] + s.alpha[1])) < 0.4
        assert s.agreement == 1.0 and s.mse < 0.2
    assert gad.fit_time_ > 0


def test_default_rule_schedule_and_support_models(fitted: GAD) -> None:
    a = fitted.alphas_[0]
    assert a.shape == (3, 2) and (a[0] > 0).all()
    torch.testing.assert_close(a, a[0] * torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64))
    models = fitted.support_models_[0]
    assert len(models) == 3 and all(not m.training for m in models)
    assert all(not p.requires_grad for m in models for p in m.parameters())
    for m in models:  # trained: the parameters moved away from the original's
        assert any(not torch.equal(p, q) for p, q in zip(m.parameters(), fitted.model.parameters()))


@pytest.mark.parametrize("base", BASES)
def test_attribute_equals_fusion_of_base_maps_and_batched_equals_sequential(fitted: GAD, base: str) -> None:
    x, _ = pair_data(4, seed=5)
    opts = {"n_steps": 6} if base == "integrated_gradients" else {}
    gad = fitted.with_base(base, opts, batch_models=True)
    assert gad.support_models_ is fitted.support_models_ and fitted.base == "saliency"
    t = torch.tensor([0, 1, 1, 0])
    fused, maps = gad.attribute(x, target=t, return_all=True)
    assert fused.shape == (4, 1, 8, 8) and maps.shape == (4, 4, 8, 8)
    direct = []
    for m in [fitted.model, *fitted.support_models_[0]]:
        inst, o = make_method(m, base, **opts)
        direct.append(inst.attribute(x, target=t, **o))
    ref, ref_maps = fuse(direct, tau=gad.tau, return_maps=True)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps, ref_maps, rtol=1e-5, atol=1e-6)
    gad.batch_models = False
    torch.testing.assert_close(gad.attribute(x, target=t), ref, rtol=1e-5, atol=1e-6)
    assert (fused > 0).sum() <= (maps[:, :1] >= gad.tau).sum()  # never larger than the original's mask


def test_auto_stacks_only_the_one_pass_bases(fitted: GAD, monkeypatch: pytest.MonkeyPatch) -> None:
    """batch_models="auto": one stacked base call for the one-pass bases, S + 1 calls for IG
    (stacked IG measured slower, benchmarks/results/gad_claims/gad_speed.md)."""
    import cleargrad.gad.gad as gad_module

    calls = []
    real = gad_module.StackedModels

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gad_module, "StackedModels", counting)
    x, _ = pair_data(2, seed=3)
    t = torch.tensor([0, 1])
    fitted.with_base("saliency").attribute(x, target=t)
    assert len(calls) == 1
    fitted.with_base("integrated_gradients", {"n_steps": 4}).attribute(x, target=t)
    assert len(calls) == 1
    fitted.with_base("integrated_gradients", {"n_steps": 4}, batch_models=True).attribute(x, target=t)
    assert len(calls) == 2


def test_default_target_is_argmax_among_classes(fitted: GAD) -> None:
    x, _ = pair_data(6, seed=7)
    with torch.no_grad():
        pred = fitted.model(x).argmax(1)
    torch.testing.assert_close(fitted.attribute(x), fitted.attribute(x, target=pred))


def test_original_model_untouched_by_fit_and_attribute() -> None:
    model = trained_model()
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0:
            p.grad = torch.randn_like(p)
    snap = ModelSnapshot.take(model)
    gad = GAD(model, base="guided_backprop", classes=(0, 1), **FAST).fit(pair_data())
    snap.assert_same(model)
    gad.attribute(pair_data(3)[0], target=1)
    snap.assert_same(model)
    with pytest.raises(cg.TargetError):
        gad.attribute(pair_data(3)[0], target=[0, 1, 7])
    snap.assert_same(model)


def test_reproducible_with_seed() -> None:
    data = pair_data()
    fits = [GAD(trained_model(), classes=(0, 1), seed=s, **FAST).fit(data) for s in (3, 3, 4)]
    for m1, m2, m3 in zip(*(f.support_models_[0] for f in fits)):
        s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
        assert all(torch.equal(s1[k], s2[k]) for k in s1)
        assert any(not torch.equal(s1[k], s3[k]) for k in s1)  # the seed matters (shuffling)


def test_warm_start_vs_original_init() -> None:
    data = pair_data()
    warm = GAD(trained_model(), classes=(0, 1), **FAST).fit(data)
    fresh = GAD(trained_model(), classes=(0, 1), init="original", **FAST).fit(data)
    # first model identical (both start from M_0), later ones differ
    a, b = warm.support_models_[0], fresh.support_models_[0]
    assert all(torch.equal(p, q) for p, q in zip(a[0].parameters(), b[0].parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(a[1].parameters(), b[1].parameters()))


def test_dataset_loader_and_tensors_agree() -> None:
    x, y = pair_data()
    extra_x = torch.randn(8, 1, 8, 8)  # images of a class not concerned are filtered out
    xs, ys = torch.cat([x, extra_x]), torch.cat([y, torch.full((8,), 2)])
    model = trained_model(3)
    ref = GAD(model, classes=(0, 1), **FAST).fit((x, y))
    for data in (TensorDataset(xs, ys), DataLoader(TensorDataset(xs, ys), batch_size=10, shuffle=False)):
        g = GAD(model, classes=(0, 1), **FAST).fit(data)
        for m1, m2 in zip(ref.support_models_[0], g.support_models_[0]):
            assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_save_load_identical_maps(tmp_path, fitted: GAD) -> None:
    x, _ = pair_data(5, seed=9)
    fitted.save(tmp_path / "gad")
    assert {p.name for p in (tmp_path / "gad").iterdir()} == {"gad.json", "support.safetensors"}
    loaded = GAD.load(tmp_path / "gad", trained_model())
    assert torch.equal(loaded.attribute(x), fitted.attribute(x))
    assert loaded.stats_ == fitted.stats_ and torch.equal(loaded.alphas_[0], fitted.alphas_[0])
    assert loaded.tasks_ == fitted.tasks_ and loaded.train_settings == fitted.train_settings
    other = GAD.load(tmp_path / "gad", trained_model(), tau="q90")
    assert other.tau == "q90"
    with pytest.raises(cg.DataError, match="architecture"):
        GAD.load(tmp_path / "gad", cg.models.SmallCNN(width=6, num_classes=2))
    with pytest.raises(cg.DataError, match="architecture"):
        GAD.load(tmp_path / "gad", torch.nn.Linear(4, 2))
    with pytest.raises(cg.DataError, match="does not hold"):
        GAD.load(tmp_path / "nothing", trained_model())


def test_one_vs_all_and_split() -> None:
    model = trained_model(3)
    x, y = pair_data(30, classes=(0, 1, 2))
    ova = GAD(model, classes=None, strategy="one_vs_all", **FAST).fit((x, y))
    assert [e for _, e in ova.tasks_] == [(0,), (1,), (2,)]
    assert ova.tasks_[1][0].second == (0, 2)
    t = torch.tensor([0, 1, 2, 2])
    fused = ova.attribute(x[:4], target=t)
    for i, c in enumerate(t.tolist()):  # each image explained by its class's support models
        maps = [make_method(m, "integrated_gradients")[0].attribute(x[i : i + 1], target=c)
                for m in [model, *ova.support_models_[c]]]
        torch.testing.assert_close(fused[i : i + 1], fuse(maps, tau=ova.tau), rtol=1e-5, atol=1e-6)
    split = GAD(model, classes=(0, 1, 2), strategy="split", groups=[[0], [1, 2]], **FAST).fit((x, y))
    assert len(split.support_models_) == 1 and split.attribute(x[:2]).shape == (2, 1, 8, 8)


def test_bad_inputs_clear_errors(fitted: GAD) -> None:
    model = trained_model()
    x, y = pair_data()
    with pytest.raises(cg.ConfigError, match="not outputs of the model"):
        GAD(model, classes=(0, 5), **FAST).fit((x, torch.where(y == 1, 5, y)))
    with pytest.raises(cg.DataError, match="no image of class"):
        GAD(model, classes=(0, 1), **FAST).fit((x[y == 0], y[y == 0]))
    with pytest.raises(cg.DataError, match=r"\(N, C, H, W\)"):
        GAD(model, classes=(0, 1), **FAST).fit(DataLoader(TensorDataset(x.flatten(1), y), batch_size=8))
    with pytest.raises(cg.DataError, match="labels"):
        GAD(model, classes=(0, 1), **FAST).fit((x, y.float()))
    with pytest.raises(cg.DataError, match="labels"):
        GAD(model, classes=(0, 1), **FAST).fit(iter([(x, y[:5])]))
    with pytest.raises(cg.DataError, match="pair"):
        GAD(model, classes=(0, 1), **FAST).fit(iter([x]))
    with pytest.raises(cg.DataError, match="fit\\(\\) takes"):
        GAD(model, classes=(0, 1), **FAST).fit(42)
    with pytest.raises(cg.ConfigError, match="pairwise"):
        GAD(model, classes=(0, 1, 2))
    with pytest.raises(cg.ConfigError, match="unknown method"):
        GAD(model, base="gradcamm", classes=(0, 1))
    with pytest.raises(cg.ConfigError, match="alphas"):
        GAD(model, classes=(0, 1), n_support=2, alphas=[1.0])
    with pytest.raises(cg.ModelStateError, match="not fitted"):
        GAD(model, classes=(0, 1)).attribute(x)
    with pytest.raises(cg.ModelStateError, match="training mode"):
        GAD(trained_model().train(), classes=(0, 1), **FAST).fit((x, y))
    with pytest.raises(cg.InputError):
        fitted.attribute(x[0])
    three = GAD(trained_model(3), classes=(0, 1), n_support=1, epochs=1, progress=False).fit((x, y))
    with pytest.raises(cg.TargetError, match="not explained"):
        three.attribute(x[:2], target=[0, 2])


def test_n_support_zero_is_masked_original(fitted: GAD) -> None:
    model = trained_model()
    x, _ = pair_data(3, seed=4)
    s0 = make_method(model, "saliency")[0].attribute(x, target=1).sum(1, keepdim=True).abs()
    s0 = s0 / s0.flatten(1).amax(1).view(-1, 1, 1, 1)
    for tau, thr in ((None, 0.3), ("paper", 0.1), (0.2, 0.2)):  # None: the default, 0.3
        kw = {} if tau is None else {"tau": tau}
        gad = GAD(model, base="saliency", classes=(0, 1), n_support=0, progress=False, **kw).fit(pair_data())
        torch.testing.assert_close(gad.attribute(x, target=1), s0 * (s0 >= thr))


@pytest.mark.parametrize("base", ["gradcam", "layercam"])
def test_cam_base_methods(fitted: GAD, base: str) -> None:
    x, _ = pair_data(3, seed=6)
    gad = fitted.with_base(base, {"layer": "features"})
    assert not gad._use_stack()  # CAMs run one call per model
    fused = gad.attribute(x, target=1)
    direct = [make_method(m, base, layer="features")[0].attribute(x, target=1)
              for m in [fitted.model, *fitted.support_models_[0]]]
    assert direct[0].shape == (3, 1, 8, 8)
    torch.testing.assert_close(fused, fuse(direct, tau=gad.tau))


def test_command_line_fit_defaults_are_the_library_defaults() -> None:
    """`cleargrad gad fit` states its defaults itself (the CLI does not import torch to show
    --help); they must stay those of GAD, and SPEC_SETTINGS must restore the spec's proposals."""
    import inspect

    from cleargrad.cli.app import gad_fit_cmd
    from cleargrad.gad import SPEC_SETTINGS

    lib = inspect.signature(GAD).parameters
    cli = inspect.signature(gad_fit_cmd).parameters
    for cli_name, lib_name in (("epochs", "epochs"), ("lr", "lr"), ("bn_mode", "bn_mode"), ("support", "n_support"),
                               ("batch_size", "batch_size"), ("alphas", "alphas"), ("seed", "seed")):
        assert cli[cli_name].default == lib[lib_name].default, cli_name
    assert SPEC_SETTINGS == {"tau": "paper", "lr": 1e-5, "schedule": "constant", "epochs": 10, "bn_mode": "eval"}
