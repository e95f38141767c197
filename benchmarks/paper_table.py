"""Regenerate the paper's Table 2: a grid of data sets x methods x seeds, one DFAD script
run per cell (as subprocesses, as a user runs them), then results/paper_table.md.

    python benchmarks/paper_table.py --datasets digits mnist --methods dfad random dafl kd kd:digits \\
        --seeds 1 2 3 --epochs 20 --epoch_itrs 50 --batch_size 64 --jobs 2 --budget_minutes 600

A method is dfad, random, dafl, mad, kd (KD-ORI: the teacher's own training set) or
kd:<x>, KD on x: another data set the script loads (e.g. kd:digits for an MNIST teacher)
or a folder of images, given relatively or absolutely (its cells are named
kd-<folder name>-<hash of its absolute path>); any of them may be followed by options of
the round, +ema (the bare --student_ema flag) and +replay (the bare --replay flag), each a
row of its own: dfad+ema, dfad+replay, dfad+ema+replay (cells named dfad_ema_replay).
Teachers must exist (checkpoint/teacher/<dataset>-<model>.pt; train_teacher.py makes them).

--records DIR (e.g. results/records/digits) keeps the grid's records to commit: each
measured cell's run record is copied to DIR/<cell>.json (a small JSON file: scores,
per-epoch history, arguments, device, code commit, teacher sha256), a cell whose record
is there counts as measured even without its folder, and the table, curves.csv and
curves.png are written in DIR and hold every record there. So `--budget_minutes 0
--records DIR` rebuilds the table from the committed records alone.

Each cell runs in a folder of its own, runs/paper_table/<dataset>-<method>-e<epochs>x<itrs>
-b<batch>-seed<seed>[-with-<flags>]/ (its checkpoints, log/ and output.log; the end names
the --extra flags that change what it learns, e.g. -with-scheduler-step_size7, so a grid
with other flags never counts these cells as its own), so cells can run side by
side (--jobs) and never overwrite the checkpoints of your own runs. A running cell holds
the lock of its folder (cell.lock): a second grid started at the same time skips it.
Resumable: a cell whose run record exists is not run again, and one that was stopped
goes on from its -last.pt. Cells run seed by seed, so a budget-limited grid has every
method's first seed first. The wall-time budget stops starting new cells once spent;
SIGINT/SIGTERM stop the running cells (each saves its -last.pt).

Writes results/paper_table.md, results/curves.csv and results/curves.png (the test metric
against outer iterations, per method, mean with the min-max band over seeds), unless a
cell failed or the new table would hold fewer measured cells than the one there: then
the table is only printed and the files are kept. A failed cell fails the grid (exit 2,
its name and the last lines of its output.log printed).
"""
import argparse
import collections
import fcntl
import functools
import glob
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.engine import methods, objective  # noqa: E402
from utils.engine.methods import kd  # noqa: E402
from utils.reporting import records, reproduce, table  # noqa: E402
from utils.runtime import atomic, cli  # noqa: E402
from utils.runtime.errors import UserError  # noqa: E402

SCRIPTS = reproduce.DFAD_SCRIPTS
GRID_ARGS = ("seed", "epochs", "epoch_itrs", "batch_size", "method", "transfer_set")
# Flags of the scripts that --extra may set without changing what a cell learns: a grid
# rerun with other values finds its cells measured. Any other flag names the cell's folder.
RUNTIME_FLAGS = {"num_workers", "no_cuda", "visdom_port", "no_visdom", "download", "log_interval", "verbose",
                 "deterministic"}
# Flags the grid sets itself for each cell (or that would make a cell something other than a run).
GRID_FLAGS = {"dataset", "method", "seed", "epochs", "epoch_itrs", "batch_size", "data_root", "ckpt",
              "transfer_set", "student_ema", "replay", "resume", "restart", "test_only", "eval_ckpt"}
TAG_LENGTH = 48  # longer --extra tags become a hash
RESULTS = [os.path.join("results", name) for name in ("paper_table.md", "curves.csv", "curves.png")]
LOG_LINES = 10  # of a failed cell's output.log, printed


def script_module(dataset):
    return reproduce.load_script(SCRIPTS[dataset])


def script_parser(dataset):
    return script_module(dataset).get_args_parser()


