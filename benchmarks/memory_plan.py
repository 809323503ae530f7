"""How well the memory check predicts a pass, and what it changes when memory runs short.

    python benchmarks/memory_plan.py                  # both parts
    python benchmarks/memory_plan.py --part accuracy  # predicted vs measured memory per input
    python benchmarks/memory_plan.py --part oom       # a run that does not fit, in a memory-limited cgroup

**accuracy**: for each model and pass kind (forward; forward and backward to the input),
``cleargrad.runtime.memplan.pass_bytes_per_sample`` (the fake-tensor simulation, and the
time it takes) against the measured growth of a fresh process's peak resident memory
per input: one child process per batch size runs one pass after a warm-up pass, with the
peak reset (``/proc/self/clear_refs``) just before the input is made and glibc's mmap
threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so that large blocks go back to
the system when freed and the peak follows the live tensors. Measured per input =
(peak at the large batch - peak at the small batch) / (difference of batch sizes). The
same children with glibc's default settings and three passes give the peak a real run
sees (freed blocks kept by the allocator included); it is compared with what
``plan_chunk`` reserves for that chunk (``SLACK x batch x predicted + MARGIN``).

**oom**: a child process in a cgroup (v1 or v2) whose memory limit is too small for the
requested chunk runs ``IntegratedGradients(vit_b_16)`` at 224² (2 images x 8 steps = 16
path points): with the check off and an explicit ``internal_batch_size=16`` (the kernel's
OOM killer ends it), with the check on and the same request (a ResourceError naming the
largest size that fits, before any gradient pass), with the size the error advises, and
with the default chunk (shrunk to fit). Needs permission to create a cgroup (root in a container);
skipped otherwise, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "memory_plan"
MODELS = {"smallcnn": (1, 28, 28), "resnet18": (3, 224, 224), "vit_b_16": (3, 224, 224)}
BATCHES = {"smallcnn": (8, 64), "resnet18": (2, 8), "vit_b_16": (4, 12)}


def build(name: str):
    import torch
    import torchvision

    torch.manual_seed(0)
    if name == "smallcnn":
        from cleargrad.models import SmallCNN

        return SmallCNN().eval()
    return getattr(torchvision.models, name)().eval()


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def child_measure(name: str, batch: int, grad: bool, reps: int) -> None:
    """``reps`` passes of ``batch`` inputs; prints the growth of the peak resident memory."""
    import torch

    torch.set_num_threads(1)
    model = build(name)
    for p in model.parameters():  # as cleargrad's calls run them: gradients to the input only
        p.requires_grad_(False)
    shape = MODELS[name]

    def run(n: int) -> None:
        x = torch.randn((n, *shape), requires_grad=grad)
        if grad:
            out = model(x)
            torch.autograd.grad(out.sum(), x)
        else:
            with torch.no_grad():
                model(x)

    run(1)  # one-time workspaces and libraries
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current resident memory
    before = _status("VmRSS:")
    for _ in range(reps):
        run(batch)
    print(json.dumps({"growth": _status("VmHWM:") - before}))


def accuracy() -> list[dict]:
    import torch

    from cleargrad.runtime import memplan

    torch.set_num_threads(1)
    rows = []
    fixed = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    default = {k: v for k, v in fixed.items() if not k.startswith("MALLOC_")}

    def peak(name: str, b: int, grad: bool, env: dict, reps: int) -> int:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, str(b), "grad" if grad else "forward", str(reps)],
            env=env, capture_output=True, text=True, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])["growth"]

    for name, shape in MODELS.items():
        model = build(name)
        for p in model.parameters():
            p.requires_grad_(False)
        for grad in (False, True):
            t0 = time.perf_counter()
            pred = memplan.pass_bytes_per_sample(model, shape, grad=grad)
            t_pred = time.perf_counter() - t0
            b1, b2 = BATCHES[name]
            live = [peak(name, b, grad, fixed, 1) for b in (b1, b2)]
            glibc = [peak(name, b, grad, default, 3) for b in (b1, b2)]
            measured = (live[1] - live[0]) / (b2 - b1)
            row = {
                "model": name, "input": "x".join(map(str, shape)), "pass": "forward+backward" if grad else "forward",
                "predicted_mib": pred / 2**20, "measured_mib": measured / 2**20, "ratio": pred / measured,
                "predict_s": t_pred, "batches": [b1, b2], "peaks_mib": [p / 2**20 for p in live],
                "default_allocator_peaks_mib": [p / 2**20 for p in glibc],
                # what plan_chunk reserves for a chunk of b: SLACK x b x predicted + MARGIN
                "plan_need_mib": [(memplan.SLACK["cpu"] * b * pred + memplan.MARGIN) / 2**20 for b in (b1, b2)],
            }
            row["within_plan"] = all(g <= n for g, n in zip(row["default_allocator_peaks_mib"], row["plan_need_mib"]))
            rows.append(row)
            seen = " / ".join(f"{g:.0f}" for g in row["default_allocator_peaks_mib"])
            need = " / ".join(f"{n:.0f}" for n in row["plan_need_mib"])
            print(f"| {name} {row['input']} | {row['pass']} | {row['predicted_mib']:.2f} | {row['measured_mib']:.2f} "
                  f"| {row['ratio']:.3f} | {t_pred:.2f} | {b1} / {b2} | {seen} | {need} | {row['within_plan']} |",
                  flush=True)
    return rows


# ----------------------------------------------------------------------------- oom

OOM_CHILD = r"""
import json, sys, time, torch, torchvision
import cleargrad as cg
from cleargrad.runtime import memplan
torch.set_num_threads(2)
mode = sys.argv[1]
torch.manual_seed(0)
model = torchvision.models.vit_b_16().eval()
x = torch.randn(2, 3, 224, 224)
sizes = []
model.conv_proj.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0]) if torch.is_grad_enabled() else None)
if mode == "off":
    cg.set_memory_check(False)
