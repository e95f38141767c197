"""Whole epochs of DFAD_cifar.py at the paper's settings, timed, and the paper's 500 epochs
projected from them.

The script runs as a user runs it (its defaults: batch 256, 50 rounds per epoch,
evaluation on the whole CIFAR-10 test set after each epoch, --scheduler), from an
untrained teacher: only the time is measured. Where CIFAR-10 is not in ``data/`` it runs
on a generated set in CIFAR's real on-disk format (tests/datagen.py) of the real test
set's size, whose checksums are registered with torchvision in this process only.

    python benchmarks/cifar_epoch.py WORK_DIR [--epochs 2] [DFAD_cifar.py flags ...]

Writes WORK_DIR/epochs.json: the seconds of every epoch and the projection from the last
one (the first also pays for cuDNN's autotuning and, with --cuda_graph, the capture).
"""
import argparse
import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torchvision import datasets  # noqa: E402

import DFAD_cifar  # noqa: E402
import network  # noqa: E402
from utils.runtime import cli  # noqa: E402

PAPER_EPOCHS = 500
TEST_IMAGES = 10000  # CIFAR-10's test set, which every epoch evaluates
EPOCH_LINE = re.compile(r"^Epoch (\d+)/\d+ .* ([0-9.]+)s/epoch")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", help="folder for the data, teacher, checkpoints and logs of the run")
    parser.add_argument("--epochs", type=int, default=2, help="epochs to time (default: 2)")
    parser.add_argument("--test_images", type=int, default=TEST_IMAGES,
                        help=f"test images of a generated set (default: {TEST_IMAGES}, CIFAR-10's)")
    args, flags = parser.parse_known_args(argv)
    DFAD_cifar.get_args_parser().parse_args(flags)  # the script's flags, checked before anything is written
    return args, flags


def cifar10_root(work, test_images):
    """``data/`` where it holds CIFAR-10, else a generated set of its format."""
    try:
        datasets.CIFAR10(str(ROOT / "data"), train=False, download=False)
        return str(ROOT / "data"), "CIFAR-10"
    except RuntimeError:  # missing, or failing its MD5 check
        pass
    sys.path.insert(0, str(ROOT / "tests"))
    from datagen import write_cifar
    root = Path(work) / "data"
    if not (root / datasets.CIFAR10.base_folder).exists():
        _, checksums = write_cifar(root, datasets.CIFAR10, n_train=5, n_test=test_images)
        (root / "checksums.json").write_text(json.dumps(checksums))
    for name, value in json.loads((root / "checksums.json").read_text()).items():
        setattr(datasets.CIFAR10, name, value)  # this process accepts the generated files
    return str(root), f"generated, CIFAR-10's format, {test_images} test images"


def untrained_teacher(work):
    path = Path(work) / "teacher.pt"
    torch.manual_seed(0)
    torch.save(network.resnet_8x.ResNet34_8x(num_classes=10).state_dict(), path)
    return str(path)


class Tee(io.TextIOBase):
    """The run's output, shown and kept."""

    def __init__(self, shown):
        self.shown, self.kept = shown, io.StringIO()

    def write(self, text):
        self.kept.write(text)
        return self.shown.write(text)

    def flush(self):
        self.shown.flush()


def epoch_seconds(output):
    return [float(m.group(2)) for m in map(EPOCH_LINE.match, output.splitlines()) if m]


def main(argv=None):
    args, flags = parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_root, data = cifar10_root(work, args.test_images)
    teacher = untrained_teacher(work)
    tee = Tee(sys.stdout)
    os.chdir(work)  # checkpoint/, log/ and results/ of the run go here
    run_flags = ["--dataset", "cifar10", "--data_root", data_root, "--ckpt", teacher, "--scheduler", "--no_visdom",
                 "--epochs", str(args.epochs), *flags]
    with contextlib.redirect_stdout(tee):
        cli.main_guard(lambda: DFAD_cifar.main(run_flags))
    seconds = epoch_seconds(tee.kept.getvalue())
    result = {"flags": flags, "data": data, "epoch_seconds": seconds,
              "projected_paper_s": seconds[-1] * PAPER_EPOCHS, "paper_epochs": PAPER_EPOCHS,
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    (work / "epochs.json").write_text(json.dumps(result, indent=1))
    print(f"cifar_epoch: epochs of {', '.join(f'{s:.1f}' for s in seconds)} s ({' '.join(flags) or 'defaults'}); "
          f"{PAPER_EPOCHS} epochs at the last one's pace: {seconds[-1] * PAPER_EPOCHS / 3600:.1f} h")
    return result


if __name__ == "__main__":
    main()
