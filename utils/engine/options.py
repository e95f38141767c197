"""The flags of the DFAD scripts: the common ones with each experiment's defaults (SPEC
table), ``--method`` and every method's own flags (``methods/``)."""
import argparse

from ..runtime import cli, distributed, speed
from ..runtime.errors import UserError
from . import diagnostics, ema, graphs, labelfree, objective
from .methods import METHODS
from .replay import add_replay_args


def objective_defaults():
    """What a DFAD script does when neither the command line nor the method says otherwise:
    DFAD's game (the generator's objective is --adv alone, the L1; the student learns by L1)."""
    return {**{term: float(term == "adv") for term in objective.TERMS}, "adv_loss": "l1", "student_loss": "l1",
            "temperature": 1.0}


class DFADArgumentParser(argparse.ArgumentParser):
    """Completes the parsed arguments, so that a run's record holds every value it used:
    ``--ckpt`` from ``--dataset``, and the flags left unset whose default depends on
    ``--method`` and ``--dataset`` (e.g. DAFL's learning rates), and the memory format
    measured for this experiment on the device the run will use (``speed``), which
    argparse defaults cannot express."""

    teacher_model = None
    script_defaults = {}
    experiment = None  # its key in utils/runtime/speed.py's tables

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        if parsed.ckpt is None:
            parsed.ckpt = cli.teacher_checkpoint(parsed.dataset, getattr(parsed, "teacher", self.teacher_model))
        check_objective_flags(parsed)
        for name, value in {**self.script_defaults, **METHODS[parsed.method].defaults(parsed.dataset)}.items():
            if getattr(parsed, name) is None:  # not given on the command line
                setattr(parsed, name, value)
        speed.resolve(parsed, self.experiment)
        if parsed.cuda_graph:
            graphs.check_cuda_graph(parsed, METHODS, distributed.device_type(parsed.no_cuda),
                                    distributed.launched_world_size())
        return parsed, rest


def check_objective_flags(args):
    """The generator's weights, given to a method whose generator never steps, would be
    silently ignored: refused."""
    given = [f"--{term}" for term in [*objective.TERMS, "adv_loss"] if getattr(args, term) is not None]
    if given and not METHODS[args.method].trains_generator:
        raise UserError(f"{' '.join(given)} weigh the generator's objective, and --method {args.method} has no "
                        f"generator step. Leave them out, or use a method whose generator learns "
                        f"({', '.join(m for m, c in METHODS.items() if c.trains_generator)}).")


def help_of(parser, dest):
    """The argparse action of flag ``dest`` (to reword its help)."""
    return next(action for action in parser._actions if action.dest == dest)


