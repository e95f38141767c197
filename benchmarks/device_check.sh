#!/usr/bin/env bash
# The GPU check in one go, within 9 minutes of one GPU (benchmarks/device_check.py: the
# game of every experiment in fp32, channels_last, bf16 and replayed from a CUDA graph;
# MNIST and CIFAR also at batch 256; two epochs of DFAD_cifar.py at the paper's settings
# with the paper's 500 epochs projected; a 2-process NCCL torchrun where 2 GPUs are
# visible). Writes results.json and results.md into the folder given as argument.
#
#   bash benchmarks/device_check.sh [OUT_DIR]      (default: results/device_check)
#
# Without a CUDA GPU it refuses (exit 2). PYTHON=... picks the interpreter; COMPILE=1
# adds torch.compile (minutes more); `python benchmarks/device_check.py --dry_run` lists
# the steps' commands on any machine.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "device_check.sh: no CUDA GPU is visible to PyTorch; this check measures GPUs only (on a CPU use: python benchmarks/bench_game.py --cpu_check)." >&2
  exit 2
fi
export PYTHON
exec "$PYTHON" benchmarks/device_check.py "${1:-results/device_check}"
