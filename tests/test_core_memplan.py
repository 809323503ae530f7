"""The memory check of chunked loops: predicted pass memory, available memory, the plan.

The prediction is checked against hand-computed byte counts; the plan against a machine
whose available memory the test sets; the public calls end to end (a default chunk
shrinks and gives the same result, an explicit one that cannot fit is a ResourceError
before any pass, the model is left as it was).
"""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

import cleargrad as cg
from cleargrad.runtime import memplan


def _machine_with_room_for(monkeypatch, per: int, k: int) -> None:
    """Make the CPU report just enough memory for ``k`` (and not ``k + 1``) inputs of ``per`` bytes."""
    avail = memplan.MARGIN + math.ceil((k + 0.5) * per * memplan.SLACK["cpu"])
    monkeypatch.setattr(memplan, "available_bytes", lambda device, quick=False: avail)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


# ------------------------------------------------------------------ prediction, by hand


def test_linear_forward_is_input_plus_output():
    # x (100 floats) and y (50 floats) per sample: 600 bytes
    assert memplan.pass_bytes_per_sample(nn.Linear(100, 50), (100,), grad=False) == 600


def test_linear_backward_adds_the_input_gradient():
    # forward x 400 + y 200, then d/dx 400 while both live: 1000 bytes
    assert memplan.pass_bytes_per_sample(nn.Linear(100, 50), (100,), grad=True) == 1000


def test_forward_peak_is_at_the_widest_step_not_the_sum():
    # x 400, h = Wx 200, relu(h) 200 live together (800); h dies before the last layer
    model = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))
    assert memplan.pass_bytes_per_sample(model, (100,), grad=False) == 800


def test_trainable_parameters_keep_layer_inputs_and_are_part_of_the_cache_key():
    model = nn.Sequential(nn.Linear(100, 200), nn.Linear(200, 200), nn.Linear(200, 10))
    for p in model.parameters():
        p.requires_grad_(False)
    # frozen: x 400 + y 40 live, then dL/dh2 (800) and dL/dh1 (800) at once: 2040 bytes
    assert memplan.pass_bytes_per_sample(model, (100,), grad=True) == 2040
    for p in model.parameters():
        p.requires_grad_(True)
    # trainable: h1 and h2 (800 each) are kept for the weight gradients: x + h1 + h2 + y + dL/dh2
    assert memplan.pass_bytes_per_sample(model, (100,), grad=True) == 2840


def test_convolution_forward():
    # input 1x16x16 (1 KiB) + output 8x16x16 (8 KiB)
    assert memplan.pass_bytes_per_sample(nn.Conv2d(1, 8, 3, padding=1), (1, 16, 16), grad=False) == 9 * 1024


def test_dtype_counts():
    assert memplan.pass_bytes_per_sample(nn.Linear(100, 50).double(), (100,), torch.float64, grad=False) == 1200


def test_parameters_are_not_counted():
    # a wide layer on a small input: the weight (4 MB) is resident already
    assert memplan.pass_bytes_per_sample(nn.Linear(1000, 1000), (1000,), grad=False) == 8000


def test_a_model_the_fake_run_cannot_follow_gives_none_and_no_check(monkeypatch):
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    model = DataDependent()
    assert memplan.pass_bytes_per_sample(model, (3,), grad=False) is None
    monkeypatch.setattr(memplan, "available_bytes", lambda device, quick=False: 0)
    assert memplan.plan_chunk(model, (3,), total=10, requested=7, device="cpu", grad=False) == 7