def dfad_parser(description, *, experiment, dataset, datasets, model, models, teacher_model, batch_size,
                test_batch_size, epochs, lr_S, lr_G, weight_decay, nz, step_size, epoch_itrs=50, milestones=None,
                teachers=None):
    """The flags of a DFAD script, with that experiment's defaults (SPEC table);
    ``experiment`` names it in the speed tables (utils/runtime/speed.py); ``milestones``:
    the epochs --scheduler decays at instead of every --step_size (the script hands the
    same list to its Experiment)."""
    parser = DFADArgumentParser(description=description, formatter_class=cli.HelpFormatter)
    parser.teacher_model = teacher_model
    parser.experiment = experiment
    parser.script_defaults = {"lr_S": lr_S, "lr_G": lr_G, "optimizer_S": "sgd", "weight_decay": weight_decay,
                              **objective_defaults()}
    per_method = "; a method may bring its own, see --method"
    cli.add_common_args(parser, batch_size=batch_size, test_batch_size=test_batch_size, epochs=epochs,
                        weight_decay=None, dataset=dataset, datasets=datasets, step_size=step_size,
                        speed_experiment=experiment,
                        weight_decay_help=f"the student's weight decay (default: {weight_decay}{per_method})")
    if milestones:
        epochs_text = ", ".join(map(str, milestones))
        help_of(parser, "scheduler").help = f"decay the learning rates x0.1 at epochs {epochs_text}"
        help_of(parser, "step_size").help = (f"not read by this script: --scheduler decays at epochs {epochs_text}, "
                                             f"as the reference's does (kept for its commands)")
    parser.add_argument("--epoch_itrs", type=cli.positive_int, default=epoch_itrs,
                        help="outer iterations (5 student steps + 1 generator step) per epoch")
    parser.add_argument("--lr_S", type=cli.positive_float, default=None,
                        help=f"student learning rate (default: {lr_S}{per_method})")
    parser.add_argument("--lr_G", type=cli.positive_float, default=None,
                        help=f"generator learning rate, Adam (default: {lr_G}{per_method})")
    parser.add_argument("--model", default=model, choices=models, help="student network")
    if teachers:
        parser.add_argument("--teacher", default=teacher_model, choices=teachers,
                            help="teacher network (its weights: --ckpt)")
    parser.add_argument("--nz", type=cli.positive_int, default=nz, help="size of the generator's noise vector")
    parser.add_argument("--ckpt", default=None, help="teacher checkpoint: a state_dict, or a dict holding one under "
                        "'state_dict' (CMI's published teachers) (default: "
                        f"{cli.teacher_checkpoint('<dataset>', '<teacher>' if teachers else teacher_model)})")
    parser.add_argument("--eval_ckpt", default=None,
                        help="with --test_only: the student to evaluate, e.g. the -labelfree.pt one "
                             "(default: the best student of this method)")
    parser.add_argument("--student_ema", type=cli.momentum_value, nargs="?", const=ema.RECOMMENDED_DECAY,
                        default=0.0, metavar="DECAY",
                        help="evaluate, checkpoint (best, label-free) and report an exponential moving "
                             "average of the student's weights, while the raw student plays the game; "
                             "updated after every student step with this decay, bias-corrected so that the "
                             "initial weights weigh nothing; BatchNorm running means and variances are "
                             "averaged with the same decay. A bare --student_ema means "
                             f"{ema.RECOMMENDED_DECAY} (about the last 1,000 student steps: 4 epochs of "
                             "50 rounds); 0: off")
    parser.add_argument("--labelfree_candidates", type=cli.positive_int, default=labelfree.CANDIDATES,
                        metavar="K",
                        help="the label-free choice: the students of the last K epochs are kept, one file "
                             "each beside -last.pt (<...>-candidates/, K times the student's size: 45 MB a "
                             "candidate for CIFAR's ResNet-18), and at the end of the run the one whose logits "
                             "are closest to the teacher's (mean L1) on one fixed pool of images, the "
                             f"fixed-noise samples of the last {diagnostics.POOL_SNAPSHOTS} epochs' generators "
                             "(kd: its fixed probe), is saved as -labelfree.pt")
    add_method_args(parser, datasets)
    add_objective_args(parser)
    add_replay_args(parser)
    return parser


def add_objective_args(parser):
    """The generator's objective (a weight per term of objective.TERMS) and the student's loss."""
    per_method = "; a method may bring its own, see --method"
    group = parser.add_argument_group(
        "objectives", "The generator minimises sum_k weight_k x term_k, all terms read from one forward pass of "
                      "the teacher (and of the student, for adv) on the generated batch; DFAD's objective is "
                      "--adv 1 alone. The student minimises --student_loss between its logits and the teacher's.")
    aliases = {"oh": ["--dafl_oh"], "balance": ["--dafl_ie"], "act": ["--dafl_a"]}  # DAFL's own names
    for term, spec in objective.TERMS.items():
        group.add_argument(f"--{term}", *aliases.get(term, []), dest=term, type=cli.non_negative_float,
                           default=None, metavar="WEIGHT",
                           help=f"weight of {spec.help} (default: {objective_defaults()[term]:g}{per_method})")
    group.add_argument("--adv_loss", choices=list(objective.ADVERSARIAL_LOSSES), default=None,
                       help="the adversarial term's loss: " + "; ".join(
                           f"{name}: {text}" for name, text in objective.ADVERSARIAL_LOSSES.items())
                       + f" (default: l1{per_method})")
    group.add_argument("--student_loss", "--kd_loss", dest="student_loss", choices=["l1", "kl"], default=None,
                       help=f"l1: the mean absolute difference of the logits (DFAD); kl: Hinton's KD, T^2 x "
                            f"KL(softmax(t/T) || softmax(s/T)) with T = --temperature (default: l1{per_method})")
    group.add_argument("--temperature", type=cli.positive_float, default=None,
                       help=f"T of --student_loss kl (default: 1; kd: 4{per_method})")


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