def teacher_of(dataset, extra=()):
    """The teacher checkpoint the data set's script reads by default (its --ckpt; with
    --extra --teacher T, T's), absolute, since each cell runs in a folder of its own."""
    return os.path.abspath(script_parser(dataset).parse_args(["--dataset", dataset, *extra]).ckpt)


@functools.lru_cache(maxsize=None)
def refusal(dataset, method, extra):
    """Why the cell's script would refuse to run ``method`` (its weighting of the generator's
    objective, with --extra, asks what the teacher cannot give: bn of LeNet-5), or None."""
    try:
        parsed = script_parser(dataset).parse_args(["--dataset", dataset, "--method", method, *extra])
    except UserError as e:
        return str(e)
    if not methods.METHODS[method].trains_generator:
        return None
    teacher = script_module(dataset).networks(parsed)[0]
    return objective.refusal(parsed, teacher, methods.METHODS[method].defaults(dataset))


def script_datasets(dataset):
    """The data sets the script of ``dataset`` loads (its --dataset choices)."""
    return next(a.choices for a in script_parser(dataset)._actions if a.dest == "dataset")


def split_method(method):
    """A --methods entry as (method[:x], its options in ``methods.VARIANTS`` order, once
    each): dfad+replay+ema is ('dfad', ['ema', 'replay'])."""
    base, options = method, set()
    while True:
        head, plus, option = base.rpartition("+")
        if not plus or option not in methods.VARIANTS:
            return base, [o for o in methods.VARIANTS if o in options]
        base = head
        options.add(option)


def check_method(method):
    name, colon, transfer = split_method(method)[0].partition(":")
    if name not in methods.METHODS or (colon and (name != "kd" or not transfer)):
        raise UserError(f"unknown method {method}: use {', '.join(methods.METHODS)}, or kd:<x> with x a data "
                        f"set of the script or a folder of images, each optionally followed by "
                        f"{' '.join('+' + o for o in methods.VARIANTS)} (e.g. dfad+ema).")


def check_options(method, dataset):
    """The script of ``dataset`` must have the flag of each option of ``method``."""
    known = {flag for action in script_parser(dataset)._actions for flag in action.option_strings}
    for option in split_method(method)[1]:
        flag = "--" + methods.VARIANTS[option]
        if flag not in known:
            raise UserError(f"--methods {method}: {SCRIPTS[dataset]} has no {flag} flag, which +{option} "
                            f"turns on; leave +{option} out or update the project.")


def transfer_of(method, dataset):
    """kd:<x>'s transfer set as the cell gets it: a data set its script loads, or a folder
    made absolute (the cell runs in a folder of its own); None without one."""
    transfer = split_method(method)[0].partition(":")[2]
    if not transfer:
        return None
    if transfer in script_datasets(dataset):
        return transfer
    if os.path.isdir(transfer):
        return os.path.abspath(transfer)
    raise UserError(f"--methods {method}: {transfer} is neither a data set {SCRIPTS[dataset]} loads "
                    f"({', '.join(script_datasets(dataset))}) nor a folder (looked in {os.getcwd()}). Name "
                    f"one of those data sets or an existing folder of images.")


@functools.lru_cache(maxsize=None)
def extra_settings(dataset, extra):
    """What --extra (a tuple) changes in the script of ``dataset`` that changes what a cell
    learns, as {flag: value}, parsed once per data set; a flag the script lacks or the grid
    sets itself is refused here, before any cell runs, not by every cell."""
    parser = script_parser(dataset)
    extra = list(extra)
    try:
        given, defaults = vars(parser.parse_args(extra)), vars(parser.parse_args([]))
    except SystemExit:  # argparse printed what was wrong
        raise UserError(f"--extra {' '.join(extra)}: not flags {SCRIPTS[dataset]} takes (its message is above); "
                        f"see `python {SCRIPTS[dataset]} --help`.") from None
    changed = {dest: value for dest, value in given.items() if value != defaults[dest]}
    clashing = sorted(dest for dest in changed if dest in GRID_FLAGS)
    if clashing:
        raise UserError(f"--extra sets {', '.join('--' + d for d in clashing)}, which the grid sets for each cell: "
                        f"use the grid's own flags (--seeds, --epochs, --epoch_itrs, --batch_size, --data_root, "
                        f"--methods with +ema or +replay) and leave them out of --extra.")
    return {dest: value for dest, value in sorted(changed.items()) if dest not in RUNTIME_FLAGS}


