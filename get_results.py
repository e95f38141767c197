"""Summarise DFAD runs from their logs.

    python get_results.py --log log/DFAD-mnist.csv   # one log: best of each run, mean, std, best
    python get_results.py                            # every DFAD run's log/DFAD-*.csv: a paper-style table
                                                     # (baselines' logs are named, not tabled: --methods)
    python get_results.py --methods                  # every log/DFAD-*.json: the paper's Table 2
    python get_results.py --methods --log_dir 'runs/paper_table/*/log'   # benchmarks/paper_table.py's cells

A CSV row is one run's test metric after every epoch (the reference's format); the
JSON file beside it adds each run's teacher score, method, last epoch and the student
chosen without labels. The --methods table is the one benchmarks/paper_table.py writes.
"""
import argparse
import glob
import os

import numpy as np

from utils.engine import methods
from utils.reporting import table as paper_table
from utils.runtime import cli
from utils.reporting.records import read_csv_rows, read_run_records
from utils.runtime.errors import UserError

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


def spread(s):
    """Mean +- std of the runs' best epochs; one run has no spread to show."""
    return f"{s['mean']:.4f} +- {s['std']:.4f}" if s["runs"] > 1 else f"{s['mean']:.4f}"


def log_identity(path, records):
    """(data set, method) of a CSV log: from its JSON records where they say, else from its
    name, DFAD-<dataset>[-<method>].csv (data set names hold no dash)."""
    dataset, _, method = os.path.basename(path)[len("DFAD-"):-len(".csv")].partition("-")
    datasets = {r.get("args", {}).get("dataset") for r in records} - {None}
    methods = {r["method"] for r in records if "method" in r}
    return (datasets.pop() if len(datasets) == 1 else dataset,
            methods.pop() if len(methods) == 1 else (method or "dfad"))


def table(paths):
    """The DFAD runs' summary, one row per CSV log; returns it and the baseline logs it leaves out."""
    lines = ["| dataset | teacher | student best (mean +- std) | student last | runs | paper teacher | paper student |",
             "|---|---|---|---|---|---|---|"]
    baselines = []
    for path in paths:
        records = read_run_records(path[:-len(".csv")] + ".json")
        dataset, method = log_identity(path, records)
        if method != "dfad":
            baselines.append(f"{path} ({method})")
            continue
        s = summarize(load(path))
        scores = [r["teacher"] for r in records if isinstance(r.get("teacher"), (int, float))]
        teacher = f"{np.mean(scores):.4f}" if scores else "-"
        paper = paper_table.PAPER.get(dataset, {})
        lines.append(f"| {dataset} | {teacher} | {spread(s)} | {s['last_mean']:.4f} | "
                     f"{s['runs']} | {paper.get('teacher', '-')} | {paper.get('dfad', '-')} |")
    return "\n".join(lines), baselines


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
        print("\n".join(paper_table.markdown(paper_table.group(pairs, methods.row_label), methods.ROW_ORDER)))
        return None
    if args.log is None:
        paths = sorted(glob.glob(os.path.join(args.log_dir, "DFAD-*.csv")))
        if not paths:
            raise UserError(f"no DFAD logs in {args.log_dir}/ yet; run a DFAD script first.")
        text, baselines = table(paths)
        if len(baselines) == len(paths):
            raise UserError(f"{args.log_dir}/ holds only baseline logs ({', '.join(baselines)}); this "
                            f"table summarises DFAD runs. `python get_results.py --methods` tables every method.")
        print(text)
        if baselines:
            print(f"Not in this table (baselines): {', '.join(baselines)}; "
                  f"`python get_results.py --methods` tables every method.")
        return None
    s = summarize(load(args.log))
    print(summary_line(s))
    return s


def summary_line(s):
    if s["runs"] == 1:
        return f"Best={s['best']:.4f}, last epoch {s['last_mean']:.4f} (1 run: no mean or std)"
    return (f"best of each run: {' '.join(f'{v:.4f}' for v in s['best_per_run'])}\n"
            f"Mean={s['mean']:.4f}, Std={s['std']:.4f}, Best={s['best']:.4f} "
            f"(runs={s['runs']}, mean of last epochs={s['last_mean']:.4f})")


if __name__ == "__main__":
    cli.main_guard(main)
