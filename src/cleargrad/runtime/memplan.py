"""Check before a chunked loop that one chunk's model pass fits in memory.

On Linux the kernel overcommits memory: a chunk too large for the machine is not met by
an allocation error that :func:`~cleargrad.core.memory_guard` could turn into a
:class:`~cleargrad.errors.ResourceError`, but by the out-of-memory killer, which ends the
process without a word. So the memory of a pass is predicted *before* the loop starts:

1. **Per-sample memory of the pass** (:func:`pass_bytes_per_sample`). A copy of the model
   whose parameters are fake tensors (``torch._subclasses.FakeTensorMode``: shapes and
   dtypes, no storage, no arithmetic) runs the pass on a batch of 1 and of 2 samples
   while every storage the operators create is counted until it is freed; the growth of
   the peak from 1 to 2 samples is the memory one more sample costs. For gradient passes
   the backward pass to the input is simulated too, so tensors saved for it count. The
   copy carries none of the model's hooks, so no user or cleargrad hook sees a fake
   tensor, and the model, its buffers and the random state are not touched; Python side
   effects of the forward code outside the model (a global counter) do happen. Cached
   per model, sample shape, dtype, device and pass kind: a prediction takes seconds on a
   large model (measured: benchmarks/results/memory_plan.md, section 1).
2. **Available memory** (:func:`available_bytes`): on CPUs the smaller of the kernel's
   ``MemAvailable`` and the headroom of the process's cgroups (v2 or v1, the tightest over
   the hierarchy; reclaimable page cache counts as free); on CUDA the device's free memory
   plus what PyTorch's caching allocator holds unused. Elsewhere unknown (no check).
3. **The plan** (:func:`plan_chunk`). A chunk whose inputs take less than 1/:data:`PLENTY`
   of the available memory passes without a simulation. Otherwise it fits when
   ``chunk x per-sample x`` the allocator's overhead (:data:`SLACK`: 2 on CPUs) stays
   below the available memory less :data:`MARGIN` (128 MiB). A default chunk size shrinks
   to what fits; a requested one that does not fit raises
   :class:`~cleargrad.errors.ResourceError` naming the largest that does, before any pass.

The prediction follows the live memory of real passes, and real peaks stay below what the
plan reserves (measured: benchmarks/results/memory_plan.md, section 1). Models the fake
run cannot follow (data-dependent control flow, ``.item()``, foreign extensions) are not
checked (the prediction is ``None``); the allocator guard still covers allocation failures.
Turn the check off with :func:`set_memory_check` or ``CLEARGRAD_MEMORY_CHECK=off``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from ..errors import ConfigError, ResourceError
from .batching import default_chunk_size
from .compiled import CompiledForward
from .fused import FoldedForward, no_hooks_memo
from .hostmem import release_host_memory

__all__ = [
    "MARGIN",
    "PLENTY",
    "SLACK",
    "available_bytes",
    "check_batch",
    "get_memory_check",
    "pass_bytes_per_sample",
    "plan_chunk",
    "set_memory_check",
]

_log = logging.getLogger("cleargrad")

#: Memory a chunk's pass takes, per byte of its live tensors, by device type: the host
#: allocator keeps freed blocks that later blocks of other sizes do not fit, and CUDA's
#: caching allocator rounds and splits blocks (CPU figure measured:
#: benchmarks/results/memory_plan.md, section 1; the CUDA figure is not measured).
SLACK = {"cpu": 2.0, "cuda": 1.25}
#: Bytes kept free besides the chunk (workspaces, the loop's own small tensors).
MARGIN = 128 * 2**20
#: A chunk whose inputs take less than 1/PLENTY of the free memory is not simulated:
#: skipping is safe for any pass that needs less than PLENTY / SLACK (5,000x) its input
#: per sample, far above the largest pass measured (benchmarks/results/memory_plan.md,
#: "Memory per sample relative to the input"). Small runs then cost nothing and never run
#: the model's code on fake tensors.
PLENTY = 10_000


def _parse_switch(value: str) -> bool:
    v = value.strip().lower()
    if v in ("", "1", "on", "true", "yes"):
        return True
    if v in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"CLEARGRAD_MEMORY_CHECK must be on or off, got {value!r}")


_enabled = _parse_switch(os.environ.get("CLEARGRAD_MEMORY_CHECK", "on"))


def set_memory_check(enabled: bool) -> None:
    """Turn the memory check of chunked loops on (default) or off."""
    global _enabled
    if not isinstance(enabled, bool):
        raise ConfigError(f"set_memory_check takes True or False, got {enabled!r}")
    _enabled = enabled


def get_memory_check() -> bool:
    """Whether chunked loops check that a chunk fits before running it."""
    return _enabled


# ----------------------------------------------------------------------------- available


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) -> None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _inactive_file(stat_path: str, key: str) -> int:
    try:
        with open(stat_path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_dirs(mount: str, controller: str) -> list[str]:
    """The folders under ``mount`` from this process's cgroup up to the root: a limit set at
    any level applies. ``controller``: ``""`` for the v2 hierarchy, ``"memory"`` for v1."""
    path = ""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, names, where = line.rstrip("\n").split(":", 2)
                if (controller == "" and names == "") or controller in names.split(","):
                    path = where
    except (OSError, ValueError):
        pass
    parts = [p for p in path.split("/") if p]
    dirs = [mount + "".join("/" + p for p in parts[:i]) for i in range(len(parts), -1, -1)]
    return [d for d in dirs if os.path.isdir(d)] or [mount]  # inside a container the path may not exist


_V2 = ("memory.max", "memory.current", "inactive_file")
_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
#: (folder, limit, usage file, reclaimable-cache key) of the levels of this process's cgroups
#: that set a memory limit; read once (limits are set when a container starts).
_limited: list[tuple[str, int, str, str]] | None = None


def _limited_levels(v2: list[str], v1: list[str]) -> list[tuple[str, int, str, str]]:
    levels = []
    for dirs, (limit_file, usage_file, key) in ((v2, _V2), (v1, _V1)):
        for d in dirs:
            limit = _read_int(f"{d}/{limit_file}")
            if limit is not None and limit < 2**60:  # "max" (v2) or a huge number (v1): no limit
                levels.append((d, limit, usage_file, key))
    return levels


def _cgroup_headroom(v2: list[str] | None = None, v1: list[str] | None = None, *,
                     reclaimable: bool = True) -> int | None:
    """Bytes the process's cgroups may still use (limit - usage, plus the reclaimable page
    cache unless ``reclaimable=False``; the tightest over the hierarchy); None where no limit
    is set. ``v2`` / ``v1``: the folders to read (default: this process's cgroup and its
    ancestors, whose limits are read once)."""
    global _limited
    if v2 is None and v1 is None:
        if _limited is None:
            _limited = _limited_levels(_cgroup_dirs("/sys/fs/cgroup", ""),
                                       _cgroup_dirs("/sys/fs/cgroup/memory", "memory"))
        levels = _limited
    else:
        levels = _limited_levels(v2 or [], v1 or [])
    rooms = []
    for d, limit, usage_file, key in levels:
        used = _read_int(f"{d}/{usage_file}")
        if used is not None:
            rooms.append(limit - used + (_inactive_file(f"{d}/memory.stat", key) if reclaimable else 0))
    return min(rooms) if rooms else None


def _free_ram() -> int | None:
    """Free RAM without the reclaimable caches (``MemFree``), from one system call."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes(device: torch.device | str, *, quick: bool = False) -> int | None:
    """Memory a new allocation on ``device`` can still get, in bytes; None where unknown.
    ``quick``: on CPUs, a lower bound that costs about a microsecond without cgroup limits
    (free RAM and cgroup headroom without the reclaimable page cache)."""
    dev = torch.device(device)
    if dev.type == "cpu":
        ram = (_free_ram() or _meminfo_available()) if quick else _meminfo_available()
        known = [b for b in (ram, _cgroup_headroom(reclaimable=not quick)) if b is not None]
        return max(0, min(known)) if known else None
    if dev.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(dev)
            return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
        except RuntimeError:
            return None
    return None