def extra_tag(settings):
    """The end of a cell's folder name for --extra's settings: 'with-scheduler-step_size7',
    or a hash when long; '' without settings (runtime flags alone keep the cell's name)."""
    if not settings:
        return ""
    tag = "-".join(dest if value is True else f"{dest}{value}" for dest, value in settings.items())
    tag = re.sub(r"[^A-Za-z0-9._-]", "_", tag)
    if len(tag) > TAG_LENGTH:
        tag = hashlib.sha1(repr(sorted(settings.items())).encode()).hexdigest()[:8]
    return "-with-" + tag


def cell_args(args, dataset, method, seed):
    (base, options), transfer = split_method(method), transfer_of(method, dataset)
    name = base.partition(":")[0]
    label = (name if transfer is None else f"{name}-{kd.transfer_tag(transfer)}") + "".join(f"_{o}" for o in options)
    return {"dataset": dataset, "method": name, "transfer_set": transfer, "options": options, "seed": seed,
            "epochs": args.epochs, "epoch_itrs": args.epoch_itrs, "batch_size": args.batch_size,
            "folder": os.path.join(args.work_dir, f"{dataset}-{label}-e{args.epochs}x{args.epoch_itrs}"
                                   f"-b{args.batch_size}-seed{seed}{extra_tag(extra_settings(dataset, tuple(args.extra)))}")}


def cell_name(cell):
    return os.path.basename(cell["folder"])


def log_json(cell):
    name = f"DFAD-{cell['dataset']}{methods.METHODS[cell['method']].suffix()}"
    return os.path.join(cell["folder"], "log", name + ".json")


def matches(record, cell):
    saved = record.get("args", {})
    return (saved.get("dataset") == cell["dataset"]
            and all(saved.get(k) == records.portable(cell[k]) for k in GRID_ARGS)
            and methods.variant_options(saved) == cell["options"])


def committed(cell, records_dir):
    """Where --records keeps the cell's record."""
    return os.path.join(records_dir, cell_name(cell) + ".json")


def logged(cell):
    """The cell's records in its own log (the last one is the latest)."""
    return [r for r in records.read_run_records(log_json(cell)) if matches(r, cell)]


def done(cell, records_dir=None):
    """The cell's records: in its log, else the one committed in ``records_dir``."""
    found = logged(cell)
    if not found and records_dir and os.path.isfile(committed(cell, records_dir)):
        found = [r for r in [records.read_run_record(committed(cell, records_dir))] if matches(r, cell)]
    return found


def export(grid, records_dir):
    """Copy each measured cell's latest logged record to ``records_dir``/<cell>.json."""
    written = [cell_name(c) for c in grid for r in logged(c)[-1:]
               if records.write_run_record(committed(c, records_dir), r)]
    if written:
        print(f"records written to {records_dir}/: {', '.join(written)}", flush=True)


def command(cell, args):
    """The cell's script run; made once its lock is held, as a -last.pt decides --resume."""
    flags = ["--dataset", cell["dataset"], "--method", cell["method"], "--seed", cell["seed"],
             "--epochs", cell["epochs"], "--epoch_itrs", cell["epoch_itrs"], "--batch_size",
             cell["batch_size"], "--data_root", os.path.abspath(args.data_root),
             "--ckpt", teacher_of(cell["dataset"], tuple(args.extra)),
             "--no_visdom"]
    if cell["transfer_set"]:
        flags += ["--transfer_set", cell["transfer_set"]]
    flags += ["--" + methods.VARIANTS[option] for option in cell["options"]]  # bare: the option's default
    if glob.glob(os.path.join(cell["folder"], "checkpoint", "student", "*-last.pt")):
        flags.append("--resume")  # stopped earlier: go on where it was
    return [sys.executable, os.path.join(ROOT, SCRIPTS[cell["dataset"]]), *map(str, flags), *args.extra]


