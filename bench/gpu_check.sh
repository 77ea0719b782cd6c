#!/usr/bin/env bash
# The GPU checks of issue 22 as one short script, for a machine with one CUDA GPU (vLLM not needed).
#
#   bash bench/gpu_check.sh [OUT_DIR]        # OUT_DIR: default $OUT, else runs/gpu_check
#
# 1. tests/test_device.py: here its CUDA tests run too (every model input on cuda; the first
#    step's loss on the GPU against the CPU's on the same rollouts, GPU_LOSS_ATOL).
# 2. bench/bench_grpo.py on the GPU (HF engine, plain torch): the embedded default in fp32 and
#    bf16, a 12-layer width-768 embedded model (built by `grpo bootstrap` with model.sft_steps=0:
#    untrained, so every completion runs to max_new_tokens; a speed figure, not a quality one), and
#    the embedded default under DeepSpeed ZeRO-2 in one process (skipped if deepspeed is missing).
#    Each prints s/step, the share of each phase, sampled tokens/s and peak GPU memory.
# OUT_DIR gets one log per check and the large model's build (bench_grpo.py's store is a temp dir).
# The embedded default policy is built on first use (CPU SFT, ~1-2 min on 16 cores); carry
# runs/models with the work tree to skip that.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT_DIR=${1:-${OUT:-runs/gpu_check}}
STEPS=${STEPS:-6}
DEVICE=${DEVICE:-cuda}           # DEVICE=cpu STEPS=1: a smoke run of the script itself on a CPU machine
MODELS=${MODELS:-runs/models}    # where the embedded default is (or gets) built
mkdir -p "$OUT_DIR"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
status=0

run() {  # run NAME CMD...: tee its output into OUT_DIR/NAME.log, remember a failure, carry on
    local name=$1; shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc in $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}

"$PY" - <<'EOF' | tee "$OUT_DIR/device.log"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, f"{p.total_memory / 2**30:.0f} GiB", "bf16", torch.cuda.is_bf16_supported())
EOF

CACHE=("model.cache_dir=$MODELS")  # the embedded default: reuse a carried build
run test_device "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py
BENCH=("$PY" bench/bench_grpo.py --steps "$STEPS" "device=$DEVICE")
run default_fp32 "${BENCH[@]}" "${CACHE[@]}"
run default_bf16 "${BENCH[@]}" "${CACHE[@]}" precision=bf16
LARGE=(model.num_layers=12 model.hidden_size=768 model.num_heads=12 model.sft_steps=0
       "model.cache_dir=$OUT_DIR/models")
run large_bf16 "${BENCH[@]}" "${LARGE[@]}" precision=bf16
run large_fp32 "${BENCH[@]}" "${LARGE[@]}"
if "$PY" -c "import deepspeed" 2>/dev/null; then
    run default_zero2 "${BENCH[@]}" "${CACHE[@]}" grpo.backend=deepspeed grpo.deepspeed_config=configs/deepspeed/zero2.json
else
    echo "== default_zero2: skipped (no deepspeed here: carry its wheel, then pip install it)" | tee "$OUT_DIR/default_zero2.log"
fi
echo "== summary"
grep -H -E "s/step|tokens/s|peak GPU|passed|failed|overhead" "$OUT_DIR"/*.log
exit $status
