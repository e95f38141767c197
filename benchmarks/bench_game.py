"""Throughput of the DFAD game against this machine's limit.

For each experiment configuration and batch size, and for each option set, times one
outer iteration (5 student steps + 1 generator step), counts its FLOPs with
``torch.utils.flop_counter.FlopCounterMode`` and reports the achieved FLOP/s as a
fraction of a large fp32 matmul measured in the same run. ``reference`` is the
original scripts' loop (generator graph kept in student steps, teacher and student
weight gradients computed, PyTorch's nearest-upsampling kernel), for comparison.

    python benchmarks/bench_game.py --configs mnist cifar --batch_sizes 64 --options plain channels_last
    python benchmarks/bench_game.py --json bench.json
    python benchmarks/bench_game.py --recommend      # the flags to use here, in under a minute
    python benchmarks/bench_game.py --cpu_check      # MNIST at batch 64 and 512 beside the reference's loop

``default`` is what a DFAD script runs with when given no speed flag on this device (its
memory format from utils/runtime/speed.py); the ``graph`` options replay each round from
a CUDA graph (``--cuda_graph``, GPUs only).
"""
import argparse
import contextlib
import importlib
import itertools
import json
import os
import resource
import shlex
import statistics
import sys
import time
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import network  # noqa: E402
from utils.engine import game, loop, objective  # noqa: E402
from utils.engine.graphs import EAGER_ROUNDS, CapturedRound  # noqa: E402
from utils.engine.methods import DFAD  # noqa: E402
from utils.reporting import records  # noqa: E402
from utils.runtime import speed  # noqa: E402
from utils.runtime.speed import Precision  # noqa: E402

# Each experiment as its script declares it (its networks() and its default --nz); the
# segmentation generator plays -log(L1 + 1).
CONFIGS = {"mnist": "DFAD_mnist", "cifar": "DFAD_cifar", "caltech": "DFAD_caltech101",
           "camvid": "DFAD_camvid_deeplab"}
SEGMENTATION = {"camvid"}
SPEED_EXPERIMENT = {"mnist": "mnist", "cifar": "cifar", "caltech": "caltech101", "camvid": "deeplab"}  # speed.py's keys


# Methods whose round is DFAD's with another weighting of the generator's objective and
# another student loss (utils/engine/objective.py), timed with --methods.
WEIGHTINGS = ["dfad", "dafl", "dfq"]


def declared(config, method="dfad", flags=()):
    """(teacher, student, generator, nz, generator objective, student loss) of the
    experiment as its script declares it under ``--method method`` and ``flags``, untrained."""
    script = importlib.import_module(CONFIGS[config])
    args = script.get_args_parser().parse_args(["--method", method, *flags])
    teacher, student, generator = script.networks(args)
    loss = game.adversarial_loss_log_l1 if config in SEGMENTATION else game.adversarial_loss_l1
    return teacher, student, generator, args.nz, objective.build(args, teacher, loss), loop.student_loss(args)


class Option(NamedTuple):
    channels_last: bool
    compile: bool = False
    amp: Optional[str] = None
    graph: bool = False


OPTIONS = {
    "reference": Option(False),
    "plain": Option(False),
    "default": None,  # resolved per experiment and device: default_option()
    "channels_last": Option(True),
    "compile": Option(False, compile=True),
    "channels_last+compile": Option(True, compile=True),
    "bf16": Option(False, amp="bf16"),
    "bf16+channels_last": Option(True, amp="bf16"),
    "bf16+channels_last+compile": Option(True, compile=True, amp="bf16"),
    "graph": Option(False, graph=True),
    "channels_last+graph": Option(True, graph=True),
    "bf16+channels_last+graph": Option(True, amp="bf16", graph=True),
}
GRAPH_OPTIONS = [name for name, option in OPTIONS.items() if option and option.graph]


def default_option(config, device):
    """The option set a DFAD script runs with, without speed flags, on ``device``."""
    return Option(speed.channels_last_default(device.type, SPEED_EXPERIMENT[config]).value)


def option_of(name, config, device):
    return default_option(config, device) if name == "default" else OPTIONS[name]


@contextlib.contextmanager
def reference_upsampling():
    """The reference generator's F.interpolate instead of the faster broadcast copy."""
    fast = network.gan.upsample_nearest_2x
    network.gan.upsample_nearest_2x = lambda x: F.interpolate(x, scale_factor=2)
    try:
        yield
    finally:
        network.gan.upsample_nearest_2x = fast