def cell_threads(jobs):
    """The OMP_NUM_THREADS each cell gets: the grid's own where set, else cores / jobs with
    cells side by side (one full thread pool each would oversubscribe the cores), else None
    (torch's default). Results depend on it (the game amplifies a change of summation
    order): every cell's record stores the count its run had."""
    if os.environ.get("OMP_NUM_THREADS"):
        return os.environ["OMP_NUM_THREADS"]
    return str(max(1, (os.cpu_count() or 1) // jobs)) if jobs > 1 else None


def describe_threads(jobs):
    threads = cell_threads(jobs)
    return f"{threads} threads" if threads else f"{torch.get_num_threads()} threads, torch's default"


def child_env(jobs):
    threads = cell_threads(jobs)
    return dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", **({"OMP_NUM_THREADS": threads} if threads else {}))


def lock_cell(folder):
    """A descriptor holding the exclusive lock of ``folder``/cell.lock, or None when another
    grid holds it. The cell's process inherits it, so the lock lasts as long as the cell
    runs, even should this grid die first."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, "cell.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Cells:
    """Runs cells as subprocesses, at most ``args.jobs`` at once, each in its own folder and
    session (a Ctrl-C reaches them once, forwarded by :meth:`stop`, not twice), each
    holding its folder's lock. Collects the cells that failed and those another grid runs."""

    def __init__(self, args):
        self.args, self.running, self.stopped_by = args, {}, None
        self.failed, self.busy, self.skipped, self.unrunnable = [], [], [], []

    def start(self, cell):
        lock = lock_cell(cell["folder"])
        if lock is None:
            self.busy.append(cell)
            print(f"skipped: {cell_name(cell)}: another grid is running it "
                  f"({cell['folder']}/cell.lock is locked)", flush=True)
            return
        if done(cell):  # finished by another grid since this one looked
            os.close(lock)
            print(f"finished by another grid: {cell_name(cell)}", flush=True)
            return
        with open(os.path.join(cell["folder"], "output.log"), "ab") as output:
            process = subprocess.Popen(command(cell, self.args), cwd=cell["folder"], stdout=output,
                                       stderr=subprocess.STDOUT, env=child_env(self.args.jobs),
                                       start_new_session=True, pass_fds=(lock,))
        self.running[process] = (cell, lock)
        print(f"started: {cell_name(cell)} ({describe_threads(self.args.jobs)}; output in "
              f"{cell['folder']}/output.log)", flush=True)

    def wait_below(self, count):
        """Collect finished cells until fewer than ``count`` run (``jobs``: a free slot; 1: all done)."""
        while True:
            for process, (cell, lock) in list(self.running.items()):
                if process.poll() is not None:
                    del self.running[process]
                    os.close(lock)
                    self.collect(cell, process.returncode)
            if len(self.running) < count:
                return
            time.sleep(0.2)

    def collect(self, cell, code):
        best = [r.get("best") for r in done(cell)[-1:]]
        stopped = self.stopped_by is not None and code in (128 + self.stopped_by, -self.stopped_by)
        if not best and not stopped:  # a cell that exits 0 without its record failed too
            self.failed.append((cell, code))
        print(f"finished: {cell_name(cell)} exit {code}"
              + (f", best {best[0]:.4f}" if best else f" (see {cell['folder']}/output.log)"), flush=True)

    def stop(self, signum, frame):
        if self.stopped_by is None:
            print(f"\n{signal.Signals(signum).name} received: stopping the running cells "
                  f"(each saves its -last.pt); run the same command again to go on.", flush=True)
            for process in self.running:
                process.send_signal(signum)
        self.stopped_by = signum


def curves(cells, path):
    """Test metric after every epoch, x in outer iterations: mean, min, max over seeds."""
    lines = ["dataset,method,iterations,mean,min,max,runs"]
    for (dataset, label), rs in sorted(cells.items()):
        histories = [r["history"] for r in rs if r.get("history")]
        if not histories:
            continue
        itrs = rs[0].get("args", {}).get("epoch_itrs", 1)
        for e in range(min(len(h) for h in histories)):
            values = [h[e] for h in histories]
            lines.append(f"{dataset},{label},{(e + 1) * itrs},{sum(values) / len(values):.6f},"
                         f"{min(values):.6f},{max(values):.6f},{len(values)}")
    records.atomic_write_text(path, "\n".join(lines) + "\n")
    return lines


def plot(cells, path):
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    datasets = sorted({d for d, _ in cells})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for (d, label), rs in sorted(cells.items()):
            histories = [r["history"] for r in rs if d == dataset and r.get("history")]
            if not histories:
                continue
            n = min(len(h) for h in histories)
            itrs = rs[0].get("args", {}).get("epoch_itrs", 1)
            x = [(e + 1) * itrs for e in range(n)]
            cols = [[h[e] for h in histories] for e in range(n)]
            ax.plot(x, [sum(c) / len(c) for c in cols], label=label)
            ax.fill_between(x, [min(c) for c in cols], [max(c) for c in cols], alpha=0.2)
        ax.set_title(dataset)
        ax.set_xlabel("outer iterations")
        ax.set_ylabel("test metric")
        ax.legend()
    fig.tight_layout()
    atomic.write_bytes(path, lambda f: fig.savefig(f, format="png"), suffix=".png")
    plt.close(fig)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(SCRIPTS),
                        help="data sets (default: digits)")
    parser.add_argument("--methods", nargs="+", default=["dfad", "random", "dafl", "kd"],
                        help=f"{', '.join(methods.METHODS)} (kd: KD-ORI) or kd:<x>, x a data set the script "
                             f"loads or a folder of images, each optionally followed by "
                             f"{' '.join('+' + o for o in methods.VARIANTS)} (e.g. dfad+ema: a row of its own) "
                             f"(default: dfad random dafl kd)")
    parser.add_argument("--seeds", nargs="+", type=cli.seed_value, default=[1, 2, 3], help="default: 1 2 3")
    parser.add_argument("--epochs", type=cli.positive_int, default=20, help="default: 20")
    parser.add_argument("--epoch_itrs", type=cli.positive_int, default=50, help="default: 50")
    parser.add_argument("--batch_size", type=cli.positive_int, default=64, help="default: 64")
    parser.add_argument("--jobs", type=cli.positive_int, default=1,
                        help="cells run at once (default: 1); each gets cores/jobs threads")
    parser.add_argument("--data_root", default="data", help="the scripts' --data_root (default: data)")
    parser.add_argument("--work_dir", default=os.path.join("runs", "paper_table"),
                        help="where each cell's folder goes (default: runs/paper_table)")
    parser.add_argument("--budget_minutes", type=cli.non_negative_float, default=None,
                        help="start no new cell after this much wall time (default: no limit; "
                             "0: only write the table from the cells that exist)")
    parser.add_argument("--records", metavar="DIR", default=None,
                        help="copy each measured cell's run record to DIR/<cell>.json (to commit, e.g. "
                             "results/records/digits), count a cell recorded there as measured, and write "
                             "the table and curves of every record in DIR into DIR (default: no copies; "
                             "the table of this grid's cells in results/)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="flags passed to every script run (last on the line); those that change what a "
                             "cell learns (all but --num_workers, --no_cuda, --visdom_port, --no_visdom, "
                             "--download, --log_interval, --verbose, --deterministic) name its folder: "
                             "--extra --scheduler --step_size 7 makes <cell>-with-scheduler-step_size7")
    return parser


def run_cells(todo, args):
    """Start each cell of ``todo`` as a slot frees, within the budget and until a stop."""
    started, cells = time.time(), Cells(args)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, cells.stop)
    for cell in todo:
        cells.wait_below(args.jobs)
        out_of_time = args.budget_minutes is not None and time.time() - started >= 60 * args.budget_minutes
        if out_of_time or cells.stopped_by:
            cells.skipped.append(cell)
            continue
        cells.start(cell)
    cells.wait_below(1)
    return cells


