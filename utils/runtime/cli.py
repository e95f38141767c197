"""Command-line flags shared by the scripts, with the reference implementation's names.

Flags the reference spelled with dashes are accepted with dashes and underscores.
"""
import argparse
import math
import os
import random
import signal
import sys

import numpy as np
import torch

from ..reporting.visdom import DEFAULT_PORT
from . import distributed, signals, workers
from .errors import UserError
from .signals import Interrupted


SEED_MAX = 2**32 - 1  # numpy's limit; python and torch accept it too


def _number(text, kind=float):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_int(text):
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {text}")
    return value


def seed_value(text):
    value = _number(text, int)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_MAX} (2**32 - 1), got {text}")
    return value


def port_number(text):
    value = _number(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text}")
    return value


def positive_float(text):
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text):
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {text}")
    return value


def momentum_value(text):
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every flag's default, except ``None`` (whose help says what it means)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def new_parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def add_common_args(parser, *, batch_size, test_batch_size, epochs, weight_decay,
                    dataset, datasets, step_size, channels_last=False):
    """Flags every script has (teacher training and DFAD). ``channels_last`` is the
    script's default memory format: the DFAD scripts turn it on (benchmarks/bench_game.py
    measured NHWC faster for every game, README, Speed); teacher training keeps NCHW."""
    parser.add_argument("--batch_size", type=positive_int, default=batch_size, help="training batch size")
    parser.add_argument("--test_batch_size", type=positive_int, default=test_batch_size,
                        help="evaluation batch size")
    parser.add_argument("--epochs", type=positive_int, default=epochs, help="number of epochs")
    parser.add_argument("--weight_decay", type=non_negative_float, default=weight_decay,
                        help="SGD weight decay")
    parser.add_argument("--momentum", type=momentum_value, default=0.9, help="SGD momentum")
    parser.add_argument("--data_root", default="data", help="folder holding the data sets")
    parser.add_argument("--dataset", default=dataset, choices=datasets, help="data set")
    parser.add_argument("--no_cuda", "--no-cuda", action="store_true", help="train on the CPU even if a GPU exists")
    parser.add_argument("--seed", type=seed_value, default=1, help="seed of python, numpy and torch")
    parser.add_argument("--log_interval", "--log-interval", type=positive_int, default=10,
                        help="iterations between two loss updates of the progress bar and plots")
    parser.add_argument("--test_only", "--test-only", action="store_true",
                        help="only evaluate the checkpoint and exit")
    parser.add_argument("--download", action="store_true",
                        help="kept for the reference's commands: missing data is always downloaded when possible")
    parser.add_argument("--step_size", type=positive_int, default=step_size,
                        help="epochs between two x0.1 learning-rate decays (with --scheduler)")
    parser.add_argument("--scheduler", action="store_true", help="decay the learning rates")
    parser.add_argument("--num_workers", type=non_negative_int, default=2, help="data loading processes")
    parser.add_argument("--visdom_port", type=port_number, default=DEFAULT_PORT,
                        help="port of the visdom server on 127.0.0.1")
    parser.add_argument("--no_visdom", action="store_true", help="do not send plots to visdom")
    parser.add_argument("--verbose", action="store_true", help="kept for the reference's commands")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue the interrupted run from its '-last.pt' checkpoint")
    resume.add_argument("--restart", action="store_true",
                        help="start afresh, discarding the '-last.pt' checkpoint of an unfinished "
                             "run (without this flag or --resume, a run that would replace it is "
                             "refused, so that no resume point is lost)")
    speed = parser.add_argument_group("speed (same method, faster arithmetic)")
    speed.add_argument("--amp", choices=["bf16", "fp16"], default=None,
                       help="mixed precision; `python benchmarks/bench_game.py --recommend` says "
                            "whether bf16 is faster on this machine (default: fp32)")
    # Both flags set one resolved value, args.channels_last, which the engine reads; the
    # help's "(default: ...)" is that value's default.
    speed.add_argument("--channels_last", dest="channels_last", action="store_true",
                       default=channels_last, help="NHWC memory format for the networks")
    speed.add_argument("--no_channels_last", dest="channels_last", action="store_false",
                       default=channels_last,
                       help="PyTorch's usual NCHW memory format instead (default: channels_last=%(default)s)")
    speed.add_argument("--compile", action="store_true", help="torch.compile the networks")
    speed.add_argument("--deterministic", action="store_true",
                       help="deterministic kernels on GPU (no cuDNN benchmark mode)")
    return parser


def add_teacher_args(parser):
    """Flags both teacher scripts add to the common ones."""
    parser.add_argument("--num_classes", type=positive_int, default=None,
                        help="number of classes (default: the data set's)")
    parser.add_argument("--ckpt", default=None,
                        help="weights to start from; with --test_only, the weights to evaluate "
                             "(default: checkpoint/teacher/<dataset>-<model>.pt)")
    return parser


