"""Regenerate a run record from what it stores: ``python get_results.py --reproduce RECORD``.

A record (a DFAD run's, a grid cell's, a teacher's) keeps its arguments, its thread
counts and the environment it ran in. From them this module writes the commands that
regenerate it: the teacher's recipe first, when a committed teacher record has the
teacher's SHA-256, then the run, under the recorded thread counts. With ``--run`` it
runs them in a scratch folder and compares the new record with the old one epoch by
epoch. Bit for bit identity needs the same CPU or GPU model, thread counts, library
versions, code, teacher and data; the comparison names whichever of those differ.
"""
import functools
import glob
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile

from ..runtime.errors import UserError
from . import records
from .records import OUTSIDE, PROJECT

DFAD_SCRIPTS = {"mnist": "DFAD_mnist.py", "digits": "DFAD_mnist.py", "cifar10": "DFAD_cifar.py",
                "cifar100": "DFAD_cifar.py", "caltech101": "DFAD_caltech101.py",
                "camvid": "DFAD_camvid_deeplab.py", "nyuv2": "DFAD_nyu_deeplab.py"}
SEGMENTATION = {"camvid", "nyuv2"}
TEACHER_RECORDS = ("results/records/teachers/*.json", "log/teacher-*.json")
NOT_REPLAYED = {"help", "resume", "restart"}  # how a run was started, not what it learns
# Said even at their defaults: what a reader looks for, and channels_last, which defaults per device.
SAID_ALWAYS = ("dataset", "model", "teacher", "method", "epochs", "epoch_itrs", "batch_size", "seed", "channels_last")
# What a record's numbers depend on besides its arguments: (label, how to read it from a record).
CONDITIONS = (
    ("CPU or GPU model", lambda r: r.get("device")),
    ("intra-op threads", lambda r: r.get("environment", {}).get("threads")),
    ("inter-op threads", lambda r: r.get("environment", {}).get("interop_threads")),
    ("Python", lambda r: r.get("environment", {}).get("python")),
    ("torch", lambda r: r.get("environment", {}).get("torch")),
    ("torchvision", lambda r: r.get("environment", {}).get("torchvision")),
    ("code (git commit)", lambda r: r.get("commit")),
    ("teacher (sha256)", lambda r: r.get("teacher_sha256") if "teacher_file" not in r else None),
    ("data (sha256)", lambda r: [d.get("sha256") for d in r.get("data", [])] or None),
)


def is_teacher_record(record):
    return "teacher_file" in record


def script_of(record):
    dataset = record.get("args", {}).get("dataset")
    if is_teacher_record(record):
        return "train_teacher_seg.py" if dataset in SEGMENTATION else "train_teacher.py"
    if dataset not in DFAD_SCRIPTS:
        raise UserError(f"The record names no data set a DFAD script runs ({dataset!r}); it cannot be replayed.")
    return DFAD_SCRIPTS[dataset]


@functools.cache
def load_script(name):
    """The project script ``name`` as a module (for its ``get_args_parser``)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), os.path.join(PROJECT, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path):
    """The record at ``path``: a committed one (one JSON object) or a log's latest."""
    if not os.path.isfile(path):
        raise UserError(f"{path} is not a file; pass a run record: results/records/<grid>/<cell>.json, "
                        f"results/records/teachers/<teacher>.json or a log/*.json a run wrote.")
    with open(path) as f:
        try:
            found = json.load(f)
        except ValueError as e:
            raise UserError(f"{path} is not a run record ({e}).") from None
    if isinstance(found, list) and found and all(isinstance(r, dict) for r in found):
        if len(found) > 1:
            print(f"{path} holds {len(found)} runs: replaying the latest (run_id {found[-1].get('run_id')}).")
        found = found[-1]
    if not isinstance(found, dict) or not isinstance(found.get("args"), dict) or "history" not in found:
        raise UserError(f"{path} is not a run record: it holds no arguments and history to replay.")
    return found


