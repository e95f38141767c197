"""What the two stages of run_mnist.sh do this time (run_mnist.sh calls this first).

    python -m utils.tools.mnist_pipeline <DFAD_mnist.py's arguments> [--resume | --restart]

prints two words: the teacher stage's action (``train``, ``resume`` or ``skip``) and the
DFAD stage's (``new`` or ``resume``). Before either stage runs, it refuses (exit 2) a run
without --resume or --restart that would replace the resume point of an unfinished
teacher or DFAD run, so that a plain rerun never retrains the teacher an interrupted
DFAD run distils from.

With --resume, the stage that was interrupted goes on and a finished one is skipped:
the teacher resumes when its ``-last.pt`` records an unfinished run, is skipped when
its checkpoint exists otherwise (its run finished, or it was put there), and is trained
when neither; the DFAD run resumes when the teacher was skipped and a DFAD ``-last.pt``
exists (a finished one is then not trained or logged again), and starts afresh otherwise.
"""
import argparse
import os

import DFAD_mnist
from utils.engine import loop, supervised
from utils.runtime import checkpoint, cli
from utils.runtime.errors import UserError

TEACHER_MODEL = "lenet5"


def unfinished(path):
    return checkpoint.unfinished_progress(path) if os.path.isfile(path) else None


def plan(args):
    """(teacher action, DFAD action) for DFAD_mnist.py's parsed ``args``."""
    teacher = cli.teacher_checkpoint(args.dataset, TEACHER_MODEL)
    teacher_last, dfad_last = supervised.last_checkpoint(teacher), loop.last_checkpoint(args)
    if args.restart:
        return "train", "new"
    if not args.resume:
        plain = argparse.Namespace(resume=False, restart=False)
        for path in (teacher_last, dfad_last):  # each refuses with its run's progress
            checkpoint.protect_resume_point(path, plain)
        return "train", "new"
    teacher_action = "resume" if unfinished(teacher_last) else "skip" if os.path.isfile(teacher) else "train"
    if teacher_action != "skip" and unfinished(dfad_last):
        raise UserError(f"{dfad_last} holds an unfinished DFAD run, but its teacher {teacher} is to be "
                        f"trained {'on' if teacher_action == 'resume' else 'again'} first, so the DFAD "
                        f"run could not go on with the teacher it started with. Put that teacher back "
                        f"(and remove {teacher_last}), or add --restart instead of --resume to start "
                        f"both stages afresh.")
    dfad_action = "resume" if teacher_action == "skip" and os.path.isfile(dfad_last) else "new"
    return teacher_action, dfad_action


def main(argv=None):
    parser = DFAD_mnist.get_args_parser()
    parser.prog = "DFAD_mnist.py"  # argument errors are about that script's flags
    print(*plan(parser.parse_args(argv)))


if __name__ == "__main__":
    cli.main_guard(main)