# ----------------------------------------------------------------------------- prediction


def _fake_twin(model: nn.Module, fast: bool) -> tuple[nn.Module, Any]:
    """A copy of ``model`` whose parameters and buffers are fake tensors on their devices (no
    storage) and whose modules carry no hooks, with its fake mode. ``fast``: made from meta
    tensors directly, nothing else converted; else through ``FakeCopyMode``, which converts
    every tensor attribute too (slower)."""
    from torch._subclasses.fake_tensor import FakeCopyMode, FakeTensor, FakeTensorMode

    fake = FakeTensorMode()
    memo = no_hooks_memo(model)
    with torch.inference_mode(False):  # normal tensors also under an ambient inference mode
        if not fast:
            with FakeCopyMode(fake):
                return copy.deepcopy(model, memo), fake
        for t in (*model.parameters(), *model.buffers()):
            if id(t) not in memo:
                f = FakeTensor(fake, torch.empty_like(t, device="meta"), t.device)
                memo[id(t)] = nn.Parameter(f, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else f
        return copy.deepcopy(model, memo), fake


def _peak_of_pass(twin: nn.Module, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                  grad: bool, fake: Any) -> int:
    """Peak bytes of the storages created by one pass of ``twin`` (from :func:`_fake_twin`,
    under its ``fake`` mode) on an input of ``shape``."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Tally(TorchDispatchMode):
        """Counts each new storage's bytes while it lives."""

        def __init__(self) -> None:
            super().__init__()
            self.live = self.peak = 0
            self.seen: set[int] = set()

        def add(self, t: torch.Tensor) -> None:
            st = t.untyped_storage()
            key, n = id(st), st.nbytes()
            if key in self.seen:  # a view or an in-place result
                return
            self.seen.add(key)
            self.live += n
            self.peak = max(self.peak, self.live)
            weakref.finalize(st, self.drop, key, n)

        def drop(self, key: int, n: int) -> None:
            self.seen.discard(key)
            self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.add(t)
            return out

    tally = Tally()
    for t in [*twin.parameters(), *twin.buffers()]:  # already resident: views of them are no new memory
        tally.seen.add(id(t.untyped_storage()))
    with torch.inference_mode(False), fake, tally:
        x = torch.empty(shape, dtype=dtype, device=device)
        tally.add(x)
        if grad:
            with torch.enable_grad():
                x.requires_grad_(True)
                outs = [t for t in tree_leaves(twin(x)) if isinstance(t, torch.Tensor) and t.requires_grad]
                if outs:
                    total = cast(torch.Tensor, sum(t.float().sum() for t in outs))
                    torch.autograd.grad(total, x, allow_unused=True)
                del outs
        else:
            with torch.no_grad():
                twin(x)
    return tally.peak


def _simulate(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
              grad: bool) -> int:
    """Memory one more input adds to a pass: the growth of the peak from 1 to 2 inputs, on
    one fake copy of the model (the fast copy, else the general one)."""

    def growth(fast: bool) -> int:
        twin, fake = _fake_twin(model, fast)
        one = _peak_of_pass(twin, (1, *shape), dtype, device, grad, fake)
        two = _peak_of_pass(twin, (2, *shape), dtype, device, grad, fake)
        return max(two - one, 1)

    try:
        return growth(fast=True)
    except Exception:  # noqa: BLE001 - e.g. a tensor attribute the fast copy leaves real
        return growth(fast=False)


_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int | None]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def pass_bytes_per_sample(
    model: nn.Module,
    sample_shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    *,
    grad: bool,
) -> int | None:
    """Predicted memory (bytes) one more sample adds to a pass of ``model`` (a forward pass,
    or with ``grad`` a forward and backward pass to the input); None when the fake run
    cannot follow the model. Cached per model and arguments."""
    base = model
    while isinstance(base, (CompiledForward, FoldedForward)):  # simulate the model they run (folded: less)
        base = base.model
    base = getattr(base, "_orig_mod", base)  # torch.compile's wrapper: simulate the module it compiles
    dev = torch.device(device)
    # trainable parameters make a gradient pass keep more (inputs of layers, for their weight
    # gradients; measured: benchmarks/results/memory_plan.md, section 1)
    trainable = bool(grad) and any(p.requires_grad for p in base.parameters())
    key = (tuple(int(s) for s in sample_shape), dtype, str(dev), bool(grad), trainable)
    with _cache_lock:
        entry = _cache.setdefault(base, {})
        if key in entry:
            return entry[key]
    try:
        per: int | None = _simulate(base, key[0], dtype, dev, grad)
    except Exception as e:  # noqa: BLE001 - any failure: no prediction
        _log.debug("memory check: cannot simulate %s (%s: %s)", type(base).__name__, type(e).__name__, e)
        per = None
    with _cache_lock:
        entry[key] = per
    return per


