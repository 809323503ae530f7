"""Integrated Gradients' quadrature rule (its ``method`` option) reaches it through
``cg.explain``, ``-o integrated_gradients.method=...`` and a GAD base; a huge ``n_steps``
never waits on a cubic node computation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_images, make_model_file, one_thread
from typer.testing import CliRunner

import cleargrad as cg
from cleargrad.cli import app
from cleargrad.core.quadrature import quadrature
from cleargrad.models import SmallCNN


def _model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(in_channels=1, num_classes=3, width=4).eval()


def test_explain_takes_the_quadrature_rule_through_options() -> None:
    model, x = _model(), torch.randn(2, 1, 28, 28)
    direct = cg.IntegratedGradients(model).attribute(x, target=1, n_steps=8, method="riemann_trapezoid")
    got = cg.explain(model, x, method="integrated_gradients", target=1, n_steps=8,
                     options={"method": "riemann_trapezoid"})  # fmt: skip
    torch.testing.assert_close(got, direct, rtol=0, atol=0)
    gl = cg.explain(model, x, method="integrated_gradients", target=1, n_steps=8)
    assert not torch.equal(gl, direct)  # the option changed something
    with pytest.raises(cg.ConfigError, match="both"):
        cg.explain(model, x, method="integrated_gradients", n_steps=8, options={"n_steps": 4})


def test_a_gad_base_takes_the_quadrature_rule() -> None:
    model = _model()
    x, y = torch.randn(8, 1, 28, 28), torch.tensor([0, 1] * 4)
    gad = cg.GAD(model, base="integrated_gradients", classes=(0, 1), n_support=1, epochs=1, batch_size=4,
                 progress=False, base_options={"method": "riemann_trapezoid", "n_steps": 4})  # fmt: skip
    gad.fit((x, y))
    a = gad.attribute(x[:2], target=0)
    assert a.shape == (2, 1, 28, 28) and torch.isfinite(a).all()


def test_the_cli_option_reaches_integrated_gradients(tmp_path: Path) -> None:
    images = make_images(tmp_path, per_class=1, corrupt=False)
    model = make_model_file(tmp_path)
    outs = {}
    for rule in ("riemann_trapezoid", "gausslegendre"):
        out = tmp_path / rule
        with one_thread():
            r = CliRunner().invoke(app, [
                "explain", "--model", f"{model}:factory", "--images", str(images), "--method", "integrated_gradients",
                "-o", f"integrated_gradients.method={rule}", "-o", "integrated_gradients.n_steps=4",
                "--out", str(out), "-q",
            ])  # fmt: skip
        assert r.exit_code == 0, r.output
        outs[rule] = sorted(out.rglob("*.npy"))
    a, b = (np.load(outs[k][0]) for k in outs)
    assert not np.array_equal(a, b)


def test_many_gauss_legendre_nodes_are_quick_and_equal_numpys() -> None:
    for m in (201, 300, 301):
        t, w = quadrature("gausslegendre", m)
        x, wl = np.polynomial.legendre.leggauss(m)
        np.testing.assert_allclose(t.numpy(), 0.5 * (x + 1), atol=1e-14)
        np.testing.assert_allclose(w.numpy(), 0.5 * wl, atol=1e-13)
    start = time.perf_counter()
    t, w = quadrature("gausslegendre", 5000)
    assert time.perf_counter() - start < 20  # numpy's leggauss: minutes at 20000, tens of seconds here
    assert abs(float(w.sum()) - 1.0) < 1e-12
    # exact for a polynomial of high degree
    assert abs(float((w * t**99).sum()) - 1 / 100) < 1e-12


def test_the_memory_check_comes_before_the_nodes(monkeypatch) -> None:
    from cleargrad.attribution import integrated

    calls = []
    monkeypatch.setattr(integrated, "quadrature", lambda *a: calls.append(a) or quadrature(*a))
    ig = cg.IntegratedGradients(_model())
    monkeypatch.setattr(ig, "chunk_size", lambda *a: (_ for _ in ()).throw(cg.ResourceError("too big")))
    with pytest.raises(cg.ResourceError):
        ig.attribute(torch.randn(1, 1, 28, 28), target=0, n_steps=20000)
    assert calls == []