def reference_iteration(teacher, student, generator, opt_S, opt_G, batch_size, nz, device, loss):
    """The original scripts' outer iteration: same math, none of the savings."""
    for _ in range(game.STUDENT_STEPS):
        z = torch.randn(batch_size, nz, 1, 1, device=device)
        opt_S.zero_grad()
        fake = generator(z).detach()
        loss_S = F.l1_loss(student(fake), teacher(fake).detach())
        loss_S.backward()
        opt_S.step()
    z = torch.randn(batch_size, nz, 1, 1, device=device)
    opt_G.zero_grad()
    fake = generator(z)
    loss(student(fake), teacher(fake)).backward()
    opt_G.step()


def make_iteration(config, option, batch_size, device, method="dfad", flags=()):
    """One round of ``config``'s game under ``option`` (a name of OPTIONS), as a function.
    A graph option returns it captured: its eager rounds and capture are done here."""
    teacher, student, generator, nz, generator_objective, student_loss = declared(config, method, flags)
    loss = generator_objective.adversarial
    chosen = option_of(option, config, device)
    if chosen.graph and device.type != "cuda":
        raise RuntimeError(f"option {option} replays CUDA graphs and needs --device cuda")
    fmt = torch.channels_last if chosen.channels_last else torch.preserve_format
    for m in (teacher, student, generator):
        m.to(device, memory_format=fmt)
    student.train()
    generator.train()
    opt_S = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    opt_G = torch.optim.Adam(generator.parameters(), lr=1e-3, capturable=chosen.graph)
    if option == "reference":
        teacher.eval()
        return lambda: reference_iteration(teacher, student, generator, opt_S, opt_G, batch_size, nz, device, loss)
    game.freeze(teacher)
    if chosen.compile:
        teacher, student, generator = (torch.compile(m) for m in (teacher, student, generator))
    players = game.Players(teacher, student, generator, opt_S, opt_G, nz, device, generator_objective,
                           Precision(chosen.amp, device, cache_casts=not chosen.graph), student_loss=student_loss)
    play_round = DFAD().play_round
    if not chosen.graph:
        return lambda: play_round(players, batch_size)
    captured = CapturedRound(play_round)
    for _ in range(EAGER_ROUNDS + 1):  # the eager rounds, then the capture and its first replay
        captured(players, batch_size)
    return lambda: captured(players, batch_size)


def measure(iteration, repeats, device, warmup=2):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(warmup):  # compilation, cuDNN autotuning, allocator warm-up
        iteration()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        iteration()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def count_flops(config, batch_size, device, method="dfad", flags=()):
    iteration = make_iteration(config, "plain", batch_size, device, method, flags)
    with FlopCounterMode(display=False) as counter:
        iteration()
    return counter.get_total_flops()


def matmul_peak(device, n=4096, repeats=10, dtype=torch.float32):
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = measure(lambda: a @ b, repeats, device)
    return 2 * n ** 3 / seconds


SCRIPTS = {"mnist": "DFAD_mnist.py", "cifar": "DFAD_cifar.py", "caltech": "DFAD_caltech101.py",
           "camvid": "DFAD_camvid_deeplab.py / DFAD_nyu_deeplab.py"}
# --recommend's defaults: every experiment, small and few, so that it ends in about a minute
# on a 2-core CPU. torch.compile takes minutes to compile, so it is measured only when asked
# (--options ... compile).
RECOMMEND = dict(configs=sorted(CONFIGS), batch_sizes=[4], repeats=1, warmup=1,
                 options=["plain", "channels_last", "bf16"])
BENCH = dict(configs=["mnist", "cifar"], batch_sizes=[64], repeats=3, warmup=2,
             options=["reference", "plain", "channels_last", "channels_last+compile"])
# --cpu_check's defaults: the reference's loop beside what the MNIST script runs on this CPU,
# at batch 64 and at the reference's 512, so that a regression shows in one command.
CPU_CHECK = dict(configs=["mnist"], batch_sizes=[64, 512], repeats=3, warmup=1, options=["reference", "default"],
                 device="cpu")


def script_flags(option, config="mnist", device=torch.device("cpu")):
    """The DFAD scripts' flags for one option set."""
    chosen = option_of(option, config, device)
    flags = ["--channels_last" if chosen.channels_last else "--no_channels_last"]
    return flags + ["--compile"] * chosen.compile + ["--amp", chosen.amp] * bool(chosen.amp) + \
        ["--cuda_graph"] * chosen.graph


def option_label(option, config, device):
    """``option``, and for ``default`` the flags it stands for here."""
    if option != "default":
        return option
    return f"default ({' '.join(script_flags(option, config, device))})"


