"""The GPU check in one go: the paper's MNIST row as committed run records, then the speed
figures, every step with its own time limit, all of them within TOTAL_S (a GPU is lent
for 15 minutes, its start-up included), then results.json and results.md
(benchmarks/device_summary.py).

    bash benchmarks/device_check.sh OUT              (one GPU; MNIST in data/MNIST)
    python benchmarks/device_check.py OUT --tiny     (every step at toy sizes, any machine, a few minutes)
    python benchmarks/device_check.py OUT --dry_run  (check and print the steps' commands)

Steps, most important first (what is left out when time runs out is the end of the list):

1. ``mnist_teacher``: the MNIST teacher by run_mnist.sh's recipe on the real MNIST files
   (``--data_root``, default data/: copy ../shared/data/MNIST to data/MNIST and carry it).
2. ``mnist_paper`` and, beside it, ``mnist_paper_decay``: the paper's Table 2 MNIST grid
   (dfad, dfad+ema, random, dafl, kd x seeds 1 2 3, 40 epochs x 50 rounds, batch 512) and
   dfad with the decay inside the run (--scheduler --step_size 20), every cell at once
   (LeNet-5 cells are launch-bound: one GPU holds them all; --jobs caps them), run records
   into OUT/records/mnist-paper and OUT/records/mnist-paper-decay.
3. The speed steps: every experiment's round in fp32 / channels_last / bf16 / CUDA graph as
   speed records (OUT/bench/<config>-gpu.json), MNIST at batch 64 and 512, CIFAR at 256;
   one DFAD_cifar.py epoch at the paper's settings with its 500 epochs projected;
   ``pytest tests/test_cuda_graph.py``; the same epoch with --amp bf16 --cuda_graph; a
   2-process NCCL torchrun where two GPUs are visible.

A step that fails or runs out of time is recorded (steps.tsv) and the others still run;
one at its limit gets SIGTERM first (a grid's cells save their -last.pt), then SIGKILL.
Afterwards: ``cp -r OUT/records/* results/records/``, ``cp OUT/bench/*.json results/bench/``,
the marked tables of docs/ filled by ``python get_results.py --fill_tables docs/results.md``.
A rerun with ``--records results/records`` counts the cells recorded there as measured.
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import unittest.mock
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import bench_game  # noqa: E402
import cifar_epoch  # noqa: E402
import device_summary  # noqa: E402
import paper_table  # noqa: E402
import DFAD_mnist  # noqa: E402
import train_teacher  # noqa: E402
from dataloader.mnist import MNIST_FILES  # noqa: E402

TOTAL_S = 540  # with a few minutes of start-up, inside the 15 minutes of a lent GPU
MIN_STEP_S = 20
STOP_GRACE_S = 20  # between SIGTERM and SIGKILL at a step's limit: the cells save their -last.pt
GPU_OPTIONS = ["plain", "channels_last", "bf16", "bf16+channels_last",
               "graph", "channels_last+graph", "bf16+channels_last+graph"]
CPU_OPTIONS = [o for o in GPU_OPTIONS if not bench_game.OPTIONS[o].graph]  # --tiny without a GPU
PAPER_METHODS = ["dfad", "dfad+ema", "random", "dafl", "kd"]


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the paper's settings, or toys that run the same code in seconds."""

    teacher_epochs: int = 10
    seeds: tuple = (1, 2, 3)
    epochs: int = 40
    epoch_itrs: int = 50
    batch_size: int = 512
    decay_step: int = 20
    repeats: int = 5
    warmup: int = 2
    peak_size: int = 4096
    batches: dict = field(default_factory=lambda: {"mnist": [64, 512], "cifar": [256], "caltech": [64],
                                                   "camvid": [64]})
    epoch_flags: tuple = ()
    limit_scale: int = 1  # the steps' limits are the GPU's; a CPU runs the toys slower than that

    @classmethod
    def tiny(cls):
        return cls(limit_scale=10, teacher_epochs=1, seeds=(1,), epochs=2, epoch_itrs=2, batch_size=8, decay_step=1,
                   repeats=1, warmup=0, peak_size=64,
                   batches={"mnist": [4], "cifar": [2], "caltech": [2], "camvid": [2]},
                   epoch_flags=("--test_images", "8", "--batch_size", "4", "--epoch_itrs", "1",
                                "--test_batch_size", "8", "--num_workers", "0"))


@dataclass
class Step:
    name: str
    limit_s: int
    program: list          # after the interpreter: a script under the repository, or ["-m", module, ...]
    flags: list
    gpus: int = 0          # GPUs it needs beyond the one device every step runs on (torchrun: 2)
    torchrun: int = 0      # processes, under torchrun; 0: plain python
    beside_previous: bool = False  # starts with the step before it and shares its limit

    def command(self, python):
        if self.torchrun:
            return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.torchrun}",
                    *self.program, *self.flags]
        return [python, *self.program, *self.flags]

    def parse(self):
        """The flags, parsed by the parser of the script they go to (as it will parse them
        on the GPU machine, whose CUDA device its --cuda_graph rules see), so that a typo
        fails here, before a lent GPU's minutes go."""
        parsers = {"bench_game.py": bench_game.parse_args, "cifar_epoch.py": cifar_epoch.parse_args,
                   "DFAD_mnist.py": DFAD_mnist.get_args_parser().parse_args,
                   "train_teacher.py": train_teacher.get_args_parser().parse_args,
                   "paper_table.py": paper_table.get_args_parser().parse_args}
        parser = parsers.get(Path(self.program[-1]).name)
        if parser is None:
            return None
        with unittest.mock.patch("torch.cuda.is_available", return_value=True):
            return parser(self.flags)


