#!/usr/bin/env bash
# The prepared GPU check of the MJX backend, for the GPU test machine (no package index there):
#   here:   bash scripts/device_wheels.sh            (py3.12 wheels into .whl/, ~35 MB)
#   there:  bash scripts/device_check.sh             (with .whl carried; writes the report to $OUT)
# Installs the wheels with --target, runs the GPU tests (pytest -m gpu) and scripts/bench_gpu.py, and writes
# $OUT/report.md, $OUT/bench_gpu.json, logs. Budget: about 8 minutes in all (each part has a timeout), so
# that it can run twice in a 15-minute GPU lease. BENCH_ARGS overrides the benchmark's arguments.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/device}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl XLA_PYTHON_CLIENT_PREALLOCATE=false
start=$(date +%s)
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed (run scripts/device_wheels.sh here and carry .whl)"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
"$PY" -c "import jax, mujoco, torch; print('jax', jax.__version__, jax.devices(), 'mujoco', mujoco.__version__, 'torch', torch.__version__, torch.cuda.is_available())" \
  2>&1 | tee "$OUT/versions.txt"

timeout 150 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_sim_mjx_gpu.py -rA 2>&1 | tee "$OUT/pytest_gpu.log"
rc_tests=${PIPESTATUS[0]}

# default: the issue's sizes; Hopper at two sizes to stay in budget; training at 4096 envs
BENCH_ARGS=${BENCH_ARGS:---tasks HalfCheetah Hopper --sizes 1024 4096 16384 65536 --steps 50 --cpu-size 1024 --train-envs 4096 --updates 2}
# shellcheck disable=SC2086
timeout 300 "$PY" scripts/bench_gpu.py $BENCH_ARGS --cache-dir /tmp/jax_cache --json "$OUT/bench_gpu.json" --md "$OUT/bench_gpu.md" 2>&1 \
  | tee "$OUT/bench_gpu.log"
rc_bench=${PIPESTATUS[0]}

{
  echo "# MJX device check ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "GPU: $(tail -n +2 "$OUT/gpu.txt")"
  echo "Versions: $(cat "$OUT/versions.txt")"
  echo
  echo "GPU tests (rc=$rc_tests): $(tail -n 1 "$OUT/pytest_gpu.log")"
  echo
  echo "Benchmark (rc=$rc_bench):"
  echo
  cat "$OUT/bench_gpu.md" 2>/dev/null || tail -n 20 "$OUT/bench_gpu.log"
  echo
  echo "Wall time: $(( $(date +%s) - start )) s"
} > "$OUT/report.md"
cat "$OUT/report.md"
[ "$rc_tests" -eq 0 ] && [ "$rc_bench" -eq 0 ]
