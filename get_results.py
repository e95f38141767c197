"""Summarise DFAD runs: one CSV row per run (per-epoch test metric) -> mean, std, best.

    python get_results.py --log log/DFAD-mnist.csv
"""
import argparse
import sys

import numpy as np

from utils.logger import read_csv_rows


def summarize(rows):
    best_per_run = np.array([max(row) for row in rows])
    last_per_run = np.array([row[-1] for row in rows])
    return {"runs": len(rows), "mean": best_per_run.mean(), "std": best_per_run.std(),
            "best": best_per_run.max(), "last_mean": last_per_run.mean(),
            "best_per_run": best_per_run.tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True, help="a log/DFAD-<dataset>.csv file")
    args = parser.parse_args(argv)
    try:
        rows = read_csv_rows(args.log)
    except (OSError, ValueError) as e:
        sys.exit(f"Error: cannot read {args.log}: {e}")
    if not rows:
        sys.exit(f"Error: {args.log} holds no runs yet.")
    s = summarize(rows)
    print("best of each run:", " ".join(f"{v:.4f}" for v in s["best_per_run"]))
    print(f"Mean={s['mean']:.4f}, Std={s['std']:.4f}, Best={s['best']:.4f} "
          f"(runs={s['runs']}, mean of last epochs={s['last_mean']:.4f})")
    return s


if __name__ == "__main__":
    main()