kw = {"default": {}, "advice": {"internal_batch_size": int(sys.argv[2]) if len(sys.argv) > 2 else 1}}.get(
    mode, {"internal_batch_size": 16})
print(json.dumps({"available_mib": memplan.available_bytes("cpu") / 2**20}), flush=True)
t = time.perf_counter()
try:
    a = cg.IntegratedGradients(model).attribute(x, target=0, n_steps=8, **kw)
    print(json.dumps({"outcome": "completed", "chunks": sizes, "s": time.perf_counter() - t}), flush=True)
except cg.ResourceError as e:
    print(json.dumps({"outcome": "ResourceError", "message": str(e), "chunks": sizes,
                      "s": time.perf_counter() - t}), flush=True)
"""


def _make_cgroup(limit: int) -> tuple[Path, str]:
    """A fresh cgroup with a memory limit; returns its folder and the file to join it."""
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.subtree_control").read_text():
        d = v2 / f"cleargrad_bench_{os.getpid()}"
        d.mkdir()
        (d / "memory.max").write_text(str(limit))
        (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
        return d, "cgroup.procs"
    d = Path("/sys/fs/cgroup/memory") / f"cleargrad_bench_{os.getpid()}"
    d.mkdir()
    (d / "memory.limit_in_bytes").write_text(str(limit))
    return d, "cgroup.procs"


def oom(limit_mib: int) -> list[dict]:
    try:
        group, procs = _make_cgroup(limit_mib * 2**20)
    except OSError as e:
        print(f"skipped: cannot create a memory-limited cgroup ({e})")
        return []
    rows = []
    try:
        advice = "1"
        for mode in ("off", "on", "advice", "default"):
            join = f'echo $$ > {group / procs} && exec "$0" "$@"'  # the child starts inside the cgroup
            t = time.perf_counter()
            p = subprocess.run(["bash", "-c", join, sys.executable, "-c", OOM_CHILD, mode, advice],
                               capture_output=True, text=True)
            lines = [json.loads(s) for s in p.stdout.splitlines() if s.startswith("{")]
            info = {k: v for d in lines for k, v in d.items()}
            row = {
                "check": "off" if mode == "off" else "on",
                "internal_batch_size": {"default": "default", "advice": f"{advice} (the error's advice)"}.get(mode, 16),
                "returncode": p.returncode, "outcome": info.get("outcome", f"killed (signal {-p.returncode})"
                                                              if p.returncode < 0 else "failed"),
                "gradient_chunks": info.get("chunks"), "message": info.get("message", p.stderr.strip()[-300:]),
                "available_mib": info.get("available_mib"), "wall_s": time.perf_counter() - t,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if mode == "on" and "at most" in row["message"]:
                advice = row["message"].split("at most ")[1].split()[0]
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["accuracy", "oom", "all"], default="all")
    ap.add_argument("--limit-mib", type=int, default=1536, help="the cgroup's memory limit in the oom part")
    ap.add_argument("--child", nargs=4, metavar=("MODEL", "BATCH", "KIND", "REPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_measure(args.child[0], int(args.child[1]), args.child[2] == "grad", int(args.child[3]))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part in ("accuracy", "all"):
        print("| model | pass | predicted MiB/input | measured MiB/input | ratio | prediction time (s) | batches "
              "| peak growth, default allocator, 3 passes (MiB) | the plan's need (MiB) | within the plan |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        rows = accuracy()
        (RESULTS / "accuracy.json").write_text(json.dumps(rows, indent=1))
    if args.part in ("oom", "all"):
        rows = oom(args.limit_mib)
        if rows:
            (RESULTS / "oom.json").write_text(json.dumps({"limit_mib": args.limit_mib, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