def test_the_prediction_is_cached_per_model(monkeypatch):
    model = nn.Linear(10, 2)
    calls = []
    real = memplan._peak_of_pass
    monkeypatch.setattr(memplan, "_peak_of_pass", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        memplan.pass_bytes_per_sample(model, (10,), grad=False)
    assert len(calls) == 2  # batches of 1 and 2, once
    memplan.pass_bytes_per_sample(model, (10,), grad=True)
    assert len(calls) == 4


# ------------------------------------------------------------------ the model is not touched


def test_the_simulation_leaves_model_hooks_rng_and_buffers_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(144, 3))
    model.train()  # BatchNorm updates its statistics in training mode
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append(type(o)))
    model[4].register_forward_pre_hook(lambda m, i: seen.append(type(i[0])))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert memplan.pass_bytes_per_sample(model, (1, 8, 8), grad=True) > 0
    assert memplan.pass_bytes_per_sample(model, (1, 8, 8), grad=False) > 0
    assert seen == []  # no hook saw a fake tensor
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert len(model[1]._forward_hooks) == 1 and len(model[4]._forward_pre_hooks) == 1


# ------------------------------------------------------------------ available memory


def test_cpu_availability_is_a_positive_number_within_the_machine():
    avail = memplan.available_bytes("cpu")
    if avail is None:
        pytest.skip("no /proc/meminfo here")  # not Linux
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < avail <= total


def test_unknown_devices_are_not_checked():
    assert memplan.available_bytes("meta") is None


def test_cgroup_v2_headroom_counts_reclaimable_cache(tmp_path):
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("700000\n")
    (tmp_path / "memory.stat").write_text("anon 500000\nfile 200000\ninactive_file 150000\n")
    assert memplan._cgroup_headroom(v2=[str(tmp_path)], v1=[]) == 1000000 - 700000 + 150000
    assert memplan._cgroup_headroom(v2=[str(tmp_path)], v1=[], reclaimable=False) == 1000000 - 700000
    (tmp_path / "memory.max").write_text("max\n")  # no limit
    assert memplan._cgroup_headroom(v2=[str(tmp_path)], v1=[]) is None


