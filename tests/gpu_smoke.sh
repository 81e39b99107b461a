#!/usr/bin/env bash
# The GPU smoke run, for a machine with a CUDA GPU (CI has none): the library's tests with every
# advlib device choice on the GPU (ADVLIB_DEVICE=cuda; tests/test_gpu.py runs only here), then
# chapters 07 and 09 at the smoke budget under nbval. About ten minutes on one GPU; a fresh model
# cache, so every smoke model is trained on the GPU. Usage: bash tests/gpu_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch, sys; ok = torch.cuda.is_available(); print('CUDA:', torch.cuda.get_device_name(0) if ok else 'none'); sys.exit(0 if ok else 'tests/gpu_smoke.sh needs a CUDA GPU')"
export ADVLIB_DEVICE=cuda ADVLIB_BUDGET=smoke ADVLIB_PROGRESS=0 MPLBACKEND=Agg
export ADVLIB_CACHE="$(mktemp -d)"
trap 'rm -rf "$ADVLIB_CACHE"' EXIT
t0=$(date +%s)
python3 -m pytest tests --ignore=tests/browser -x -q
echo "== library tests on CUDA: $(( $(date +%s) - t0 )) s"
t1=$(date +%s)
python3 -m pytest -x notebooks/07_pgd_adversarial_training.ipynb notebooks/09_fast_training_and_robustness_drop.ipynb
echo "== chapters 07 and 09 at smoke on CUDA: $(( $(date +%s) - t1 )) s"
