"""Start-up time of ``cleargrad --help`` and of each verb's ``--help`` (a benchmark, not a test).

Each command runs as a fresh ``python -m cleargrad ... --help`` subprocess. Several source
trees can be compared in one run (``--src``), interleaved round by round so that a busy
phase of a shared machine hits them alike; the table gives the median and IQR.

    python benchmarks/cli_startup.py                                  # this checkout
    python benchmarks/cli_startup.py --src before=/path/old/src --src after=src --repeats 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt_s, interleaved, markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    [],
    ["explain"],
    ["evaluate"],
    ["gad"],
    ["gad", "fit"],
    ["export"],
    ["report"],
    ["demo"],
    ["methods"],
]


def _runner(src: Path, args: list[str]):
    env = dict(os.environ, PYTHONPATH=str(src))

    def run() -> None:
        r = subprocess.run([sys.executable, "-m", "cleargrad", *args, "--help"], env=env, capture_output=True)
        if r.returncode != 0:  # a verb the tree lacks: recorded as missing below
            raise LookupError(r.stderr.decode(errors="replace")[-200:])

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", action="append", default=[], help="NAME=PATH of a source tree (default: this one)")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    trees = dict(s.split("=", 1) for s in a.src) or {"this": str(ROOT / "src")}
    rows = []
    for args in COMMANDS:
        runs = {}
        for name, path in trees.items():
            fn = _runner(Path(path).resolve(), args)
            try:
                fn()
            except LookupError:
                continue
            runs[name] = fn
        stats = interleaved(runs, repeats=a.repeats, warmup=0) if runs else {}
        cmd = " ".join(["cleargrad", *args, "--help"])
        rows.append([cmd, *(str(stats[n]) if n in stats else "(no such verb)" for n in trees)])
        print(f"{cmd}: " + ", ".join(f"{n} {fmt_s(s.median)}" for n, s in stats.items()), file=sys.stderr)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(markdown_table(["command", *trees], rows))
    print(f"\n{a.repeats} runs each, interleaved; median (IQR). Load average at the end: {load}.")


if __name__ == "__main__":
    main()