def fastest(timed, fp32_only):
    def allowed(option):
        return option != "reference" and not (fp32_only and OPTIONS[option] and OPTIONS[option].amp)
    candidates = {o: t for o, t in timed.items() if allowed(o)}
    return min(candidates, key=candidates.get) if candidates else None


def recommend(args, device):
    """Time the option sets on this machine and print, per experiment, the flags to use."""
    print(f"Measuring {', '.join(args.options)} on {device} ({torch.get_num_threads()} threads), "
          f"batch {args.batch_sizes[0]}, {args.repeats} timed round(s) each:", flush=True)
    choices = {}
    for config in args.configs:
        timed = time_options(config, args.options, args.batch_sizes[0], device, args)
        best, best_fp32 = fastest(timed, fp32_only=False), fastest(timed, fp32_only=True)
        choices[config] = best
        times = ", ".join(f"{o} {t:.3f}" for o, t in timed.items())
        print(f"{config:8s} use: {' '.join(script_flags(best, config, device))}   "
              f"({SCRIPTS[config]}; s/round: {times})", flush=True)
        if best_fp32 and best_fp32 != best:
            print(f"{'':8s} fp32 math exactly: {' '.join(script_flags(best_fp32, config, device))} "
                  f"({timed[best_fp32] / timed[best]:.2f}x the time)", flush=True)
    if "compile" not in " ".join(args.options):
        print("--compile was not measured (compiling takes minutes); add --options ... compile to measure it.")
    return choices