def test_cgroup_v1_headroom_and_its_no_limit_value(tmp_path):
    (tmp_path / "memory.limit_in_bytes").write_text("2000000\n")
    (tmp_path / "memory.usage_in_bytes").write_text("1500000\n")
    (tmp_path / "memory.stat").write_text("cache 10\ntotal_inactive_file 100000\n")
    assert memplan._cgroup_headroom(v2=[], v1=[str(tmp_path)]) == 600000
    (tmp_path / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")
    assert memplan._cgroup_headroom(v2=[], v1=[str(tmp_path)]) is None


def test_the_tightest_limit_of_the_hierarchy_counts(tmp_path):
    parent, child = tmp_path / "parent", tmp_path / "parent" / "child"
    child.mkdir(parents=True)
    (child / "memory.max").write_text("max\n")
    (child / "memory.current").write_text("100\n")
    (parent / "memory.max").write_text("5000\n")
    (parent / "memory.current").write_text("3000\n")
    assert memplan._cgroup_headroom(v2=[str(child), str(parent)], v1=[]) == 2000
    (child / "memory.max").write_text("1000\n")
    assert memplan._cgroup_headroom(v2=[str(child), str(parent)], v1=[]) == 900


# ------------------------------------------------------------------ the plan


def test_a_requested_chunk_that_fits_is_kept(monkeypatch):
    model = nn.Linear(100, 50)
    _machine_with_room_for(monkeypatch, 600, 10)
    assert memplan.plan_chunk(model, (100,), total=50, requested=10, device="cpu", grad=False) == 10
    # only the part of the chunk that can occur counts: 100 requested, 8 in the loop
    assert memplan.plan_chunk(model, (100,), total=8, requested=100, device="cpu", grad=False) == 100


def test_a_requested_chunk_that_does_not_fit_names_the_largest_that_does(monkeypatch):
    model = nn.Linear(100, 50)
    _machine_with_room_for(monkeypatch, 600, 10)
    with pytest.raises(cg.ResourceError, match=r"11 inputs of shape 100 .*set batch_size to at most 10\b"):
        memplan.plan_chunk(model, (100,), total=50, requested=11, device="cpu", grad=False)


def test_the_default_chunk_shrinks_to_what_fits(monkeypatch):
    model = nn.Linear(100, 50)
    _machine_with_room_for(monkeypatch, 1000, 7)
    assert memplan.plan_chunk(model, (100,), total=50, requested=None, device="cpu", grad=True) == 7


def test_not_even_one_input_fits(monkeypatch):
    model = nn.Linear(100, 50)
    _machine_with_room_for(monkeypatch, 600, 0)
    with pytest.raises(cg.ResourceError, match="not even one input fits"):
        memplan.plan_chunk(model, (100,), total=5, requested=None, device="cpu", grad=False)


def test_check_off_and_unknown_availability_keep_the_request(monkeypatch):
    model = nn.Linear(100, 50)
    _machine_with_room_for(monkeypatch, 600, 1)
    cg.set_memory_check(False)
    try:
        assert not cg.get_memory_check()
        assert memplan.plan_chunk(model, (100,), total=50, requested=40, device="cpu", grad=False) == 40
    finally:
        cg.set_memory_check(True)
    monkeypatch.setattr(memplan, "available_bytes", lambda device, quick=False: None)
    assert memplan.plan_chunk(model, (100,), total=50, requested=40, device="cpu", grad=False) == 40


def test_bad_requests_and_switches_are_config_errors():
    model = nn.Linear(3, 2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(cg.ConfigError, match="internal_batch_size must be a positive integer"):
            memplan.plan_chunk(model, (3,), total=4, requested=bad, device="cpu", grad=True,
                               option="internal_batch_size")
    with pytest.raises(cg.ConfigError):
        cg.set_memory_check("off")
    with pytest.raises(cg.ConfigError, match="CLEARGRAD_MEMORY_CHECK"):
        memplan._parse_switch("sometimes")
    assert memplan._parse_switch("off") is False and memplan._parse_switch("1") is True


# ------------------------------------------------------------------ public calls, end to end


def _batch_sizes(model: nn.Module) -> tuple[list[int], list[type]]:
    """Record the batch size of every gradient-enabled pass of ``model`` (and the input's type)."""
    sizes: list[int] = []
    kinds: list[type] = []

    def hook(m, args):
        kinds.append(type(args[0]))
        if torch.is_grad_enabled():
            sizes.append(args[0].shape[0])

    model[0].register_forward_pre_hook(hook)
    return sizes, kinds


def test_integrated_gradients_default_chunks_shrink_and_give_the_same_map(monkeypatch):
    model = _tiny()
    x = torch.randn(2, 1, 8, 8)
    expected = cg.IntegratedGradients(model).attribute(x, target=1, n_steps=8)  # 16 inputs in one chunk
    per = memplan.pass_bytes_per_sample(model, (1, 8, 8), grad=True)
    _machine_with_room_for(monkeypatch, per, 5)
    sizes, kinds = _batch_sizes(model)
    got = cg.IntegratedGradients(model).attribute(x, target=1, n_steps=8)
    assert sizes == [5, 5, 5, 1]  # 16 path points (the class count probe runs without gradients)
    assert all(k is torch.Tensor for k in kinds)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_an_explicit_chunk_that_cannot_fit_fails_before_any_gradient_pass(monkeypatch):
    model = _tiny()
    x = torch.randn(2, 1, 8, 8)
    per = memplan.pass_bytes_per_sample(model, (1, 8, 8), grad=True)
    _machine_with_room_for(monkeypatch, per, 5)
    sizes, _ = _batch_sizes(model)
    with pytest.raises(cg.ResourceError, match="set internal_batch_size to at most 5"):
        cg.IntegratedGradients(model).attribute(x, target=1, n_steps=8, internal_batch_size=16)
    assert sizes == []  # not one gradient pass ran
    assert not model.training and len(model[0]._forward_pre_hooks) == 1
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_score_cam_and_insertion_check_their_forward_chunks(monkeypatch):
    model = _tiny()
    x = torch.randn(2, 1, 8, 8)
    sal = torch.rand(2, 1, 8, 8)
    expected = cg.metrics.insertion(model, x, sal, target=0, step=8)
    per = memplan.pass_bytes_per_sample(model, (1, 8, 8), grad=False)
    _machine_with_room_for(monkeypatch, per, 3)
    with pytest.raises(cg.ResourceError, match="set batch_size to at most 3"):
        cg.ScoreCAM(model, layer=model[0]).attribute(x, target=0, batch_size=8)
    with pytest.raises(cg.ResourceError, match="set batch_size to at most 3"):
        cg.metrics.insertion(model, x, sal, target=0, step=8, batch_size=4)
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    got = cg.metrics.insertion(model, x, sal, target=0, step=8)
    assert max(seen) == 3
    torch.testing.assert_close(got, expected)


def test_threads_simulate_concurrently_without_mixing_up(monkeypatch):
    model = _tiny()
    x = torch.randn(2, 1, 8, 8)
    out: list[torch.Tensor] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work():
        try:
            start.wait()
            out.append(cg.IntegratedGradients(model).attribute(x, target=1, n_steps=8))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(out) == 4
    cg.set_memory_check(False)
    try:
        expected = cg.IntegratedGradients(model).attribute(x, target=1, n_steps=8)
    finally:
        cg.set_memory_check(True)
    for o in out:
        torch.testing.assert_close(o, expected)
    # the cached prediction is the one a lone call makes
    assert memplan.pass_bytes_per_sample(model, (1, 8, 8), grad=True) == memplan.pass_bytes_per_sample(
        _tiny(), (1, 8, 8), grad=True
    )


def test_plenty_of_room_skips_the_simulation(monkeypatch):
    model = nn.Linear(100, 50)
    monkeypatch.setattr(memplan, "_peak_of_pass", lambda *a: pytest.fail("simulated although room was plenty"))
    input_bytes = 400 * 10  # a chunk of 10 inputs of 100 floats
    room = memplan.MARGIN + input_bytes * memplan.PLENTY
    monkeypatch.setattr(memplan, "available_bytes", lambda device, quick=False: room)
    assert memplan.plan_chunk(model, (100,), total=10, requested=10, device="cpu", grad=False) == 10
    # one byte less and the pass is simulated
    calls = []
    monkeypatch.setattr(memplan, "_peak_of_pass", lambda *a: calls.append(a) or 1000 * a[1][0])
    monkeypatch.setattr(memplan, "available_bytes", lambda device, quick=False: room - 1)
    assert memplan.plan_chunk(model, (100,), total=10, requested=10, device="cpu", grad=False) == 10
    assert len(calls) == 2


@pytest.mark.parametrize("make, grad", [
    (lambda m: cg.Saliency(m), True),
    (lambda m: cg.GradCAM(m, layer=m[0]), True),
    (lambda m: cg.ScoreCAM(m, layer=m[0]), False),
])
def test_a_whole_batch_that_cannot_fit_names_the_batch_to_use(monkeypatch, make, grad):
    model = _tiny()
    x = torch.randn(6, 1, 8, 8)
    per = memplan.pass_bytes_per_sample(model, (1, 8, 8), grad=grad)
    _machine_with_room_for(monkeypatch, per, 4)
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    with pytest.raises(cg.ResourceError, match=r"pass of 6 inputs .*explain at most 4 images per call"):
        make(model).attribute(x, target=0)
    assert seen == [] and not model.training and len(model[0]._forward_pre_hooks) == 1
    assert make(model).attribute(x[:4], target=0).shape[0] == 4


def test_predictions_and_errors_under_an_ambient_inference_mode(monkeypatch):
    model = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10)).eval()
    with torch.inference_mode():
        assert memplan.pass_bytes_per_sample(model, (100,), grad=False) == 800
        assert memplan.pass_bytes_per_sample(model, (100,), grad=True) == 1040
    _machine_with_room_for(monkeypatch, 1040, 3)
    x = torch.randn(8, 100)
    with torch.inference_mode(), pytest.raises(cg.ResourceError, match="explain at most 3 images per call"):
        cg.Saliency(model).attribute(x, target=0)