def flags(script, saved):
    """The command-line flags that give ``script`` the arguments ``saved``; every flag the
    script has is checked by parsing them back. Values no flag can give are an error."""
    parser = load_script(script).get_args_parser()
    by_dest = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in NOT_REPLAYED:
            by_dest.setdefault(action.dest, []).append(action)
    said = [f for d in SAID_ALWAYS if d in by_dest and d in saved for f in _flag(by_dest[d], saved[d])]
    defaults = _parse(parser, said, script)  # with the method's and the data set's own defaults
    argv = said + [f for d, actions in by_dest.items() if d not in SAID_ALWAYS and d in saved
                   and saved[d] != defaults.get(d) for f in _flag(actions, saved[d])]
    parsed = _parse(parser, argv, script)
    wrong = [d for d in by_dest if d in saved and parsed.get(d) != saved[d]]
    if wrong:
        raise UserError(f"No command line of {script} gives the recorded {', '.join(wrong)} "
                        f"({', '.join(f'{d}={saved[d]!r}' for d in wrong)}): the record cannot be replayed as it is.")
    return argv


def _parse(parser, argv, script):
    try:
        return vars(parser.parse_args(argv))
    except SystemExit:  # argparse said why on stderr
        raise UserError(f"The recorded arguments are not a command line of {script} ({shlex.join(argv)}): "
                        f"the record cannot be replayed as it is.") from None


def _flag(actions, value):
    for action in actions:
        if action.nargs == 0:  # store_true / store_false / store_const
            if action.const == value:
                return [action.option_strings[0]]
            continue
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        return [action.option_strings[0], *map(str, values)]
    return []


def thread_env(record, threads=None):
    """The thread settings the run had (``threads`` overrides them): OMP_NUM_THREADS and
    MKL_NUM_THREADS, which set torch's intra-op pool. None where the record does not say."""
    threads = threads or record.get("environment", {}).get("threads")
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


def run_folder(record, path):
    """Where the recorded run ran, for the relative paths it was given: its recorded working
    folder inside the project, else the folder whose log/ holds ``path``, else the project."""
    cwd = record.get("environment", {}).get("cwd")
    if cwd and not cwd.startswith(OUTSIDE):
        return os.path.join(PROJECT, cwd)
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.dirname(folder) if os.path.basename(folder) == "log" else PROJECT


def resolved(path, fallback, base=PROJECT):
    """A recorded path as a path here: an absolute one was made relative to the project; a
    relative one is relative to ``base``; one outside the project is ``fallback``."""
    if path is None:
        return None
    if path.startswith(OUTSIDE):
        return fallback
    if os.path.isabs(path):
        return path
    given = os.path.join(base, path)  # as the run was given it, else as the project has it
    return given if os.path.exists(given) or base == PROJECT else os.path.join(PROJECT, path)


def teacher_records():
    found = []
    for pattern in TEACHER_RECORDS:
        for path in sorted(glob.glob(os.path.join(PROJECT, pattern))):
            with open(path) as f:
                data = json.load(f)
            found += [(path, r) for r in (data if isinstance(data, list) else [data]) if is_teacher_record(r)]
    return found


def teacher_recipe(sha256):
    """(path, record) of the committed teacher record whose teacher has ``sha256``, or None."""
    return next(((p, r) for p, r in teacher_records() if sha256 and r.get("teacher_sha256") == sha256), None)


class Step:
    """One command of a replay: the script, its flags, its thread settings."""

    def __init__(self, record, threads=None, data_root="data", ckpt=None, base=PROJECT):
        self.record, self.script = record, script_of(record)
        args = dict(record["args"])
        args["data_root"] = resolved(args.get("data_root"), data_root, base)
        if ckpt is not None:
            args["ckpt"] = ckpt
        elif args.get("ckpt"):
            args["ckpt"] = resolved(args["ckpt"], args["ckpt"], base)
        self.flags, self.env = flags(self.script, args), thread_env(record, threads)

    def shell(self):
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        relative = [os.path.relpath(f, PROJECT) if os.path.isabs(f) and f.startswith(PROJECT) else f
                    for f in self.flags]
        return " ".join(filter(None, [env, "python", self.script, shlex.join(relative)]))

    def run(self, folder, log):
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        with open(log, "ab") as output:
            code = subprocess.call([sys.executable, os.path.join(PROJECT, self.script), *self.flags, "--no_visdom"],
                                   cwd=folder, stdout=output, stderr=subprocess.STDOUT, env=env)
        if code != 0:
            with open(log, errors="replace") as f:
                tail = "".join(f.readlines()[-10:])
            raise UserError(f"The replay's {self.script} exited {code} (its output: {log}):\n{tail}")

    def new_record(self, folder):
        """The record the replayed run wrote in ``folder``."""
        if is_teacher_record(self.record):
            args = self.record["args"]
            path = os.path.join(folder, "log", f"teacher-{args['dataset']}-{args['model']}.json")
        else:
            path = sorted(glob.glob(os.path.join(folder, "log", "DFAD-*.json")))[-1]
        return records.read_run_records(path)[-1]


