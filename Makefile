# Two commands do everything on a fresh machine:
#   make run    set up .venv, then run the main job on the embedded default
#   make test   set up .venv, then run the test suite (what .ci/run calls)
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

# No model hub, no telemetry: everything runs offline.
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export WANDB_MODE ?= offline
export DO_NOT_TRACK = 1
# Idle OpenMP threads sleep instead of spinning: on 2 shared cores spinning slows torch severalfold.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test bench
setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: setup
	$(VENV)/bin/grpo run --config configs/default.yaml $(ARGS)

test: setup
	$(VENV)/bin/pytest -q $(ARGS)

bench: setup
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done
