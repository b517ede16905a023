# Every target installs what it needs into .venv first, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch that this machine kind keeps on disk; on a GPU server use e.g. TORCH_SPEC=torch.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install run headless test test-reliability bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[test,plot]'
	command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux) >/dev/null 2>&1 || true
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/twotier-tui

headless: $(STAMP)
	$(VENV)/bin/twotier-tui --headless

test: $(STAMP)
	$(PY) -m pytest -q

test-reliability: $(STAMP)
	TWOTIER_KILLS=20 TWOTIER_LOCK_S=60 $(PY) -m pytest -q -m reliability

bench: $(STAMP)
	@for tracker in trackio mlflow wandb; do $(PY) -m pip install -q $$tracker >/dev/null 2>&1 || echo "bench: cannot install $$tracker; its row will say skipped"; done
	$(PY) -m bench

bench-quick: $(STAMP)
	@for tracker in trackio mlflow wandb; do $(PY) -m pip install -q $$tracker >/dev/null 2>&1 || echo "bench: cannot install $$tracker; its row will say skipped"; done
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
