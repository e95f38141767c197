"""The GPU check in one go: every step below, each with its own time limit, all of them
within TOTAL_S (a GPU is lent for 15 minutes, its start-up included), then results.json
and results.md (benchmarks/device_summary.py).

    bash benchmarks/device_check.sh [OUT_DIR]       (default: results/device_check)
    python benchmarks/device_check.py --dry_run     (the steps' commands; any machine)

Steps, in order of what matters most if time runs out: the game of every experiment in
fp32, channels_last, bf16 and with its round replayed from a CUDA graph (MNIST and CIFAR
also at the paper's batch sizes 256), two whole epochs of DFAD_cifar.py at the paper's
settings with the paper's 500 epochs projected (as run by default, then with --amp bf16
--cuda_graph), and a 2-process NCCL torchrun where two GPUs are visible. A step that
fails or runs out of time is recorded as such and the others still run. COMPILE=1 adds
torch.compile (minutes of compilation: not within the 15 minutes).
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import bench_game  # noqa: E402
import cifar_epoch  # noqa: E402
import device_summary  # noqa: E402
import DFAD_mnist  # noqa: E402
import network  # noqa: E402

TOTAL_S = 540  # with a few minutes of start-up, inside the 15 minutes of a lent GPU
MIN_STEP_S = 20
GAME_OPTIONS = ["plain", "channels_last", "bf16", "bf16+channels_last",
                "graph", "channels_last+graph", "bf16+channels_last+graph"]


@dataclass
class Step:
    name: str
    limit_s: int
    script: str            # under the repository, run with this Python (torchrun: the script it starts)
    flags: list
    gpus: int = 1          # GPUs it needs
    torchrun: int = 0      # processes, under torchrun; 0: plain python
    env: dict = field(default_factory=dict)

    def command(self, python):
        if self.torchrun:
            return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.torchrun}",
                    str(ROOT / self.script), *self.flags]
        return [python, str(ROOT / self.script), *self.flags]

    def parse(self):
        """The flags, parsed by the parser of the script they go to (as it will parse them)."""
        parsers = {"benchmarks/bench_game.py": bench_game.parse_args,
                   "benchmarks/cifar_epoch.py": cifar_epoch.parse_args,
                   "DFAD_mnist.py": DFAD_mnist.get_args_parser().parse_args}
        return parsers[self.script](self.flags)


def game(name, limit_s, config, batch_sizes, out, options=GAME_OPTIONS):
    return Step(name, limit_s, "benchmarks/bench_game.py",
                ["--configs", config, "--batch_sizes", *map(str, batch_sizes), "--options", *options,
                 "--repeats", "5", "--warmup", "2", "--device", "cuda", "--json", str(out / f"{name}.json")])


def steps(out, compile_=False):
    work = out / "work"
    teacher = work / "mnist-teacher.pt"
    epoch = ["benchmarks/cifar_epoch.py"]
    listed = [
        game("game_mnist", 90, "mnist", [64, 256], out),
        game("game_cifar", 150, "cifar", [64, 256], out),
        Step("cifar_epoch", 150, *epoch, [str(work / "cifar_default"), "--epochs", "2"]),
        Step("cifar_epoch_bf16_graph", 120, *epoch,
             [str(work / "cifar_bf16_graph"), "--epochs", "2", "--amp", "bf16", "--cuda_graph"]),
        game("game_caltech", 120, "caltech", [64], out),
        game("game_camvid", 150, "camvid", [64], out),
        Step("torchrun_nccl", 90, "DFAD_mnist.py",
             ["--dataset", "digits", "--epochs", "1", "--epoch_itrs", "20", "--batch_size", "512", "--no_visdom",
              "--ckpt", str(teacher)], gpus=2, torchrun=2),
    ]
    if compile_:
        listed.append(game("game_compile", 300, "mnist", [64], out,
                           options=["plain", "compile", "channels_last+compile"]))
    return listed


def untrained_mnist_teacher(path):
    """torchrun's DFAD run times the game and the NCCL all-reduce; the teacher's weights do not matter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(network.lenet.LeNet5().state_dict(), path)


def run_step(step, out, python, left_s):
    """Run ``step`` (its process group killed at its limit); returns (status, seconds)."""
    limit = min(step.limit_s, left_s)
    if limit < MIN_STEP_S:
        return "skipped (out of time)", 0
    if torch.cuda.device_count() < step.gpus:
        return f"skipped ({torch.cuda.device_count()} GPU visible, needs {step.gpus})", 0
    started = time.monotonic()
    with open(out / f"{step.name}.log", "w") as log:
        log.write(f"$ {shlex.join(step.command(python))}\n")
        log.flush()
        proc = subprocess.Popen(step.command(python), cwd=out / "work", stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **step.env}, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group it leads: torchrun's workers, loader workers
            proc.wait()
            return f"timeout ({limit} s)", round(time.monotonic() - started)
    return ("ok" if rc == 0 else f"failed (exit {rc})"), round(time.monotonic() - started)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default=str(ROOT / "results" / "device_check"),
                        help="folder for the logs and results (default: results/device_check)")
    parser.add_argument("--total_s", type=int, default=TOTAL_S, help=f"all steps together (default: {TOTAL_S})")
    parser.add_argument("--dry_run", action="store_true", help="check and print the steps' commands; run nothing")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out).resolve()
    listed = steps(out, compile_=os.environ.get("COMPILE") == "1")
    python = os.environ.get("PYTHON", sys.executable)
    for step in listed:
        step.parse()  # a typo fails here, before a lent GPU's minutes go
    if args.dry_run:
        for step in listed:
            print(f"{step.name} (limit {step.limit_s} s, {step.gpus} GPU): {shlex.join(step.command(python))}")
        return listed
    if not torch.cuda.is_available():
        print("device_check.py: no CUDA GPU is visible to PyTorch; this check measures GPUs only "
              "(on a CPU use: python benchmarks/bench_game.py --cpu_check).", file=sys.stderr)
        sys.exit(2)
    (out / "work").mkdir(parents=True, exist_ok=True)
    untrained_mnist_teacher(out / "work" / "mnist-teacher.pt")
    deadline = time.monotonic() + args.total_s
    with open(out / "steps.tsv", "w") as record:
        for step in listed:
            print(f"===== {step.name} (limit {step.limit_s} s) =====", flush=True)
            status, seconds = run_step(step, out, python, deadline - time.monotonic())
            record.write(f"{step.name}\t{status}\t{seconds}\n")
            record.flush()
            print(f"{step.name}: {status}, {seconds} s", flush=True)
    device_summary.main(str(out))
    print(f"device_check: wrote {out / 'results.json'} and {out / 'results.md'}")
    return listed


if __name__ == "__main__":
    main()