def check_num_classes(args, expected):
    """``--num_classes`` is optional, but when given it must be the data set's."""
    if args.num_classes is not None and args.num_classes != expected:
        raise UserError(f"--num_classes {args.num_classes} does not match --dataset {args.dataset}, "
                        f"which has {expected} classes.")
    args.num_classes = expected


def teacher_checkpoint(dataset, model):
    """Where a teacher is saved and where the DFAD scripts look for it (the reference's names)."""
    return f"checkpoint/teacher/{dataset}-{model}.pt"


# DAFL (Chen et al., ICCV 2019), official code huawei-noah/Efficient-Computing, DAFL/DAFL-train.py
# (its defaults are the MNIST recipe: Adam for both players, lr_G 0.2, lr_S 2e-3, --oh 1 --ie 5
# --a 0.1, batch 512, latent 100) and DAFL/README.md (CIFAR-10: --lr_G 0.02 --lr_S 0.1 (SGD,
# momentum 0.9, weight decay 5e-4) --oh 0.05 --ie 5 --act 0.01, batch 1024, latent 1000;
# CIFAR-100: the same with --ie 20). The official information-entropy loss takes log10; ours
# takes the natural log, so its weight here is the official one divided by ln 10.
LN10 = math.log(10)
DAFL_DEFAULTS = {
    "mnist": dict(lr_S=2e-3, lr_G=0.2, optimizer_S="adam", dafl_oh=1.0, dafl_ie=5 / LN10, dafl_a=0.1),
    "cifar10": dict(lr_S=0.1, lr_G=0.02, optimizer_S="sgd", dafl_oh=0.05, dafl_ie=5 / LN10, dafl_a=0.01),
    "cifar100": dict(lr_S=0.1, lr_G=0.02, optimizer_S="sgd", dafl_oh=0.05, dafl_ie=20 / LN10, dafl_a=0.01),
}
DAFL_DEFAULTS["digits"] = DAFL_DEFAULTS["mnist"]
DAFL_FALLBACK = dict(optimizer_S="sgd", dafl_oh=1.0, dafl_ie=5 / LN10, dafl_a=0.1)  # no published recipe
METHOD_FLAGS = ("lr_S", "lr_G", "optimizer_S", "dafl_oh", "dafl_ie", "dafl_a")


class DFADArgumentParser(argparse.ArgumentParser):
    """Fills in ``--ckpt`` from ``--dataset`` once parsing is done (argparse defaults
    cannot depend on another flag), so parsed arguments are always complete; likewise the
    learning rates and DAFL's weights, whose defaults depend on --method and --dataset."""

    teacher_model = None
    script_defaults = {}

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        if parsed.ckpt is None:
            parsed.ckpt = teacher_checkpoint(parsed.dataset, self.teacher_model)
        if hasattr(parsed, "method"):
            chosen = dict(self.script_defaults, **DAFL_FALLBACK)
            if parsed.method == "dafl":
                chosen.update(DAFL_DEFAULTS.get(parsed.dataset, {}))
            for name in METHOD_FLAGS:
                if getattr(parsed, name, None) is None:  # not given on the command line
                    setattr(parsed, name, chosen[name])
        return parsed, rest


def dfad_parser(description, *, dataset, datasets, model, models, teacher_model, batch_size,
                test_batch_size, epochs, lr_S, lr_G, weight_decay, nz, step_size, epoch_itrs=50,
                channels_last=False):
    """The flags of a DFAD script, with that experiment's defaults (SPEC table)."""
    parser = DFADArgumentParser(description=description, formatter_class=HelpFormatter)
    parser.teacher_model = teacher_model
    parser.script_defaults = {"lr_S": lr_S, "lr_G": lr_G}
    add_common_args(parser, batch_size=batch_size, test_batch_size=test_batch_size, epochs=epochs,
                    weight_decay=weight_decay, dataset=dataset, datasets=datasets, step_size=step_size,
                    channels_last=channels_last)
    parser.add_argument("--epoch_itrs", type=positive_int, default=epoch_itrs,
                        help="outer iterations (5 student steps + 1 generator step) per epoch")
    dafl_note = "; with --method dafl, DAFL's official value for the data set where it published one"
    parser.add_argument("--lr_S", type=positive_float, default=None,
                        help=f"student learning rate (default: {lr_S}{dafl_note}: MNIST 2e-3, CIFAR 0.1)")
    parser.add_argument("--lr_G", type=positive_float, default=None,
                        help=f"generator learning rate, Adam (default: {lr_G}{dafl_note}: MNIST 0.2, CIFAR 0.02)")
    parser.add_argument("--model", default=model, choices=models, help="student network")
    parser.add_argument("--nz", type=positive_int, default=nz, help="size of the generator's noise vector")
    parser.add_argument("--ckpt", default=None, help="teacher checkpoint (default: "
                        f"{teacher_checkpoint('<dataset>', teacher_model)})")
    parser.add_argument("--eval_ckpt", default=None,
                        help="with --test_only: the student to evaluate, e.g. the -labelfree.pt one "
                             "(default: the best student of this method)")
    add_method_args(parser, datasets)
    return parser


