#!/usr/bin/env bash
# The reference's MNIST pipeline: train a LeNet-5 teacher on real MNIST, then distil it
# into a LeNet-5-half student without any training data.
#
# Environment variables (defaults = the reference's settings):
#   DATASET=mnist       mnist, or digits (scikit-learn's digits: no download needed)
#   DATA_ROOT=data      where MNIST lives (<DATA_ROOT>/MNIST/raw) or is downloaded to
#   TEACHER_EPOCHS=10   teacher training epochs (digits: 30)
#   EPOCHS=40           DFAD epochs
#   EPOCH_ITRS=50       DFAD outer iterations per epoch
#   BATCH_SIZE=512      DFAD batch size
#   PYTHON=python       the interpreter to use
#   ESTIMATE=1          first measure a few rounds of the game and print what the DFAD
#                       run will cost here, and how to size it down (0: skip)
# Extra arguments are passed on to DFAD_mnist.py, e.g. `bash run_mnist.sh --no_visdom`;
# --no_visdom, --visdom_port, --no_cuda and --num_workers reach the teacher stage too.
#   --resume    go on where a stopped run stopped: the interrupted stage resumes, a
#               finished teacher is not trained again (utils/tools/mnist_pipeline.py)
#   --restart   start both stages afresh, discarding their resume points
# Without either, a run that would replace the resume point of an unfinished teacher
# or DFAD run is refused before anything runs.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python}
DATASET=${DATASET:-mnist}
DATA_ROOT=${DATA_ROOT:-data}

MODE=()           # --resume / --restart: each stage gets what fits it (see the plan below)
TEACHER_FLAGS=()  # the extra arguments train_teacher.py accepts as well
DFAD_FLAGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --resume|--restart) MODE+=("$1") ;;
    -h|--help)  # this header, then the flags DFAD_mnist.py takes
      sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; echo; exec "$PYTHON" DFAD_mnist.py --help ;;
    --no_visdom|--no_cuda|--no-cuda|--visdom_port=*|--num_workers=*)
      TEACHER_FLAGS+=("$1"); DFAD_FLAGS+=("$1") ;;
    --visdom_port|--num_workers)
      TEACHER_FLAGS+=("${@:1:2}"); DFAD_FLAGS+=("${@:1:2}"); [ $# -gt 1 ] && shift ;;
    *) DFAD_FLAGS+=("$1") ;;
  esac
  shift
done

if [ "$DATASET" = mnist ]; then
  if ! reason=$("$PYTHON" -c "import sys
from utils.runtime.errors import UserError
from dataloader.mnist import mnist
try:
    mnist(sys.argv[1])
except UserError as e:
    print(e); sys.exit(1)" "$DATA_ROOT" 2>&1); then
    echo "$reason"
    echo "run_mnist.sh: running the same pipeline on scikit-learn's handwritten digits instead"
    echo "(1,797 real 8x8 digits, no download). Set DATASET=mnist once MNIST is in place."
    echo
    DATASET=digits
  fi
fi

if [ "$DATASET" = digits ]; then
  TEACHER_EPOCHS=${TEACHER_EPOCHS:-30}; TEACHER_BATCH_SIZE=64   # 1,437 images: more, smaller steps
else
  TEACHER_EPOCHS=${TEACHER_EPOCHS:-10}; TEACHER_BATCH_SIZE=256
fi

TEACHER="checkpoint/teacher/$DATASET-lenet5.pt"
DFAD_ARGS=(--dataset "$DATASET" --data_root "$DATA_ROOT" --ckpt "$TEACHER" --epochs "${EPOCHS:-40}"
           --epoch_itrs "${EPOCH_ITRS:-50}" --batch_size "${BATCH_SIZE:-512}" ${DFAD_FLAGS[@]+"${DFAD_FLAGS[@]}"})
# Two words (teacher: train/resume/skip, DFAD: new/resume); refuses (exit 2) to replace
# an unfinished run's resume point without --resume or --restart.
PLAN=$("$PYTHON" -m utils.tools.mnist_pipeline "${DFAD_ARGS[@]}" ${MODE[@]+"${MODE[@]}"})
read -r TEACHER_ACTION DFAD_ACTION <<< "$PLAN"
RESTART=()
if [ "${MODE[*]-}" = --restart ]; then RESTART=(--restart); fi

if [ "${ESTIMATE:-1}" != 0 ] && [ "${MODE[*]-}" != --resume ]; then  # a resumed run was sized already
  echo "===== What the DFAD run will cost on this machine ====="
  "$PYTHON" benchmarks/estimate_run.py --config mnist --batch_size "${BATCH_SIZE:-512}" --epochs "${EPOCHS:-40}" \
    --epoch_itrs "${EPOCH_ITRS:-50}" ${DFAD_FLAGS[@]+"${DFAD_FLAGS[@]}"} || echo "run_mnist.sh: the estimate failed; training goes on"
  echo
fi

echo "===== Teacher ====="
if [ "$TEACHER_ACTION" = skip ]; then
  echo "run_mnist.sh --resume: $TEACHER exists and no teacher run was interrupted: not trained again."
else
  TEACHER_RESUME=()
  if [ "$TEACHER_ACTION" = resume ]; then TEACHER_RESUME=(--resume); fi
  "$PYTHON" train_teacher.py --batch_size "$TEACHER_BATCH_SIZE" --epochs "$TEACHER_EPOCHS" --lr 0.01 \
    --dataset "$DATASET" --model lenet5 --weight_decay 1e-4 --data_root "$DATA_ROOT" \
    ${TEACHER_FLAGS[@]+"${TEACHER_FLAGS[@]}"} ${TEACHER_RESUME[@]+"${TEACHER_RESUME[@]}"} ${RESTART[@]+"${RESTART[@]}"}
fi

echo "===== DFAD ====="
DFAD_RESUME=()
if [ "$DFAD_ACTION" = resume ]; then DFAD_RESUME=(--resume); fi
"$PYTHON" DFAD_mnist.py "${DFAD_ARGS[@]}" ${DFAD_RESUME[@]+"${DFAD_RESUME[@]}"} ${RESTART[@]+"${RESTART[@]}"}