def script(path):
    return [str(ROOT / path)]


def game(config, limit_s, sizes, bench, gpu):
    """bench_game.py's speed record of ``config``'s round under every option, bench/<config>-<gpu|cpu>.json."""
    options, device = (GPU_OPTIONS, "cuda") if gpu else (CPU_OPTIONS, "cpu")
    return Step(f"game_{config}", limit_s, script("benchmarks/bench_game.py"),
                ["--configs", config, "--batch_sizes", *map(str, sizes.batches[config]), "--options", *options,
                 "--repeats", str(sizes.repeats), "--warmup", str(sizes.warmup), "--peak_size", str(sizes.peak_size),
                 "--device", device, "--json", str(bench / f"{config}-{'gpu' if gpu else 'cpu'}.json")])


def grid(name, methods, sizes, data_root, records, jobs, extra=()):
    """paper_table.py's grid ``name`` (its records in ``records``/<name>), run from OUT/work,
    whose checkpoint/teacher/ holds the teacher step's teacher."""
    cells = len(methods) * len(sizes.seeds)
    return ["--datasets", "mnist", "--methods", *methods, "--seeds", *map(str, sizes.seeds),
            "--epochs", str(sizes.epochs), "--epoch_itrs", str(sizes.epoch_itrs), "--batch_size", str(sizes.batch_size),
            "--jobs", str(min(jobs, cells) if jobs else cells), "--data_root", str(data_root),
            "--work_dir", "paper_cells", "--records", str(Path(records) / name),
            *(["--extra", *extra] if extra else [])]


def steps(out, sizes=Sizes(), data_root=ROOT / "data", records=None, jobs=0, gpu=True, compile_=False):
    records = records or out / "records"
    bench, work = out / "bench", out / "work"
    no_cuda = [] if gpu else ["--no_cuda"]
    epoch = script("benchmarks/cifar_epoch.py")
    listed = [
        Step("mnist_teacher", 150, script("train_teacher.py"),
             ["--batch_size", "256", "--epochs", str(sizes.teacher_epochs), "--lr", "0.01", "--dataset", "mnist",
              "--model", "lenet5", "--weight_decay", "1e-4", "--data_root", str(data_root), "--no_visdom", *no_cuda]),
        Step("mnist_paper", 270, script("benchmarks/paper_table.py"),
             grid(device_summary.GRIDS[0], PAPER_METHODS, sizes, data_root, records, jobs, no_cuda)),
        Step("mnist_paper_decay", 270, script("benchmarks/paper_table.py"),
             grid(device_summary.GRIDS[1], ["dfad"], sizes, data_root, records, jobs,
                  ["--scheduler", "--step_size", str(sizes.decay_step), *no_cuda]), beside_previous=True),
        game("mnist", 70, sizes, bench, gpu),
        game("cifar", 60, sizes, bench, gpu),
        Step("cifar_epoch", 70, epoch, [str(work / "cifar_default"), "--epochs", "1", *sizes.epoch_flags, *no_cuda]),
        Step("test_cuda_graph", 60, ["-m", "pytest"], ["-q", "-p", "no:cacheprovider", str(ROOT / "tests" /
                                                                                        "test_cuda_graph.py")]),
        game("caltech", 50, sizes, bench, gpu),
        game("camvid", 60, sizes, bench, gpu),
        Step("cifar_epoch_bf16_graph", 70, epoch,
             [str(work / "cifar_bf16_graph"), "--epochs", "1", "--amp", "bf16", *sizes.epoch_flags,
              *(["--cuda_graph"] if gpu else no_cuda)]),
        Step("torchrun_nccl", 60, script("DFAD_mnist.py"),
             ["--dataset", "digits", "--epochs", "1", "--epoch_itrs", "20", "--batch_size", "512", "--no_visdom",
              "--ckpt", str(work / "checkpoint" / "teacher" / "mnist-lenet5.pt")], gpus=2, torchrun=2),
    ]
    for step in listed:
        step.limit_s *= sizes.limit_scale
    if compile_:
        listed.append(Step("game_compile", 300, script("benchmarks/bench_game.py"),
                           ["--configs", "mnist", "--batch_sizes", "64", "--options", "plain", "compile",
                            "channels_last+compile", "--json", str(bench / "mnist-compile-gpu.json")]))
    return listed


