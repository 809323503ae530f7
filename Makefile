# cleargrad — the two quick-start commands: `make demo` and `make test`.
# Both set up everything they need (venv, pinned packages, Debian data package).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cleargrad-installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
FMNIST_FILE := $(FMNIST_DIR)/t10k-labels-idx1-ubyte.gz
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: demo test test-cuda venv data browser lint typecheck bench clean docs wheel-check

demo: venv data
	$(PY) -m cleargrad demo --out $(DEMO_OUT)

test: venv data browser
	$(PY) -m ruff check src tests tests_cuda benchmarks docs/_hooks
	$(MAKE) --no-print-directory typecheck
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory docs
	$(MAKE) --no-print-directory wheel-check

# the documentation site into site/ (open site/index.html): strict, so a broken link,
# anchor or API reference fails; the tutorial notebooks are executed during the build
# (results cached in .cache/docs-notebooks/ until a notebook or the package changes)
docs: venv data
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# build the wheel and sdist, install the wheel into a fresh venv, run an import smoke
# test and `cleargrad demo` from it (scripts/wheel-check.sh says how torch is shared)
wheel-check: venv data
	PY=$(PY) bash scripts/wheel-check.sh

# checks that need a CUDA device (not part of `make test`: CI has no GPU)
test-cuda: venv
	$(PY) -m pytest tests_cuda

lint: venv
	$(PY) -m ruff check src tests tests_cuda benchmarks

# mypy over src/cleargrad with [tool.mypy] of pyproject.toml (fails on any error)
typecheck: venv
	$(PY) -m mypy

venv: $(STAMP)

# Re-installs only when pyproject.toml or the pins change; idempotent otherwise.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Fashion-MNIST from the Debian package (no download at run time).
data:
	@if [ -f $(FMNIST_FILE) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST is missing. Run: sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"; \
		echo "(or set CLEARGRAD_FASHION_MNIST=<dir with the idx .gz files>)"; \
	fi

# Debian's chromium for the browser tests (never a downloaded browser).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing (browser tests will be skipped). Run: sudo apt-get install -y chromium"; \
	fi

bench: venv data
	$(PY) benchmarks/attribution.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache site build/wheel-check .cache/docs-notebooks
