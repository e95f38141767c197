"""What a DFAD run will cost on this machine, measured before it starts.

Times a few rounds of the game (5 student steps + 1 generator step) with the run's
networks at its batch size, on the device and with the speed options it will use, and
prints the expected training time and, when that is long, a smaller run that fits.
run_mnist.sh calls it before training (ESTIMATE=0 skips it):

    python benchmarks/estimate_run.py --config mnist --batch_size 512 --epochs 40 --epoch_itrs 50
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_game  # noqa: E402  (it puts the repository on sys.path)
from bench_game import SPEED_EXPERIMENT  # noqa: E402
from utils.runtime import speed  # noqa: E402

SMALL_BATCH = 64
LONG_S = 30 * 60       # above this, suggest a smaller run
SMALL_RUN_S = 15 * 60  # the smaller run's budget


def duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def seconds_per_round(config, option, batch_size, device, repeats):
    torch.manual_seed(0)
    iteration = bench_game.make_iteration(config, option, batch_size, device)
    return bench_game.measure(iteration, repeats, device, warmup=1)


def option_name(args):
    """The bench_game option set the run will use (its flags resolved as the engine does)."""
    if args.amp == "bf16":
        return "bf16"
    return "channels_last" if args.channels_last else "plain"


def smaller_run(config, option, device, repeats, epoch_itrs):
    """(epochs, seconds per round) of a batch-64 run that fits SMALL_RUN_S."""
    per_round = seconds_per_round(config, option, SMALL_BATCH, device, repeats)
    return max(1, int(SMALL_RUN_S // (per_round * epoch_itrs))), per_round


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--config", default="mnist", choices=sorted(bench_game.CONFIGS), help="experiment (default: mnist)")
    parser.add_argument("--batch_size", type=int, default=512, help="the run's batch size (default: 512)")
    parser.add_argument("--epochs", type=int, default=40, help="the run's epochs (default: 40)")
    parser.add_argument("--epoch_itrs", type=int, default=50, help="rounds per epoch (default: 50)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds, after one untimed (default: 2)")
    parser.add_argument("--no_cuda", "--no-cuda", action="store_true", help="measure on the CPU (default: off)")
    parser.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="as the run's --amp (default: none)")
    parser.add_argument("--channels_last", dest="channels_last", action="store_true", default=None,
                        help="as the run's flag (default: what the run resolves on this device)")
    parser.add_argument("--no_channels_last", dest="channels_last", action="store_false", help="as the run's flag")
    args, _ = parser.parse_known_args(argv)  # the rest of the run's flags do not change its cost
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    if args.channels_last is None:
        args.channels_last = speed.channels_last_default(device.type, SPEED_EXPERIMENT[args.config]).value
    option = option_name(args)

    per_round = seconds_per_round(args.config, option, args.batch_size, device, args.repeats)
    total = per_round * args.epochs * args.epoch_itrs
    print(f"Estimate ({device}, {torch.get_num_threads()} threads, {option}, measured over {args.repeats} rounds): "
          f"DFAD at batch {args.batch_size} takes {per_round:.2f} s per round x {args.epochs} epochs x "
          f"{args.epoch_itrs} rounds = about {duration(total)} here.", flush=True)
    if total > LONG_S and args.batch_size > SMALL_BATCH:
        epochs, small = smaller_run(args.config, option, device, args.repeats, args.epoch_itrs)
        print(f"To size it down: BATCH_SIZE={SMALL_BATCH} EPOCHS={epochs} bash run_mnist.sh  "
              f"({small:.2f} s per round: about {duration(small * epochs * args.epoch_itrs)}; "
              f"or pass --batch_size/--epochs to DFAD_mnist.py). Ctrl-C now to change it.", flush=True)
    return per_round


if __name__ == "__main__":
    main()