def transfer_set_value(datasets):
    """--transfer_set: one of the script's data sets, or a folder holding images."""
    def parse(text):
        if text in datasets or os.path.isdir(text):
            return text
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a data set of this script ({', '.join(datasets)}) nor a folder; "
            f"name one of those data sets or an existing folder of images")
    return parse


def add_method_args(parser, datasets):
    """--method and its options: the paper's Table 2 baselines through the same loop."""
    from ..engine.methods import METHODS
    group = parser.add_argument_group(
        "method (paper Table 2)",
        "dfad: the adversarial game (default). random: the generator stays at its random "
        "initialisation. dafl: Chen et al., ICCV 2019: the generator is trained against the "
        "teacher alone (one-hot, activation and information-entropy losses), the student learns "
        "by KD on its images; defaults from DAFL's official code (huawei-noah/Efficient-Computing, "
        "DAFL/DAFL-train.py and DAFL/README.md): MNIST Adam lr_S 2e-3, lr_G 0.2, oh 1, ie 5, a 0.1 "
        "(batch 512); CIFAR-10 SGD lr_S 0.1, lr_G 0.02, oh 0.05, ie 5, a 0.01 (batch 1024, "
        "latent 1000: pass --batch_size 1024 --nz 1000 to match); CIFAR-100 ie 20. kd: distillation "
        "on real images of --transfer_set, labels never read. A baseline writes "
        "checkpoint/student/<dataset>-<model>-<method>*.pt and log/DFAD-<dataset>-<method>.*")
    group.add_argument("--method", choices=METHODS, default="dfad", help="how the student is trained")
    group.add_argument("--transfer_set", type=transfer_set_value(datasets), default=None,
                       help=f"--method kd: the images to distil on: the training split of "
                            f"{', '.join(datasets)}, or a folder of images (searched recursively, "
                            f"resized to the teacher's input) (default: --dataset's, KD-ORI)")
    group.add_argument("--kd_loss", choices=["l1", "kl"], default="l1",
                       help="--method kd: the L1 on logits, as DFAD, or Hinton's KL with --temperature")
    group.add_argument("--temperature", type=positive_float, default=4.0, help="--method kd --kd_loss kl: T")
    group.add_argument("--optimizer_S", choices=["sgd", "adam"], default=None,
                       help="the student's optimizer (default: sgd; adam with --method dafl on MNIST, as DAFL)")
    group.add_argument("--dafl_oh", type=non_negative_float, default=None,
                       help="--method dafl: weight of the one-hot loss (default: DAFL's for the data set)")
    group.add_argument("--dafl_ie", type=non_negative_float, default=None,
                       help="--method dafl: weight of the information-entropy loss, natural log (default: "
                            "DAFL's for the data set divided by ln 10, as its code takes log10)")
    group.add_argument("--dafl_a", type=non_negative_float, default=None,
                       help="--method dafl: weight of the activation loss (default: DAFL's for the data set)")
    return parser


def add_segmentation_args(parser, *, data_root):
    """What the segmentation DFAD scripts add: their data folder, --stu_ckpt, --save_img."""
    parser.set_defaults(data_root=data_root)
    parser.add_argument("--stu_ckpt", default=None,
                        help="student weights to start from (and <stu_ckpt without .pt>-generator.pt "
                             "where it exists); with --test_only, the student to evaluate")
    parser.add_argument("--save_img", action="store_true",
                        help="write inputs, targets, teacher and student predictions of the test set "
                             "to results/DFAD-<dataset>/ (a baseline: results/DFAD-<dataset>-<method>/)")
    return parser


def set_seed(seed):
    """Seed python, numpy and torch (every device) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(args):
    """Join the process group (under torchrun), print the run's arguments, seed every
    RNG and pick the device."""
    device = distributed.init(args.no_cuda)
    if distributed.is_main():
        print(args, flush=True)
    set_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.deterministic
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return device


def main_guard(main):
    """Run ``main``; a :class:`UserError` becomes one clear message and exit status 2,
    a stop on SIGINT/SIGTERM exits with 128 + the signal number (after the training
    loop saved, if it was running). However ``main`` ends, the data-loading workers are
    stopped before the interpreter exits (see :mod:`.workers`)."""
    signals.install_outside_loop_handlers()
    try:
        return main()
    except UserError as e:
        print(f"Error: {user_message(e)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Interrupted as e:
        print(str(e), file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr, flush=True)
        sys.exit(128 + signal.SIGINT)
    finally:
        workers.stop_all()
        distributed.cleanup()


def user_message(error):
    """A UserError raised in a DataLoader worker reaches the main process wrapped in the
    worker's traceback; keep only its own message."""
    text, marker = str(error), "UserError: "
    if text.startswith("Caught ") and "Original Traceback" in text and marker in text:
        return text[text.rindex(marker) + len(marker):].strip()
    return text
