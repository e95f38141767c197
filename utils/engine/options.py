"""The flags of the DFAD scripts: the common ones with each experiment's defaults (SPEC
table), ``--method`` and every method's own flags (``methods/``)."""
import argparse

from ..runtime import cli
from .methods import METHODS
from .replay import add_replay_args


class DFADArgumentParser(argparse.ArgumentParser):
    """Completes the parsed arguments, so that a run's record holds every value it used:
    ``--ckpt`` from ``--dataset``, and the flags left unset whose default depends on
    ``--method`` and ``--dataset`` (e.g. DAFL's learning rates), which argparse defaults
    cannot express."""

    teacher_model = None
    script_defaults = {}

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        if parsed.ckpt is None:
            parsed.ckpt = cli.teacher_checkpoint(parsed.dataset, self.teacher_model)
        for name, value in {**self.script_defaults, **METHODS[parsed.method].defaults(parsed.dataset)}.items():
            if getattr(parsed, name) is None:  # not given on the command line
                setattr(parsed, name, value)
        return parsed, rest


def dfad_parser(description, *, dataset, datasets, model, models, teacher_model, batch_size,
                test_batch_size, epochs, lr_S, lr_G, weight_decay, nz, step_size, epoch_itrs=50,
                channels_last=False):
    """The flags of a DFAD script, with that experiment's defaults (SPEC table)."""
    parser = DFADArgumentParser(description=description, formatter_class=cli.HelpFormatter)
    parser.teacher_model = teacher_model
    parser.script_defaults = {"lr_S": lr_S, "lr_G": lr_G, "optimizer_S": "sgd"}
    cli.add_common_args(parser, batch_size=batch_size, test_batch_size=test_batch_size, epochs=epochs,
                        weight_decay=weight_decay, dataset=dataset, datasets=datasets, step_size=step_size,
                        channels_last=channels_last)
    parser.add_argument("--epoch_itrs", type=cli.positive_int, default=epoch_itrs,
                        help="outer iterations (5 student steps + 1 generator step) per epoch")
    per_method = "; a method may bring its own, see --method"
    parser.add_argument("--lr_S", type=cli.positive_float, default=None,
                        help=f"student learning rate (default: {lr_S}{per_method})")
    parser.add_argument("--lr_G", type=cli.positive_float, default=None,
                        help=f"generator learning rate, Adam (default: {lr_G}{per_method})")
    parser.add_argument("--model", default=model, choices=models, help="student network")
    parser.add_argument("--nz", type=cli.positive_int, default=nz, help="size of the generator's noise vector")
    parser.add_argument("--ckpt", default=None, help="teacher checkpoint (default: "
                        f"{cli.teacher_checkpoint('<dataset>', teacher_model)})")
    parser.add_argument("--eval_ckpt", default=None,
                        help="with --test_only: the student to evaluate, e.g. the -labelfree.pt one "
                             "(default: the best student of this method)")
    add_method_args(parser, datasets)
    add_replay_args(parser)
    return parser


def add_method_args(parser, datasets):
    """--method and the flags of every method (the paper's Table 2 baselines and more)."""
    group = parser.add_argument_group(
        "method", "; ".join(f"{name}: {method.summary}" for name, method in METHODS.items())
        + ". A method other than dfad writes checkpoint/student/<dataset>-<model>-<method>*.pt, "
          "log/DFAD-<dataset>-<method>.* and results/DFAD-<dataset>-<method>/")
    group.add_argument("--method", choices=list(METHODS), default="dfad", help="how the student is trained")
    group.add_argument("--optimizer_S", choices=["sgd", "adam"], default=None,
                       help="the student's optimizer (default: sgd; a method may bring its own)")
    for method in METHODS.values():
        method.add_args(group, datasets)
    return parser
