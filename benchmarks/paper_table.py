"""Regenerate the paper's Table 2: a grid of data sets x methods x seeds, one DFAD script
run per cell (as subprocesses, as a user runs them), then results/paper_table.md.

    python benchmarks/paper_table.py --datasets digits mnist --methods dfad random dafl kd kd:digits \\
        --seeds 1 2 3 --epochs 20 --epoch_itrs 50 --batch_size 64 --budget_minutes 600

A method is dfad, random, dafl, kd (KD-ORI: the teacher's own training set) or
kd:<data set> (KD on another set the script loads, e.g. kd:digits for an MNIST teacher).
Teachers must exist (checkpoint/teacher/<dataset>-<model>.pt; train_teacher.py makes
them). Resumable: a cell whose run record already exists in log/ is not run again. The
wall-time budget stops starting new cells once spent; the table is written from what exists.
Also writes results/curves.csv (test metric against outer iterations, per method: mean,
min and max over seeds) and results/curves.png when matplotlib is installed.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.reporting import records, table  # noqa: E402
from utils.runtime import cli  # noqa: E402
from utils.runtime.errors import UserError  # noqa: E402

SCRIPTS = {"mnist": "DFAD_mnist.py", "digits": "DFAD_mnist.py", "cifar10": "DFAD_cifar.py",
           "cifar100": "DFAD_cifar.py", "caltech101": "DFAD_caltech101.py",
           "camvid": "DFAD_camvid_deeplab.py", "nyuv2": "DFAD_nyu_deeplab.py"}
GRID_ARGS = ("seed", "epochs", "epoch_itrs", "batch_size", "method", "transfer_set")


def cell_args(args, dataset, method, seed):
    name, _, transfer = method.partition(":")
    return {"dataset": dataset, "method": name, "transfer_set": transfer or None, "seed": seed,
            "epochs": args.epochs, "epoch_itrs": args.epoch_itrs, "batch_size": args.batch_size}


def log_json(cell):
    return os.path.join("log", f"DFAD-{cell['dataset']}" + ("" if cell["method"] == "dfad" else f"-{cell['method']}")
                        + ".json")


def matches(record, cell):
    saved = record.get("args", {})
    return saved.get("dataset") == cell["dataset"] and all(saved.get(k) == cell[k] for k in GRID_ARGS)


def done(cell):
    return [r for r in records.read_run_records(log_json(cell)) if matches(r, cell)]


def command(cell, extra):
    flags = ["--dataset", cell["dataset"], "--method", cell["method"], "--seed", cell["seed"],
             "--epochs", cell["epochs"], "--epoch_itrs", cell["epoch_itrs"], "--batch_size",
             cell["batch_size"], "--no_visdom"]
    if cell["transfer_set"]:
        flags += ["--transfer_set", cell["transfer_set"]]
    return [sys.executable, os.path.join(ROOT, SCRIPTS[cell["dataset"]]), *map(str, flags), *extra]


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
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
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
    fig.savefig(path)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(SCRIPTS))
    parser.add_argument("--methods", nargs="+", default=["dfad", "random", "dafl", "kd"],
                        help="dfad, random, dafl, kd (KD-ORI) or kd:<data set>")
    parser.add_argument("--seeds", nargs="+", type=cli.seed_value, default=[1, 2, 3])
    parser.add_argument("--epochs", type=cli.positive_int, default=20)
    parser.add_argument("--epoch_itrs", type=cli.positive_int, default=50)
    parser.add_argument("--batch_size", type=cli.positive_int, default=64)
    parser.add_argument("--budget_minutes", type=cli.positive_float, default=None,
                        help="start no new cell after this much wall time (default: no limit)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="flags passed to every script run (last on the line)")
    args = parser.parse_args(argv)
    for m in args.methods:
        if m.partition(":")[0] not in ("dfad", "random", "dafl", "kd") or (":" in m and not m.startswith("kd:")):
            raise UserError(f"unknown method {m}: use dfad, random, dafl, kd or kd:<data set>.")
    started, grid, skipped = time.time(), [], []
    for dataset in args.datasets:
        for method in args.methods:
            for seed in args.seeds:
                grid.append(cell_args(args, dataset, method, seed))
    for cell in grid:
        if done(cell):
            continue
        if args.budget_minutes is not None and time.time() - started > 60 * args.budget_minutes:
            skipped.append(cell)
            continue
        cmd = command(cell, args.extra)
        print("running:", " ".join(cmd[1:]), flush=True)
        result = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=ROOT))
        if result.returncode:
            print(f"cell failed (exit {result.returncode}): {cell}", flush=True)
    pairs = [(log_json(c), r) for c in grid for r in done(c)[-1:]]
    cells = table.group(pairs)
    os.makedirs("results", exist_ok=True)
    lines = table.markdown(cells)
    note = (f"\n{len(pairs)} of {len(grid)} cells measured (epochs {args.epochs} x {args.epoch_itrs} "
            f"outer iterations, batch {args.batch_size}, seeds {' '.join(map(str, args.seeds))})"
            + (f"; {len(skipped)} left out by the time budget" if skipped else "") + ".\n")
    records.atomic_write_text(os.path.join("results", "paper_table.md"), "\n".join(lines) + "\n" + note)
    curves(cells, os.path.join("results", "curves.csv"))
    png = plot(cells, os.path.join("results", "curves.png"))
    print("\n".join(lines) + note)
    print("wrote results/paper_table.md, results/curves.csv"
          + (", results/curves.png" if png else " (no results/curves.png: matplotlib is not installed)"))
    return cells


if __name__ == "__main__":
    cli.main_guard(main)
