#!/usr/bin/env bash
# The GPU check in one go, within 9 minutes of one GPU (benchmarks/device_check.py): the
# MNIST teacher and the paper's MNIST grid as run records, then every experiment's round in
# fp32, channels_last, bf16 and replayed from a CUDA graph as speed records, a DFAD_cifar.py
# epoch at the paper's settings with its 500 epochs projected, tests/test_cuda_graph.py.
# Writes records/, bench/, results.json and results.md into OUT.
#
#   cp -r ../shared/data/MNIST data/            (the GPU machine has no network)
#   bash benchmarks/device_check.sh OUT [--records results/records] [--jobs N]
#
# Without a CUDA GPU it refuses (exit 2); `python benchmarks/device_check.py OUT --tiny`
# runs every step at toy sizes on any machine. PYTHON=... picks the interpreter; COMPILE=1
# adds torch.compile (minutes more).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "device_check.sh: no CUDA GPU is visible to PyTorch; this check measures GPUs only (on a CPU use: python benchmarks/bench_game.py --cpu_check; python benchmarks/device_check.py OUT --tiny runs every step at toy sizes)." >&2
  exit 2
fi
export PYTHON
exec "$PYTHON" benchmarks/device_check.py "${1:-results/device_check}" "${@:2}"