def plan(record, threads=None, data_root="data", base=PROJECT):
    """The steps regenerating ``record``: its teacher's recipe where a committed teacher
    record names the teacher's hash and no file here has it, then the run itself."""
    if is_teacher_record(record):
        return [Step(record, threads, data_root, base=base)], None
    teacher = resolved(record["args"].get("ckpt"), None, base)
    here = records.file_sha256(teacher) if teacher else None
    if here is not None and here == record.get("teacher_sha256"):
        return [Step(record, threads, data_root, ckpt=teacher, base=base)], f"the teacher is here: {teacher}"
    recipe = teacher_recipe(record.get("teacher_sha256"))
    if recipe is None:
        note = (f"no teacher with sha256 {record.get('teacher_sha256')} here and no teacher record names it "
                f"(results/records/teachers/): the run replays with {teacher or 'the default teacher'}")
        return [Step(record, threads, data_root, ckpt=teacher, base=base)], note
    path, teacher_record = recipe
    trained = os.path.join("checkpoint", "teacher", os.path.basename(teacher_record["teacher_file"]))
    return ([Step(teacher_record, None, data_root), Step(record, threads, data_root, ckpt=trained, base=base)],
            f"the teacher's recipe: {os.path.relpath(path, PROJECT)}")


def differences(old, new):
    """The recorded conditions that differ between two records, as lines."""
    return [f"{label}: recorded {get(old)}, here {get(new)}" for label, get in CONDITIONS
            if get(old) is not None and get(old) != get(new)]


def unrecorded(old):
    """The conditions the old record does not keep (a record made before records kept them)."""
    return [label for label, get in CONDITIONS if get(old) is None]


def compare(old, new):
    """Epoch by epoch: ``(identical, lines)``."""
    metric = old.get("metric", "metric")
    first = next((i for i, (a, b) in enumerate(zip(old["history"], new["history"])) if a != b), None)
    if first is None and len(old["history"]) == len(new["history"]):
        lines = [f"identical: every one of the {len(old['history'])} epochs' {metric}"
                 + (f", and the label-free L1 ({old['labelfree_l1']:.6f})" if old.get("labelfree_l1") is not None
                    and old.get("labelfree_l1") == new.get("labelfree_l1") else "")]
        if old.get("teacher_sha256") and is_teacher_record(old):
            same = old["teacher_sha256"] == new.get("teacher_sha256")
            lines.append(f"the saved teacher's sha256 {'is' if same else 'is not'} the recorded one")
        return True, lines
    if first is None:
        lines = [f"the replay has {len(new['history'])} epochs, the record {len(old['history'])}"]
    else:
        lines = [f"differs from epoch {first + 1}: {metric} {new['history'][first]:.6f} here, "
                 f"{old['history'][first]:.6f} recorded"]
    changed = differences(old, new)
    lines += [f"differing condition: {line}" for line in changed] or [
        "no recorded condition differs (CPU model, threads, versions, code, teacher, data): a nondeterministic "
        "kernel, or a condition the record does not keep"]
    if unrecorded(old):
        lines.append(f"not recorded, so not compared: {', '.join(unrecorded(old))}")
    return False, lines


def main(path, run=False, threads=None, data_root="data", scratch=None):
    record = read(path)
    steps, note = plan(record, threads, data_root, run_folder(record, path))
    print(f"# regenerates {path} (from {PROJECT}); {note}" if note else f"# regenerates {path} (from {PROJECT})")
    recorded = record.get("environment", {})
    if recorded.get("added_afterwards"):
        print(f"# {recorded['added_afterwards']}")
    for step in steps:
        print(step.shell())
    if not run:
        return None
    os.makedirs(os.path.join(PROJECT, "runs", "reproduce"), exist_ok=True)
    folder = scratch or tempfile.mkdtemp(prefix=os.path.basename(path).removesuffix(".json") + "-",
                                         dir=os.path.join(PROJECT, "runs", "reproduce"))
    os.makedirs(folder, exist_ok=True)
    log = os.path.join(folder, "output.log")
    print(f"running in {folder} (output: {log})", flush=True)
    for step in steps:
        step.run(folder, log)
    identical, lines = compare(record, steps[-1].new_record(folder))
    print("\n".join(lines))
    return identical
