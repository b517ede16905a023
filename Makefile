# Every target installs what it needs into .venv first, so a fresh clone needs only `make run` or `make test`.
# Versions come from constraints.txt, the versions the suite last passed with (`make lock` refreshes it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := constraints.txt
EXTRAS := test,plot,check,trl
# The folders as the package they install as (twotier.engine, ...), for the type checker.
TYPECHECK := build/typecheck/twotier
TORCH_VERSION ?= $(shell sed -n 's/^torch==//p' $(LOCK))
# The CUDA build of torch (PyPI's own) where an NVIDIA driver answers, the CPU build everywhere else.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_SOURCE := $(if $(HAS_GPU),,--retries 0 --extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: install run headless test test-reliability check lock bench bench-quick docs clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SOURCE) "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/twotier-tui

headless: $(STAMP)
	$(VENV)/bin/twotier-tui --headless

# The suite in TEST_JOBS processes (pytest-xdist), each test file whole in one of them: the README's blocks
# run in order in one folder, and a file's session fixtures are built once per process that needs them.
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

test-reliability: $(STAMP)
	TWOTIER_KILLS=20 TWOTIER_LOCK_S=60 $(PY) -m pytest -q -m reliability

# Format, lint, types, and the import layers (engine/ and store/ never load Textual; store/ never torch).
check: $(STAMP)
	$(VENV)/bin/ruff format --check engine store tui tests bench docs
	$(VENV)/bin/ruff check engine store tui tests bench docs
	mkdir -p $(TYPECHECK) && touch $(TYPECHECK)/__init__.py
	for layer in engine store tui; do ln -sfn $(CURDIR)/$$layer $(TYPECHECK)/$$layer; done
	cd $(dir $(TYPECHECK)) && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p twotier
	$(VENV)/bin/mypy --config-file pyproject.toml -p docs
	$(PY) -m pytest -q tests/test_layers.py

# Re-resolve every dependency from pyproject.toml's ranges (torch stays at TORCH_VERSION) into the lock.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet $(TORCH_SOURCE) "torch==$(TORCH_VERSION)"
	.lock-venv/bin/pip install --quiet -e '.[$(EXTRAS)]'
	.lock-venv/bin/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > $(LOCK)
	rm -rf .lock-venv

bench: $(STAMP)
	@for tracker in trackio mlflow wandb; do $(PY) -m pip install -q $$tracker >/dev/null 2>&1 || echo "bench: cannot install $$tracker; its row will say skipped"; done
	$(PY) -m bench

bench-quick: $(STAMP)
	@for tracker in trackio mlflow wandb; do $(PY) -m pip install -q $$tracker >/dev/null 2>&1 || echo "bench: cannot install $$tracker; its row will say skipped"; done
	$(PY) -m bench --quick

# Rerun every README example in a temporary folder and rewrite what the README shows: outputs, the app's
# screen (needs tmux), the configuration table, the benchmark table (from runs/bench/table.txt, when
# `make bench` wrote one) and docs/loss.png, each part stamped with the machine it was taken on.
docs: $(STAMP)
	$(PY) -m docs.readme --update

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
