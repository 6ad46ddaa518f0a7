#!/usr/bin/env bash
# Fetch the Python 3.12 manylinux wheels that the GPU test machine lacks into .whl/ (ignored by git), so
# that scripts/device_check.sh can install them there with `pip install --no-index --target`.
# That machine has JAX with CUDA, PyTorch, numpy, scipy, absl-py, etils, pandas, ... but no MuJoCo, MJX,
# Gymnasium or SB3. About 35 MB; what a device run can carry is 64 MiB.
#   bash scripts/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
WHEELS=(
  mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 mujoco-mjx==3.17.0
  gymnasium==1.4.0 farama-notifications==0.0.6 stable-baselines3==2.9.2 sb3-contrib==2.9.2
  trimesh==5.2.0 glfw==2.11.0 pyopengl==3.1.10
)
mkdir -p "$DEST"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$DEST" "${WHEELS[@]}"
ls -la "$DEST"
du -sh "$DEST"
