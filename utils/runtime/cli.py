"""Command-line flags shared by the scripts, with the reference implementation's names.

Flags the reference spelled with dashes are accepted with dashes and underscores.
"""
import argparse
import math
import random
import signal
import sys

import numpy as np
import torch

from . import distributed, signals, speed
from .errors import UserError
from .signals import Interrupted

SEED_MAX = 2**32 - 1  # numpy's limit; python and torch accept it too
VISDOM_PORT = 15550    # the reference's visdom port


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
                    dataset, datasets, step_size, channels_last=False, speed_experiment=None,
                    weight_decay_help="SGD weight decay"):
    """Flags every script has (teacher training and DFAD). The speed flags are
    :mod:`.speed`'s: the DFAD scripts name their experiment (``speed_experiment``), whose
    memory format resolves per device from measurements; teacher training keeps
    ``channels_last`` (NCHW) as no measurement says otherwise."""
    parser.add_argument("--batch_size", type=positive_int, default=batch_size, help="training batch size")
    parser.add_argument("--test_batch_size", type=positive_int, default=test_batch_size,
                        help="evaluation batch size")
    parser.add_argument("--epochs", type=positive_int, default=epochs, help="number of epochs")
    parser.add_argument("--weight_decay", type=non_negative_float, default=weight_decay,
                        help=weight_decay_help)
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
    parser.add_argument("--visdom_port", type=port_number, default=VISDOM_PORT,
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
    speed.add_args(parser, channels_last, speed_experiment)
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


def set_seed(seed):
    """Seed python, numpy and torch (every device) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(args):
    """Join the process group (under torchrun), print the run's arguments and resolved speed defaults, seed every RNG and pick
    the device."""
    device = distributed.init(args.no_cuda)
    if distributed.is_main():
        print(args, flush=True)
        if hasattr(args, "channels_last_from"):  # the DFAD scripts: what "auto" resolved to, and why
            print(speed.start_line(args), flush=True)
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
        signals.stop_all()
        distributed.cleanup()


def user_message(error):
    """A UserError raised in a DataLoader worker reaches the main process wrapped in the
    worker's traceback; keep only its own message."""
    text, marker = str(error), "UserError: "
    if text.startswith("Caught ") and "Original Traceback" in text and marker in text:
        return text[text.rindex(marker) + len(marker):].strip()
    return text
