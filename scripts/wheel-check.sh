#!/usr/bin/env bash
# The packaging check (make wheel-check, part of make test): build the wheel and the sdist,
# install the wheel into a fresh virtual environment, and run an import smoke test and
# `cleargrad demo` from it, outside the source tree.
#
# The fresh venv gets only the wheel (pip --no-deps --no-index: nothing is downloaded). Its
# dependencies (torch is about 1 GB) come from the project's venv through one .pth line, which
# puts that site-packages *after* the fresh one on sys.path. A directory named in a .pth file is
# not scanned for .pth files itself, so the project's editable install of cleargrad stays
# inactive there: the smoke test checks that cleargrad is imported from the wheel.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${WHEEL_CHECK_DIR:-build/wheel-check}
start=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# build from a clean copy of the files git tracks (or would: untracked, not ignored), so that
# no stale build/ or *.egg-info of the working tree can add files to the wheel; the wheel is
# built from the sdist (python -m build's default), which checks that the sdist is complete
mkdir -p "$OUT/tree"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$OUT/tree"
"$PY" -m build --no-isolation --outdir "$OUT/dist" "$OUT/tree" >"$OUT/build.log" 2>&1 \
    || { tail -n 40 "$OUT/build.log"; echo "wheel-check: the build failed (log: $OUT/build.log)"; exit 1; }
wheel=$(ls "$OUT"/dist/cleargrad-*.whl)
sdist=$(ls "$OUT"/dist/cleargrad-*.tar.gz)
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) and $(basename "$sdist") ($(du -k "$sdist" | cut -f1) KiB)"

# the sdist must carry what a rebuild and the licence need
listing=$(tar -tzf "$sdist")
for f in LICENSE README.md CHANGELOG.md pyproject.toml src/cleargrad/__init__.py src/cleargrad/models/reference/; do
    grep -q "^cleargrad-[^/]*/$f" <<<"$listing" || { echo "wheel-check: $f is missing from the sdist"; exit 1; }
done

base=$("$PY" -c 'import sys; print(sys._base_executable)')
"$base" -m venv --without-pip "$OUT/venv"
VPY="$OUT/venv/bin/python"
new_site=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
dev_site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$dev_site" >"$new_site/_cleargrad_dependencies.pth"
# pip of the project's venv installs into the fresh one (no pip copy needed there)
"$PY" -m pip --python "$VPY" install --quiet --no-deps --no-index "$wheel"

cd "$OUT"  # away from the source tree
env -u PYTHONPATH "$VPY" - "$new_site" <<'PYEOF'
import importlib.metadata as md
import re
import sys
from pathlib import Path

import cleargrad as cg

site = Path(sys.argv[1]).resolve()
where = Path(cg.__file__).resolve()
assert site in where.parents, f"cleargrad was imported from {where}, not from the installed wheel in {site}"
assert md.version("cleargrad") == cg.__version__, (md.version("cleargrad"), cg.__version__)
for req in md.requires("cleargrad") or []:
    if "extra ==" in req:
        continue
    name = re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]
    md.version(name)  # raises PackageNotFoundError when a dependency is missing
pkg = where.parent
for data in ["py.typed", "report/templates", "models/reference", "evaluation/demo_gad"]:
    assert (pkg / data).exists(), f"{data} is missing from the wheel"
assert list((pkg / "models/reference").glob("*.safetensors")), "the shipped weights are missing from the wheel"
lic = [f for f in md.files("cleargrad") if f.name == "LICENSE"]
assert lic, "LICENSE is missing from the wheel's metadata"
x = cg.data.load_fashion_mnist("test", normalize=True, limit=2).images
m = cg.GradCAM(cg.models.small_cnn_fashion_mnist()).attribute(x)
assert m.shape == (2, 1, 28, 28)
print(f"import smoke test: cleargrad {cg.__version__} from {where.parent}, {len(cg.methods())} methods, Grad-CAM ok")
PYEOF
env -u PYTHONPATH "$OUT/venv/bin/cleargrad" --version
env -u PYTHONPATH "$OUT/venv/bin/cleargrad" demo --images 2 --quiet --out "$OUT/demo" >"$OUT/demo.log" 2>&1 \
    || { tail -n 40 "$OUT/demo.log"; echo "wheel-check: cleargrad demo failed from the wheel"; exit 1; }
test -s "$OUT/demo/report.html" || { echo "wheel-check: the demo wrote no report"; exit 1; }
tail -n 3 "$OUT/demo.log"
echo "wheel-check passed in $(( $(date +%s) - start )) s: the wheel installs into a fresh venv and runs the demo"