def time_options(config, options, batch_size, device, args, failures=None, method="dfad"):
    """Seconds per round of each option. With a ``failures`` list, an option that fails
    (a round a CUDA graph cannot capture, say) is recorded there and the others still run."""
    timed = {}
    for option in options:
        torch.manual_seed(0)
        upsampling = reference_upsampling() if option == "reference" else contextlib.nullcontext()
        try:
            with upsampling:
                timed[option] = measure(make_iteration(config, option, batch_size, device, method,
                                                       getattr(args, "script_flags", [])), args.repeats, device,
                                        args.warmup)
        except RuntimeError as e:
            if failures is None:
                raise
            error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            failures.append(dict(config=config, batch=batch_size, option=option, error=error))
            print(f"{config} batch {batch_size} {option}: failed ({error})", flush=True)
    return timed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--recommend", action="store_true",
                      help="measure this machine quickly and print the flags to use for each experiment "
                           f"(default: off; its own defaults: {RECOMMEND})")
    mode.add_argument("--cpu_check", action="store_true",
                      help="the reference's loop beside the MNIST script's defaults on this CPU, at batch 64 and "
                           f"512, images/s side by side (default: off; its own defaults: {CPU_CHECK}; the other "
                           "flags override them)")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), help=f"default: {BENCH['configs']}")
    parser.add_argument("--batch_sizes", nargs="+", type=int, help=f"default: {BENCH['batch_sizes']}")
    parser.add_argument("--options", nargs="+", choices=list(OPTIONS), help=f"default: {BENCH['options']}")
    parser.add_argument("--repeats", type=int, help=f"timed iterations (default: {BENCH['repeats']})")
    parser.add_argument("--warmup", type=int,
                        help=f"untimed iterations first: compilation, autotuning (default: {BENCH['warmup']})")
    parser.add_argument("--device", help="default: cuda where available, else cpu")
    parser.add_argument("--json", default=None, help="also write the rows to this file (default: none)")
    parser.add_argument("--methods", nargs="+", choices=WEIGHTINGS, default=["dfad"],
                        help="time the round under each method's weighting of the generator's objective and its "
                             "student loss (default: dfad)")
    parser.add_argument("--script_flags", nargs=argparse.REMAINDER, default=[],
                        help="flags of the configs' scripts, last on the line (e.g. --teacher wrn40_2 --model "
                             "wrn16_1 for DFAD_cifar.py's pair)")
    parser.add_argument("--peak_size", type=int, default=4096,
                        help="side of the square matmuls that measure the fp32 and bf16 peaks (default: 4096)")
    args = parser.parse_args(argv)
    defaults = RECOMMEND if args.recommend else CPU_CHECK if args.cpu_check else BENCH
    for key, value in {"device": "cuda" if torch.cuda.is_available() else "cpu", **defaults}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    graphs = [option for option in args.options if option in GRAPH_OPTIONS]
    if graphs and torch.device(args.device).type != "cuda":
        parser.error(f"{', '.join(graphs)} replay CUDA graphs and need a CUDA device (--device {args.device})")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.recommend:
        return recommend(args, device)

    context = run_context(argv, args, device)
    peak = matmul_peak(device, args.peak_size)
    # A GPU's tensor cores: what a bf16 round is measured against (a CPU's bf16 matmul is
    # often emulated and would take minutes at this size)
    peak_bf16 = matmul_peak(device, args.peak_size, dtype=torch.bfloat16) if device.type == "cuda" else None
    print(f"device {device} ({torch.get_num_threads()} threads), matmul peak fp32 {peak / 1e9:.0f} GFLOP/s"
          + (f", bf16 {peak_bf16 / 1e9:.0f} GFLOP/s" if peak_bf16 else ""), flush=True)
    rows, failures = [], []
    print("| config | batch | option | s / iteration | iterations/s | images/s | GFLOP / iteration "
          "| GFLOP/s | of peak | vs plain |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for config, method, batch_size in itertools.product(args.configs, args.methods, args.batch_sizes):
        flops = count_flops(config, batch_size, device, method, args.script_flags)
        timed = time_options(config, args.options, batch_size, device, args, failures, method)
        label = config if method == "dfad" else f"{config}/{method}"
        for option, seconds in timed.items():
            rows.append(table_row(label, batch_size, option_label(option, config, device), seconds, flops, peak,
                                  timed.get("plain"), peak_bf16))
        # what was measured, should a later cell fail
        write_json(args.json, device, (peak, peak_bf16), rows, failures, context)
    for line in side_by_side(rows):
        print(line, flush=True)
    if device.type == "cuda":
        peak_memory = torch.cuda.max_memory_allocated() / 2 ** 30
        print(f"peak GPU memory allocated: {peak_memory:.2f} GiB")
    else:  # the whole process, all configurations of this run included
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        print(f"peak resident memory of this process: {peak_memory:.2f} GiB")
    write_json(args.json, device, (peak, peak_bf16), rows, failures, context, peak_memory)
    return rows


def table_row(config, batch_size, option, seconds, flops, peak, plain, peak_bf16=None):
    """One row of the table (printed) and of the JSON rows."""
    row = dict(config=config, batch=batch_size, option=option, seconds=seconds, iterations_per_s=1 / seconds,
               images_per_s=6 * batch_size / seconds, gflop=flops / 1e9, gflops=flops / seconds / 1e9,
               of_peak=flops / seconds / peak, of_bf16_peak=flops / seconds / peak_bf16 if peak_bf16 else None,
               speedup_vs_plain=plain / seconds if plain else None)
    speedup = f"{row['speedup_vs_plain']:.2f}x" if plain else "-"
    print(f"| {config} | {batch_size} | {option} | {seconds:.3f} | {1 / seconds:.2f} | {row['images_per_s']:.0f} | "
          f"{flops / 1e9:.1f} | {row['gflops']:.0f} | {row['of_peak']:.2f} | {speedup} |", flush=True)
    return row


def run_context(argv, args, device):
    """What a speed record needs to be traced and read: the command, the code's commit, the
    machine and how busy it was (the 1-minute load average; on a shared machine only the
    ratios within one run mean anything)."""
    command = sys.argv[1:] if argv is None else list(argv)
    return {"command": shlex.join(["python", "benchmarks/bench_game.py", *command]), **records.code_version(),
            "machine": records.device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "repeats": args.repeats, "warmup": args.warmup, "date": time.strftime("%Y-%m-%d"),
            "load_average_start": os.getloadavg()[0]}


def write_json(path, device, peaks, rows, failures, context, peak_memory=None):
    """The rows so far, as a record (``context`` plus the load average now); ``peaks``: the
    fp32 and bf16 matmul FLOP/s."""
    if path:
        record = {**context, "load_average_end": os.getloadavg()[0], "device": str(device), "peak_flops": peaks[0],
                  "peak_flops_bf16": peaks[1],
                  "peak_memory_gib": peak_memory, "rows": rows, "failures": failures}
        with open(path, "w") as f:
            json.dump(record, f, indent=1)


def side_by_side(rows):
    """Each option beside the reference's loop of the same run, config and batch size."""
    reference = {(r["config"], r["batch"]): r for r in rows if r["option"] == "reference"}
    for r in rows:
        ref = reference.get((r["config"], r["batch"]))
        if ref and r is not ref:
            yield (f"{r['config']} batch {r['batch']}: {r['option']} {r['seconds']:.3f} s per round, "
                   f"{r['images_per_s']:.0f} images/s; the reference's loop {ref['seconds']:.3f} s, "
                   f"{ref['images_per_s']:.0f} images/s: {r['seconds'] / ref['seconds']:.2f}x its time")


if __name__ == "__main__":
    main()
