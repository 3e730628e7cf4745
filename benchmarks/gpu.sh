#!/usr/bin/env bash
# GPU benchmark: training and inference of both presets and their Mask R-CNN twins, with
# mixed precision (mixed_float16), then - if time is left - the fpn preset in float32 for
# comparison. One prepared script for a GPU machine; it stays under 8 minutes in all (each
# stage has its own time limit) and prints every figure.
#
#   bash benchmarks/gpu.sh            # results also go to $OUT (or a temporary folder)
#
# It sets up its own environment from the repository: a venv (GPU_VENV, default
# /tmp/ftmtl-gpu-venv) with `pip install -e ".[gpu]"` (tensorflow[and-cuda] from whatever
# index or wheel cache the machine has; PIP_* variables are honoured). On a machine with
# neither, point GPU_VENV at a Python environment that already holds TensorFlow and the
# project's dependencies: then nothing is installed and the repository goes on PYTHONPATH.
# torch is not installed: the torchvision comparison is a CPU measurement (benchmarks/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET_S=${BUDGET_S:-470}            # the whole script, seconds (< 8 minutes)
VENV=${GPU_VENV:-/tmp/ftmtl-gpu-venv}
OUT=${OUT:-$(mktemp -d /tmp/ftmtl-gpu-bench.XXXXXX)}
RUNS=${RUNS:-10}
START=$(date +%s)
mkdir -p "$OUT"

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }
say() { echo "[gpu.sh $(elapsed) s] $*"; }

say "machine"
nproc
grep -m1 "model name" /proc/cpuinfo || true
grep MemTotal /proc/meminfo || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || say "no nvidia-smi"

say "environment in $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || { say "python3 -m venv failed"; exit 1; }
fi
if "$VENV/bin/python" -c "import tensorflow, keras, numpy, scipy, skimage, sklearn, h5py, lxml, pydicom" \
    > /dev/null 2>&1; then
  say "TensorFlow and the dependencies are in $VENV already: nothing installed"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif ! timeout $(( $(left) - 300 > 60 ? $(left) - 300 : 60 )) \
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[gpu]" \
    > "$OUT/pip.log" 2>&1; then
  tail -20 "$OUT/pip.log"
  say "pip install -e .[gpu] failed or timed out (no index or wheel cache for tensorflow[and-cuda]?)"
  exit 1
fi
PY="$VENV/bin/python"
"$PY" - <<'EOF'
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, numpy, tensorflow as tf
print("tensorflow", tf.__version__, "keras", keras.__version__, "numpy", numpy.__version__)
gpus = tf.config.list_physical_devices("GPU")
print("GPUs:", gpus)
if not gpus:
    raise SystemExit("TensorFlow sees no GPU: the figures would be CPU figures; stopping")
EOF
[ $? -eq 0 ] || exit 1

# Stage 1: mixed precision, both presets, both models: inference, then training batch 1 and 2
# (in that order, so the budget cuts the least important last). Each worker (one measurement)
# gets at most 150 s; bench_model.py starts no measurement after --budget-s and still prints
# the tables of those done; the outer timeout is only a safety net.
stage1=$(( $(left) - 110 ))
say "mixed precision: paper and fpn (stage budget ${stage1} s)"
timeout $(( stage1 + 40 )) "$PY" benchmarks/bench_model.py --no-torch --precision float16 \
  --presets paper,fpn --runs "$RUNS" --warmup 2 --timeout-s 150 --budget-s "$stage1" \
  --json "$OUT/gpu_mixed_float16.json" || say "mixed-precision run incomplete (see above)"

# Stage 2: float32 reference for the fpn preset (FT-MTL), only with time to spare.
if [ "$(left)" -gt 100 ]; then
  stage2=$(( $(left) - 50 ))
  say "float32 reference: fpn (stage budget ${stage2} s)"
  timeout $(( stage2 + 40 )) "$PY" benchmarks/bench_model.py --no-torch --presets fpn \
    --models ftmtl --runs "$RUNS" --warmup 2 --timeout-s 100 --budget-s "$stage2" \
    --json "$OUT/gpu_float32.json" || say "float32 run incomplete"
else
  say "float32 reference skipped: $(left) s left"
fi
say "done; JSON in $OUT"
nvidia-smi --query-gpu=memory.used,memory.total --format=csv 2>/dev/null || true
