"""MNIST / digits benchmark: teacher accuracy, student accuracy against wall time, speed.

Runs the real scripts as a user would (subprocesses, reference defaults except the
batch size), reads their per-epoch lines as they arrive and stops each DFAD run when
its wall-time budget is spent. Prints a table; ``--json`` writes the figures.

    python benchmarks/bench_mnist.py --dataset digits --batch_sizes 64 256 --minutes 10
    python benchmarks/bench_mnist.py --dataset mnist --data_root ../shared/data --minutes 20
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import network  # noqa: E402
from utils.engine import game  # noqa: E402
from utils.engine.methods.dfad import DFAD  # noqa: E402

EPOCH_LINE = re.compile(r"^Epoch (\d+)/\d+ .*?Acc=([0-9.]+)")
TEACHER = {"mnist": ["--batch_size", "256", "--epochs", "10", "--lr", "0.01", "--weight_decay", "1e-4"],
           "digits": ["--batch_size", "64", "--epochs", "30", "--lr", "0.01", "--weight_decay", "1e-4"]}


def stream(cmd, cwd, budget_s=None):
    """Run ``cmd``; yield (seconds since start, line) for each line of its output."""
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        for line in proc.stdout:
            yield time.time() - started, line.rstrip()
            if budget_s is not None and time.time() - started > budget_s:
                break
    finally:
        proc.terminate()
        proc.wait()


def train_teacher(workdir, dataset, data_root):
    cmd = [sys.executable, os.path.join(ROOT, "train_teacher.py"), "--dataset", dataset, "--model", "lenet5",
           "--data_root", data_root, "--no_visdom", *TEACHER[dataset]]
    seconds, best = 0.0, None
    for seconds, line in stream(cmd, workdir):
        if line.startswith("Best Acc="):
            best = float(line.split("=")[1])
    return best, seconds


def distil(workdir, dataset, data_root, batch_size, budget_s):
    """Accuracy after every epoch of a DFAD run, until ``budget_s`` seconds have passed."""
    cmd = [sys.executable, os.path.join(ROOT, "DFAD_mnist.py"), "--dataset", dataset, "--data_root", data_root,
           "--batch_size", str(batch_size), "--epochs", "100000", "--no_visdom"]
    curve = []
    for seconds, line in stream(cmd, workdir, budget_s):
        match = EPOCH_LINE.match(line)
        if match and seconds <= budget_s:
            curve.append((seconds, int(match.group(1)), float(match.group(2))))
    return curve


def seconds_per_iteration(batch_size, repeats=3):
    """Time of one outer iteration (5 student steps + 1 generator step) of the MNIST game."""
    torch.manual_seed(0)
    teacher = game.freeze(network.lenet.LeNet5())
    student, generator = network.lenet.LeNet5Half().train(), network.gan.GeneratorA(nz=100, nc=1).train()
    opt_S = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    opt_G = torch.optim.Adam(generator.parameters(), lr=1e-3)

    players = game.Players(teacher, student, generator, opt_S, opt_G, nz=100, device=torch.device("cpu"))

    def iteration():
        DFAD.play_round(None, players, batch_size)  # DFAD's round keeps no state of its own

    iteration()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        iteration()
    return (time.perf_counter() - started) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist"])
    parser.add_argument("--data_root", default=os.path.join(ROOT, "data"))
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time budget of each DFAD run")
    parser.add_argument("--speed_batch_sizes", type=int, nargs="*", default=[64, 512])
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    data_root = os.path.abspath(args.data_root)
    results = {"dataset": args.dataset, "threads": torch.get_num_threads(), "minutes": args.minutes}

    with tempfile.TemporaryDirectory() as workdir:
        teacher_acc, teacher_s = train_teacher(workdir, args.dataset, data_root)
        results["teacher"] = {"acc": teacher_acc, "seconds": teacher_s}
        print(f"teacher ({args.dataset}, LeNet-5): acc {teacher_acc:.4f} in {teacher_s:.0f} s", flush=True)
        results["students"] = {}
        for batch_size in args.batch_sizes:
            shutil.rmtree(os.path.join(workdir, "checkpoint", "student"), ignore_errors=True)
            curve = distil(workdir, args.dataset, data_root, batch_size, args.minutes * 60)
            best = max((acc for _, _, acc in curve), default=float("nan"))
            results["students"][batch_size] = {"curve": curve, "best": best, "ratio": best / teacher_acc}
            print(f"student batch {batch_size}: best acc {best:.4f} (ratio {best / teacher_acc:.3f}) "
                  f"within {args.minutes:g} min, {len(curve)} epochs", flush=True)
            print("  " + " ".join(f"{acc:.3f}" for _, _, acc in curve), flush=True)

    results["seconds_per_iteration"] = {b: seconds_per_iteration(b) for b in args.speed_batch_sizes}
    print("\n| batch | s / outer iteration |\n|---|---|")
    for b, s in results["seconds_per_iteration"].items():
        print(f"| {b} | {s:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
