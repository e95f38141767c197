#!/usr/bin/env bash
# The GPU check, under 8 minutes on one GPU: the game benchmark of every experiment in
# fp32, channels_last, bf16 and compile; one MNIST epoch of DFAD at batch 512 (digits
# where MNIST is absent, as run_mnist.sh does); a one-process NCCL torchrun.
# Writes results.json and results.md into the folder given as argument.
#
#   bash benchmarks/device_check.sh [OUT_DIR]      (default: results/device_check)
#
# Every step has its own time limit (seconds, environment variables BENCH_S=120,
# COMPILE_S=210, EPOCH_S=60, TORCHRUN_S=60); a step that fails or runs out of time is
# recorded as such and the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python}
CONFIGS="mnist cifar caltech camvid"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "device_check.sh: no CUDA GPU is visible to PyTorch; this check measures GPUs only (on a CPU use: python benchmarks/bench_game.py --recommend)." >&2
  exit 2
fi
OUT=$(mkdir -p "${1:-results/device_check}" && cd "${1:-results/device_check}" && pwd)

STEPS="$OUT/steps.tsv"; : > "$STEPS"
step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log its output, record its status
  local name=$1 limit=$2; shift 2
  local started=$SECONDS
  echo "===== $name (limit ${limit}s) ====="
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  local status=ok; [ $rc -eq 124 ] && status=timeout; [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="failed (exit $rc)"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - started))" >> "$STEPS"
}

step bench_game "${BENCH_S:-120}" "$PYTHON" benchmarks/bench_game.py --configs $CONFIGS --batch_sizes 64 \
  --options plain channels_last bf16 --repeats 3 --json "$OUT/bench_game.json"
step bench_compile "${COMPILE_S:-210}" "$PYTHON" benchmarks/bench_game.py --configs $CONFIGS --batch_sizes 64 \
  --options compile --repeats 3 --json "$OUT/bench_compile.json"

# DFAD runs in a scratch folder, so that the repository's checkpoint/ and log/ stay as they are.
WORK="$OUT/work"; mkdir -p "$WORK"
DATASET=mnist
"$PYTHON" -c "import sys; sys.path.insert(0, '$ROOT')
from dataloader.mnist import mnist
mnist('$ROOT/data')" > /dev/null 2>&1 || DATASET=digits
dfad_epoch() {
  cd "$WORK" && "$PYTHON" "$ROOT/train_teacher.py" --dataset "$DATASET" --data_root "$ROOT/data" --model lenet5 \
      --epochs 1 --batch_size 256 --no_visdom \
    && "$PYTHON" "$ROOT/DFAD_mnist.py" --dataset "$DATASET" --data_root "$ROOT/data" --epochs 1 --epoch_itrs 50 \
      --batch_size 512 --no_visdom --ckpt "checkpoint/teacher/$DATASET-lenet5.pt"
}
torchrun_nccl() {  # under torchrun with a GPU the scripts join an NCCL process group
  cd "$WORK" && torchrun --standalone --nproc_per_node=1 "$ROOT/DFAD_mnist.py" --dataset "$DATASET" \
    --data_root "$ROOT/data" --epochs 1 --epoch_itrs 5 --batch_size 512 --no_visdom \
    --ckpt "checkpoint/teacher/$DATASET-lenet5.pt"
}
export -f dfad_epoch torchrun_nccl; export WORK ROOT PYTHON DATASET
step dfad_epoch "${EPOCH_S:-60}" bash -c dfad_epoch
step torchrun_nccl "${TORCHRUN_S:-60}" bash -c torchrun_nccl

"$PYTHON" benchmarks/device_summary.py "$OUT" "$DATASET"
echo "device_check.sh: wrote $OUT/results.json and $OUT/results.md"