def stop_group(proc):
    """SIGTERM to the step's process group (a grid forwards it: each cell saves its
    -last.pt), SIGKILL to what is left after STOP_GRACE_S."""
    for signum, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_steps(group, out, python, left_s, gpus_visible):
    """Run the steps of ``group`` side by side (each in its own process group, killed at the
    group's limit); returns {name: (status, seconds)}."""
    limit = min(max(step.limit_s for step in group), left_s)
    results, running = {}, {}
    started = time.monotonic()
    for step in group:
        if limit < MIN_STEP_S:
            results[step.name] = ("skipped (out of time)", 0)
        elif step.gpus and gpus_visible < step.gpus:
            results[step.name] = (f"skipped ({gpus_visible} GPU visible, needs {step.gpus})", 0)
        else:
            log = open(out / f"{step.name}.log", "w")
            log.write(f"$ {shlex.join(step.command(python))}\n")
            log.flush()
            running[step.name] = (subprocess.Popen(step.command(python), cwd=out / "work", stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True), log)
    for name, (proc, log) in running.items():
        try:
            rc = proc.wait(timeout=max(0.0, started + limit - time.monotonic()))
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            stop_group(proc)
            status = f"timeout ({limit:.0f} s)"
        log.close()
        results[name] = (status, round(time.monotonic() - started))
    return results


def groups(listed):
    """The steps in runs: a step ``beside_previous`` joins the run of the one before it."""
    runs = []
    for step in listed:
        if step.beside_previous and runs:
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs


def check_mnist(data_root):
    """The real MNIST files must be there before a GPU minute is spent: the device reaches no network."""
    raw = Path(data_root) / "MNIST" / "raw"
    if not all((raw / name).exists() or (raw / name.removesuffix(".gz")).exists() for name in MNIST_FILES):
        print(f"device_check.py: MNIST is not in {raw} ({', '.join(MNIST_FILES)}), and the GPU machine has no "
              f"network to download it. Copy it there first (cp -r ../shared/data/MNIST {Path(data_root)}/) and "
              f"carry that folder to the GPU machine.", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default=str(ROOT / "results" / "device_check"),
                        help="folder for the logs, records and results (default: results/device_check)")
    parser.add_argument("--total_s", type=int, default=None,
                        help=f"all steps together (default: {TOTAL_S}; --tiny: no limit)")
    parser.add_argument("--data_root", default=str(ROOT / "data"), help="holds MNIST/raw (default: data)")
    parser.add_argument("--records", default=None,
                        help="where the grids keep their records, DIR/mnist-paper and DIR/mnist-paper-decay; "
                             "cells recorded there already are not run again (default: OUT/records)")
    parser.add_argument("--jobs", type=int, default=0, help="cells of a grid at once (default: 0, all of them)")
    parser.add_argument("--tiny", action="store_true",
                        help="every step at toy sizes, on the GPU where there is one, else on the CPU "
                             "(graph options left out): the same code paths in a few minutes")
    parser.add_argument("--dry_run", action="store_true", help="check and print the steps' commands; run nothing")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out).resolve()
    gpu = torch.cuda.is_available()
    listed = steps(out, Sizes.tiny() if args.tiny else Sizes(), Path(args.data_root).resolve(),
                   Path(args.records).resolve() if args.records else None, args.jobs, gpu=gpu or not args.tiny,
                   compile_=os.environ.get("COMPILE") == "1")
    python = os.environ.get("PYTHON", sys.executable)
    for step in listed:
        step.parse()
    if args.dry_run:
        for step in listed:
            beside = ", beside the step before" if step.beside_previous else ""
            gpus = f", {step.gpus} GPUs" if step.gpus else ""
            print(f"{step.name} (limit {step.limit_s} s{beside}{gpus}): {shlex.join(step.command(python))}")
        return listed
    if not gpu and not args.tiny:
        print("device_check.py: no CUDA GPU is visible to PyTorch; this check measures GPUs only "
              "(on a CPU use: python benchmarks/bench_game.py --cpu_check; --tiny runs every step at toy sizes).",
              file=sys.stderr)
        sys.exit(2)
    check_mnist(args.data_root)
    for folder in (out / "work", out / "bench"):
        folder.mkdir(parents=True, exist_ok=True)
    total_s = args.total_s or (TOTAL_S if not args.tiny else 10 ** 6)
    deadline = time.monotonic() + total_s
    with open(out / "steps.tsv", "w") as record:
        for run in groups(listed):
            names = " + ".join(step.name for step in run)
            print(f"===== {names} (limit {max(s.limit_s for s in run)} s) =====", flush=True)
            results = run_steps(run, out, python, deadline - time.monotonic(), torch.cuda.device_count())
            for name, (status, seconds) in results.items():
                record.write(f"{name}\t{status}\t{seconds}\n")
                print(f"{name}: {status}, {seconds} s", flush=True)
            record.flush()
    device_summary.main(str(out), records=str(Path(args.records).resolve()) if args.records else None)
    print(f"device_check: wrote {out / 'results.json'} and {out / 'results.md'}")
    return listed


if __name__ == "__main__":
    main()
