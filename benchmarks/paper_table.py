"""Regenerate the paper's Table 2: a grid of data sets x methods x seeds, one DFAD script
run per cell (as subprocesses, as a user runs them), then results/paper_table.md.

    python benchmarks/paper_table.py --datasets digits mnist --methods dfad random dafl kd kd:digits \\
        --seeds 1 2 3 --epochs 20 --epoch_itrs 50 --batch_size 64 --jobs 2 --budget_minutes 600

A method is dfad, random, dafl, mad, kd (KD-ORI: the teacher's own training set) or
kd:<x>, KD on x: another data set the script loads (e.g. kd:digits for an MNIST teacher)
or a folder of images, given relatively or absolutely (its cells are named
kd-<folder name>-<hash of its absolute path>). Teachers must exist
(checkpoint/teacher/<dataset>-<model>.pt; train_teacher.py makes them).

Each cell runs in a folder of its own, runs/paper_table/<dataset>-<method>-e<epochs>x<itrs>
-b<batch>-seed<seed>/ (its checkpoints, log/ and output.log), so cells can run side by
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
import importlib.util
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.engine import methods  # noqa: E402
from utils.engine.methods import kd  # noqa: E402
from utils.reporting import records, table  # noqa: E402
from utils.runtime import atomic, cli  # noqa: E402
from utils.runtime.errors import UserError  # noqa: E402

SCRIPTS = {"mnist": "DFAD_mnist.py", "digits": "DFAD_mnist.py", "cifar10": "DFAD_cifar.py",
           "cifar100": "DFAD_cifar.py", "caltech101": "DFAD_caltech101.py",
           "camvid": "DFAD_camvid_deeplab.py", "nyuv2": "DFAD_nyu_deeplab.py"}
GRID_ARGS = ("seed", "epochs", "epoch_itrs", "batch_size", "method", "transfer_set")
RESULTS = [os.path.join("results", name) for name in ("paper_table.md", "curves.csv", "curves.png")]
LOG_LINES = 10  # of a failed cell's output.log, printed


@functools.lru_cache(maxsize=None)
def script_parser(dataset):
    spec = importlib.util.spec_from_file_location("script", os.path.join(ROOT, SCRIPTS[dataset]))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.get_args_parser()


def teacher_of(dataset):
    """The teacher checkpoint the data set's script reads by default (its --ckpt), absolute,
    since each cell runs in a folder of its own."""
    return os.path.abspath(script_parser(dataset).parse_args(["--dataset", dataset]).ckpt)


def script_datasets(dataset):
    """The data sets the script of ``dataset`` loads (its --dataset choices)."""
    return next(a.choices for a in script_parser(dataset)._actions if a.dest == "dataset")


def check_method(method):
    name, colon, transfer = method.partition(":")
    if name not in methods.METHODS or (colon and (name != "kd" or not transfer)):
        raise UserError(f"unknown method {method}: use {', '.join(methods.METHODS)}, or kd:<x> with x a data "
                        f"set of the script or a folder of images.")


def transfer_of(method, dataset):
    """kd:<x>'s transfer set as the cell gets it: a data set its script loads, or a folder
    made absolute (the cell runs in a folder of its own); None without one."""
    transfer = method.partition(":")[2]
    if not transfer:
        return None
    if transfer in script_datasets(dataset):
        return transfer
    if os.path.isdir(transfer):
        return os.path.abspath(transfer)
    raise UserError(f"--methods {method}: {transfer} is neither a data set {SCRIPTS[dataset]} loads "
                    f"({', '.join(script_datasets(dataset))}) nor a folder (looked in {os.getcwd()}). Name "
                    f"one of those data sets or an existing folder of images.")


def cell_args(args, dataset, method, seed):
    name, transfer = method.partition(":")[0], transfer_of(method, dataset)
    label = name if transfer is None else f"{name}-{kd.transfer_tag(transfer)}"
    return {"dataset": dataset, "method": name, "transfer_set": transfer, "seed": seed,
            "epochs": args.epochs, "epoch_itrs": args.epoch_itrs, "batch_size": args.batch_size,
            "folder": os.path.join(args.work_dir, f"{dataset}-{label}-e{args.epochs}x"
                                   f"{args.epoch_itrs}-b{args.batch_size}-seed{seed}")}


def cell_name(cell):
    return os.path.basename(cell["folder"])


def log_json(cell):
    name = f"DFAD-{cell['dataset']}{methods.METHODS[cell['method']].suffix()}"
    return os.path.join(cell["folder"], "log", name + ".json")


def matches(record, cell):
    saved = record.get("args", {})
    return saved.get("dataset") == cell["dataset"] and all(saved.get(k) == cell[k] for k in GRID_ARGS)


def done(cell):
    return [r for r in records.read_run_records(log_json(cell)) if matches(r, cell)]


def command(cell, args):
    """The cell's script run; made once its lock is held, as a -last.pt decides --resume."""
    flags = ["--dataset", cell["dataset"], "--method", cell["method"], "--seed", cell["seed"],
             "--epochs", cell["epochs"], "--epoch_itrs", cell["epoch_itrs"], "--batch_size",
             cell["batch_size"], "--data_root", os.path.abspath(args.data_root),
             "--ckpt", teacher_of(cell["dataset"]),
             "--no_visdom"]
    if cell["transfer_set"]:
        flags += ["--transfer_set", cell["transfer_set"]]
    if glob.glob(os.path.join(cell["folder"], "checkpoint", "student", "*-last.pt")):
        flags.append("--resume")  # stopped earlier: go on where it was
    return [sys.executable, os.path.join(ROOT, SCRIPTS[cell["dataset"]]), *map(str, flags), *args.extra]