# ----------------------------------------------------------------------------- plan


def plan_chunk(
    model: nn.Module,
    sample_shape: Sequence[int],
    *,
    total: int,
    requested: int | None,
    device: torch.device | str,
    dtype: torch.dtype | None = None,
    grad: bool,
    option: str = "batch_size",
    advice: str | None = None,
    default: int | None = None,
) -> int:
    """The chunk length for a loop over ``total`` samples of ``sample_shape`` through ``model``.

    ``requested`` (the user's ``option``, None for the default) is validated; the default
    is :func:`~cleargrad.core.default_chunk_size` shrunk to what fits in memory. A
    requested size whose pass does not fit raises :class:`~cleargrad.errors.ResourceError`
    naming the largest size that does, before any pass runs. ``grad``: the loop runs
    forward and backward passes (else forward passes only). ``dtype``: the inputs' (None:
    the model's first floating-point parameter's). ``advice``: what the error tells the user
    to do, with ``{k}`` for the largest size that fits (default: set ``option`` to at most
    ``{k}``). ``default``: the chunk when none is requested (default:
    :func:`~cleargrad.core.default_chunk_size` of ``sample_shape``).
    """
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise ConfigError(f"{option} must be a positive integer, got {requested!r}")
    if requested is not None:
        chunk = requested
    else:
        chunk = default if default is not None else default_chunk_size(tuple(sample_shape), total, device)
    if not _enabled or total < 1:
        return chunk
    if dtype is None:  # the inputs' dtype follows the model's parameters
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
    need = min(chunk, total)
    room = available_bytes(device, quick=True)  # a lower bound, cheap: most calls stop here
    input_bytes = math.prod(int(s) for s in sample_shape) * dtype.itemsize
    if room is None or need * input_bytes * PLENTY <= room - MARGIN:
        return chunk  # unknown, or room far beyond any pass in memory_plan.md: no simulation
    per = pass_bytes_per_sample(model, sample_shape, dtype, device, grad=grad)
    if per is None:
        return chunk
    avail = available_bytes(device)
    if avail is not None and need > _fitting(per, avail, device):
        release_host_memory(force=True)  # the allocator's freed pages count as used until handed back
        avail = available_bytes(device)
    if avail is None:
        return chunk
    fits = _fitting(per, avail, device)
    if need <= fits:
        return chunk
    shape = "x".join(str(int(s)) for s in sample_shape)
    kind = "forward and backward" if grad else "forward"
    if fits >= 1 and requested is None:
        _log.info("memory check: %s chunk of %d inputs of shape %s shrunk to %d to fit in %.2f GiB",
                  kind, need, shape, fits, avail / 2**30)
        return fits
    cost = per * _slack(device)
    what = (f"a {kind} pass of {need} inputs of shape {shape} needs about {need * cost / 2**30:.2f} GiB "
            f"({cost / 2**20:.1f} MiB per input with the allocator's overhead) and {torch.device(device)} has "
            f"{avail / 2**30:.2f} GiB available")
    if fits < 1:
        raise ResourceError(f"{what}: not even one input fits; free memory or use a smaller model or input")
    if advice is None:
        advice = (f"set {option} to at most {{k}} (on the command line: -o METHOD.{option}={{k}} for a method, "
                  "--metric-option METRIC.batch_size={k} or --metric-batch-size {k} for a metric)")
    raise ResourceError(f"{what}: {advice.format(k=fits)}; CLEARGRAD_MEMORY_CHECK=off turns this check off")


def check_batch(model: nn.Module, x: torch.Tensor, *, grad: bool) -> None:
    """Raise :class:`~cleargrad.errors.ResourceError` before a call that runs ``model`` on
    the whole batch ``x`` at once (with ``grad``: forward and backward) when that pass does
    not fit in memory; the error names the largest batch that does."""
    if x.dim() < 1 or x.shape[0] < 1:
        return
    plan_chunk(model, x.shape[1:], total=x.shape[0], requested=x.shape[0], device=x.device, dtype=x.dtype,
               grad=grad, advice="explain at most {k} images per call (on the command line: --batch-size {k})")


def _slack(device: torch.device | str) -> float:
    return SLACK.get(torch.device(device).type, 1.0)


def _fitting(per: int, avail: int, device: torch.device | str) -> int:
    """How many inputs of ``per`` bytes fit in ``avail`` available bytes on ``device``."""
    return max(0, int((avail - MARGIN) // (per * _slack(device))))