def measured_in(path):
    """How many measured cells the table at ``path`` holds: the sum of its runs column
    (0 when there is none)."""
    try:
        with open(path) as f:
            rows = [line.split("|") for line in f if line.startswith("| ")]
    except (OSError, UnicodeDecodeError):
        return 0
    return sum(int(row[3]) for row in rows if len(row) > 4 and row[3].strip().isdigit())


def results_of(args):
    """Where the table, curves.csv and curves.png go: beside the records with --records."""
    return [os.path.join(args.records, os.path.basename(p)) for p in RESULTS] if args.records else RESULTS


def keep_reason(cells, measured, results=RESULTS):
    """Why the results already written must stay (None: replace them)."""
    if cells.failed:
        return f"{len(cells.failed)} cell{'s' if len(cells.failed) > 1 else ''} failed"
    existing = measured_in(results[0])
    if measured < existing:
        return f"the new table holds {measured} measured cells, {results[0]} {existing}"
    return None


def write_results(by_method, text, results=RESULTS):
    """The table, the curves and their plot; a plot of other runs is not left behind."""
    records.atomic_write_text(results[0], text)
    lines = curves(by_method, results[1])
    written = results[:2]
    if len(lines) > 1:
        plot(by_method, results[2])
        written.append(results[2])
    elif os.path.isfile(results[2]):
        atomic.remove_quietly(results[2])
        print(f"removed {results[2]}: no curves to draw", flush=True)
    print("wrote " + ", ".join(written), flush=True)


