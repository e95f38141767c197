"""Summarise DFAD runs from their logs.

    python get_results.py --log log/DFAD-mnist.csv   # one log: best of each run, mean, std, best
    python get_results.py                            # every log/DFAD-*.csv: a paper-style table
    python get_results.py --methods                  # every log/DFAD-*.json: the paper's Table 2
    python get_results.py --methods --log_dir 'runs/paper_table/*/log'   # benchmarks/paper_table.py's cells

A CSV row is one run's test metric after every epoch (the reference's format); the
JSON file beside it adds each run's teacher score, method, last epoch and the student
chosen without labels. The table is the one benchmarks/paper_table.py writes.
"""
import argparse
import glob
import os

import numpy as np

from utils.reporting import table as paper_table
from utils.runtime import cli
from utils.reporting.records import read_csv_rows, read_run_records
from utils.runtime.errors import UserError

# Paper, Tables 2 and 3: teacher, DFAD student (mean +- std where reported)
PAPER = {"mnist": (0.989, 0.983, 0.002), "cifar10": (0.955, 0.933, 0.000),
         "cifar100": (0.775, 0.677, 0.003), "caltech101": (0.766, 0.735, 0.008),
         "camvid": (0.594, 0.535, None), "nyuv2": (0.517, 0.364, None)}


def summarize(rows):
    best = np.array([max(row) for row in rows])
    last = np.array([row[-1] for row in rows])
    return {"runs": len(rows), "mean": best.mean(), "std": best.std(), "best": best.max(),
            "last_mean": last.mean(), "best_per_run": best.tolist()}


def load(path):
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist or is not a file; pass a log/DFAD-<dataset>.csv a run wrote.")
    rows = read_csv_rows(path)
    if not rows:
        raise UserError(f"{path} holds no runs yet.")
    return rows


def table(paths):
    lines = ["| dataset | teacher | student best (mean +- std) | student last | runs | paper teacher | paper student |",
             "|---|---|---|---|---|---|---|"]
    for path in paths:
        dataset = os.path.basename(path)[len("DFAD-"):-len(".csv")]
        s = summarize(load(path))
        records = read_run_records(path[:-len(".csv")] + ".json")
        scores = [r["teacher"] for r in records if isinstance(r.get("teacher"), (int, float))]
        teacher = f"{np.mean(scores):.4f}" if scores else "-"
        paper = PAPER.get(dataset)
        paper_teacher = f"{paper[0]:.3f}" if paper else "-"
        paper_student = (f"{paper[1]:.3f}" + (f" +- {paper[2]:.3f}" if paper[2] is not None else "")) if paper else "-"
        lines.append(f"| {dataset} | {teacher} | {s['mean']:.4f} +- {s['std']:.4f} | {s['last_mean']:.4f} | "
                     f"{s['runs']} | {paper_teacher} | {paper_student} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", default=None, help="one log/DFAD-<dataset>.csv (default: a table of all)")
    parser.add_argument("--log_dir", default="log",
                        help="where the logs are, for the table; with --methods also a pattern such as "
                             "'runs/paper_table/*/log' (default: log)")
    parser.add_argument("--methods", action="store_true",
                        help="the methods table (dfad, random, dafl, KD; best, last, label-free) of "
                             "benchmarks/paper_table.py, from every log/DFAD-*.json")
    args = parser.parse_args(argv)
    if args.methods:
        pairs = paper_table.records_in(args.log_dir)
        if not pairs:
            raise UserError(f"no DFAD run records in {args.log_dir}/ yet; run a DFAD script first.")
        print("\n".join(paper_table.markdown(paper_table.group(pairs))))
        return None
    if args.log is None:
        paths = sorted(glob.glob(os.path.join(args.log_dir, "DFAD-*.csv")))
        if not paths:
            raise UserError(f"no DFAD logs in {args.log_dir}/ yet; run a DFAD script first.")
        print(table(paths))
        return None
    s = summarize(load(args.log))
    print("best of each run:", " ".join(f"{v:.4f}" for v in s["best_per_run"]))
    print(f"Mean={s['mean']:.4f}, Std={s['std']:.4f}, Best={s['best']:.4f} "
          f"(runs={s['runs']}, mean of last epochs={s['last_mean']:.4f})")
    return s


if __name__ == "__main__":
    cli.main_guard(main)