def child_env(jobs):
    """Cells side by side share the cores: one thread pool each would oversubscribe them."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


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
        self.failed, self.busy, self.skipped = [], [], []

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
        print(f"started: {cell_name(cell)} (output in {cell['folder']}/output.log)", flush=True)

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


def hardware(pairs):
    """The devices the measured cells ran on (from their records), for the table's footnote."""
    counts = {}
    for _, record in pairs:
        name = record.get("device", "device not recorded")
        counts[name] = counts.get(name, 0) + 1
    return "; ".join(f"{name}: {n} cell{'s' if n > 1 else ''}" for name, n in sorted(counts.items()))


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(SCRIPTS),
                        help="data sets (default: digits)")
    parser.add_argument("--methods", nargs="+", default=["dfad", "random", "dafl", "kd"],
                        help="dfad, random, dafl, kd (KD-ORI) or kd:<x>, x a data set the script loads or a "
                             "folder of images (default: dfad random dafl kd)")
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
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="flags passed to every script run (last on the line)")
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


def keep_reason(cells, measured):
    """Why the results already written must stay (None: replace them)."""
    if cells.failed:
        return f"{len(cells.failed)} cell{'s' if len(cells.failed) > 1 else ''} failed"
    existing = measured_in(RESULTS[0])
    if measured < existing:
        return f"the new table holds {measured} measured cells, {RESULTS[0]} {existing}"
    return None


def write_results(by_method, text):
    """The table, the curves and their plot; a plot of other runs is not left behind."""
    records.atomic_write_text(RESULTS[0], text)
    lines = curves(by_method, RESULTS[1])
    written = RESULTS[:2]
    if len(lines) > 1:
        plot(by_method, RESULTS[2])
        written.append(RESULTS[2])
    elif os.path.isfile(RESULTS[2]):
        atomic.remove_quietly(RESULTS[2])
        print(f"removed {RESULTS[2]}: no curves to draw", flush=True)
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


def summary_note(args, grid, pairs, cells):
    not_run = [f"{len(cells.skipped)} not run (time budget or stop)"] if cells.skipped else []
    not_run += [f"{len(cells.busy)} running in another grid"] if cells.busy else []
    not_run += [f"{len(cells.failed)} failed"] if cells.failed else []
    return (f"\n{len(pairs)} of {len(grid)} cells measured (epochs {args.epochs} x {args.epoch_itrs} "
            f"outer iterations, batch {args.batch_size}, seeds {' '.join(map(str, args.seeds))}; "
            f"ran on {hardware(pairs) or '-'})" + "".join(f"; {n}" for n in not_run) + ".\n")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    for method in args.methods:
        check_method(method)
    grid = [cell_args(args, dataset, method, seed)
            for seed in args.seeds for dataset in args.datasets for method in args.methods]
    todo = [cell for cell in grid if not done(cell)]
    teachers = {cell["dataset"]: teacher_of(cell["dataset"]) for cell in todo}
    missing = {d: path for d, path in teachers.items() if not os.path.isfile(path)}
    if missing and args.budget_minutes != 0:
        raise UserError("no teacher for " + ", ".join(f"{d} ({p})" for d, p in missing.items())
                        + ": train it first, e.g. `python train_teacher.py --dataset <dataset> ...` "
                          "(see the README), or leave the data set out of --datasets.")

    cells = run_cells(todo, args)
    pairs = [(log_json(c), r) for c in grid for r in done(c)[-1:]]
    by_method = table.group(pairs, methods.row_label)
    text = "\n".join(table.markdown(by_method, methods.ROW_ORDER)) + "\n" + summary_note(args, grid, pairs, cells)
    print(text)
    reason = keep_reason(cells, len(pairs))
    if reason:
        print(f"Not replaced: {', '.join(RESULTS)} ({reason}); the table above is only printed.", flush=True)
    else:
        write_results(by_method, text)
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