def tail(path, count=LOG_LINES):
    try:
        with open(path, errors="replace") as f:
            return list(collections.deque(f, maxlen=count))
    except OSError as e:
        return [f"({path} cannot be read: {e.strerror})\n"]


def failure_report(failed):
    """Each failed cell, its exit status and the last lines of its output.log."""
    parts = []
    for cell, code in failed:
        log = os.path.join(cell["folder"], "output.log")
        parts.append(f"failed: {cell_name(cell)} (exit {code}); the last lines of {log}:\n"
                     + "".join(f"    {line}" for line in tail(log)).rstrip("\n"))
    return "\n".join(parts)


def summary_note(args, grid, measured, pairs, cells):
    not_run = [f"{len(cells.skipped)} not run (time budget or stop)"] if cells.skipped else []
    not_run += [f"{len(cells.busy)} running in another grid"] if cells.busy else []
    not_run += [f"{len(cells.failed)} failed"] if cells.failed else []
    not_run += [f"{len(cells.unrunnable)} skipped, their method asks what the teacher cannot give"] \
        if cells.unrunnable else []
    held = f"; the table holds the {len(pairs)} records in {args.records}" if args.records else ""
    return (f"\n{len(measured)} of {len(grid)} cells measured (epochs {args.epochs} x {args.epoch_itrs} "
            f"outer iterations, batch {args.batch_size}, seeds {' '.join(map(str, args.seeds))})"
            + "".join(f"; {n}" for n in not_run) + held + ".\n")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    for method in args.methods:
        check_method(method)
    cells_by_folder = {}  # dfad+replay+ema and dfad+ema+replay are one cell
    for seed in args.seeds:
        for dataset in args.datasets:
            for method in args.methods:
                cell = cell_args(args, dataset, method, seed)
                cells_by_folder.setdefault(cell["folder"], (cell, method))
    grid, unrunnable = [], []
    for cell, _ in cells_by_folder.values():
        reason = refusal(cell["dataset"], cell["method"], tuple(args.extra))
        if reason:  # its method weighs what this teacher cannot give: skipped, not failed
            print(f"skipped: {cell_name(cell)} cannot run: {reason}", flush=True)
        (unrunnable if reason else grid).append(cell)
    todo = [cell for cell in grid if not done(cell, args.records)]
    teachers = {cell["dataset"]: teacher_of(cell["dataset"], tuple(args.extra)) for cell in todo}
    missing = {d: path for d, path in teachers.items() if not os.path.isfile(path)}
    if args.budget_minutes != 0:
        if missing:
            raise UserError("no teacher for " + ", ".join(f"{d} ({p})" for d, p in missing.items())
                            + ": train it first, e.g. `python train_teacher.py --dataset <dataset> ...` "
                              "(the README's Experiments), or leave the data set out of --datasets.")
        for cell, method in cells_by_folder.values():
            if cell in todo:
                check_options(method, cell["dataset"])

    cells = run_cells(todo, args)
    cells.unrunnable = unrunnable
    if args.records:
        export(grid, args.records)
    measured = [cell for cell in grid if done(cell, args.records)]
    pairs = (table.records_in(args.records) if args.records
             else [(log_json(c), r) for c in measured for r in done(c)[-1:]])
    by_method = table.group(pairs, methods.row_label)
    text = "\n".join(table.report(pairs, methods)) + "\n" + summary_note(args, grid, measured, pairs, cells)
    print(text)
    results = results_of(args)
    reason = keep_reason(cells, len(pairs), results)
    if reason:
        print(f"Not replaced: {', '.join(results)} ({reason}); the table above is only printed.", flush=True)
    else:
        write_results(by_method, text, results)
    if cells.failed:
        print(failure_report(cells.failed), file=sys.stderr, flush=True)
        if not cells.stopped_by:
            raise UserError(f"{len(cells.failed)} of {len(grid)} cells failed: "
                            f"{', '.join(cell_name(c) for c, _ in cells.failed)} (their last lines above). Fix "
                            f"the cause and run the same command again: measured cells are kept, failed ones "
                            f"run again.")
    if cells.stopped_by:
        sys.exit(128 + cells.stopped_by)
    return by_method


if __name__ == "__main__":
    cli.main_guard(main)
