"""Summarise DFAD runs from their logs.

    python get_results.py --log log/DFAD-mnist.csv   # one log: best of each run, mean, std, best
    python get_results.py                            # every DFAD run's log/DFAD-*.csv: a paper-style table
                                                     # (baselines' logs are named, not tabled: --methods)
    python get_results.py --methods                  # every log/DFAD-*.json: the paper's Table 2
    python get_results.py --methods --log_dir 'runs/paper_table/*/log'   # benchmarks/paper_table.py's cells
    python get_results.py --methods --log_dir results/records/digits     # a grid's committed records
    python get_results.py --fill_tables docs/results.md   # rewrite the marked tables from their records
    python get_results.py --reproduce results/records/digits/digits-dfad-e10x50-b64-seed2.json [--run]
                                                     # the commands that regenerate a record; --run: run and compare

A CSV row is one run's test metric after every epoch (the reference's format); the
JSON file beside it adds each run's teacher score, method, last epoch and the student
chosen without labels. The --methods table is the one benchmarks/paper_table.py writes.
Standard deviations are sample ones (ddof=1), as papers report them.
"""
import argparse
import glob
import os

import numpy as np

from utils.engine import methods
from utils.reporting import reproduce
from utils.reporting import table as paper_table
from utils.runtime import cli
from utils.reporting.records import atomic_write_text, read_csv_rows, read_run_records
from utils.runtime.errors import UserError

def summarize(rows):
    best = np.array([max(row) for row in rows])
    last = np.array([row[-1] for row in rows])
    return {"runs": len(rows), "mean": best.mean(), "std": best.std(ddof=1) if len(rows) > 1 else 0.0,
            "best": best.max(),
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
    lines = ["| dataset | teacher | student best (mean +- sample std) | student last | runs | paper teacher | paper student |",
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
                        help="the methods table (one row per method and variant; best, last, label-free, "
                             "last-5 mean, last-10 std) of benchmarks/paper_table.py, from every run record "
                             "in --log_dir: logs DFAD-*.json and committed records <cell>.json")
    parser.add_argument("--fill_tables", metavar="FILE", default=None,
                        help="rewrite every table of FILE between <!-- table: <records folder> --> and "
                             "<!-- /table --> (folders relative to FILE's) from the records in that folder")
    replay = parser.add_argument_group("replaying a record (--reproduce)")
    replay.add_argument("--reproduce", metavar="RECORD", default=None,
                        help="print the commands that regenerate this run record (a committed cell, a teacher "
                             "record or a log/*.json), its teacher's recipe first, under the recorded threads")
    replay.add_argument("--run", action="store_true",
                        help="with --reproduce: run them in a scratch folder (runs/reproduce/) and compare the new "
                             "record with the old one epoch by epoch, naming the first epoch that differs and the "
                             "recorded conditions (CPU model, threads, versions) that differ here")
    replay.add_argument("--threads", type=cli.positive_int, default=None,
                        help="with --reproduce: replay at this many threads instead of the recorded count")
    replay.add_argument("--data_root", default="data",
                        help="with --reproduce: the data folder where the record's lies outside the project "
                             "(default: data)")
    replay.add_argument("--scratch", metavar="DIR", default=None,
                        help="with --reproduce --run: the folder to replay in (default: a new one in runs/reproduce/)")
    args = parser.parse_args(argv)
    if args.run and not args.reproduce:
        parser.error("--run replays a record: pass --reproduce RECORD as well")
    if args.reproduce:
        identical = reproduce.main(args.reproduce, args.run, args.threads, args.data_root, args.scratch)
        if identical is False:
            raise SystemExit(1)
        return identical
    if args.fill_tables:
        return fill_tables(args.fill_tables)
    if args.methods:
        pairs = paper_table.records_in(args.log_dir)
        if not pairs:
            raise UserError(f"no DFAD run records in {args.log_dir}/ yet; run a DFAD script first.")
        print("\n".join(paper_table.report(pairs, methods)))
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


def fill_tables(path):
    """Rewrite the marked tables of ``path`` from their records; returns the folders."""
    try:
        with open(path) as f:
            text = f.read()
        root = os.path.dirname(os.path.abspath(path))
        folders = [folder for folder, _, _ in paper_table.marked_tables(text)]
        filled = paper_table.fill_marked_tables(text, root, methods)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Cannot read {path}: {getattr(e, 'strerror', None) or e}.") from None
    except ValueError as e:
        raise UserError(f"{path}: {e}. Each table is <!-- table: <folder of records> -->, the table, then "
                        f"<!-- /table -->, the folder relative to {path}'s and holding records.") from None
    if not folders:
        raise UserError(f"{path} marks no table: put <!-- table: results/records/<grid> --> and "
                        f"<!-- /table --> (on lines of their own) where a grid's table goes.")
    if filled != text:
        atomic_write_text(path, filled)
    print(f"{'rewrote' if filled != text else 'unchanged'}: {path} ({', '.join(folders)})")
    return folders


def summary_line(s):
    if s["runs"] == 1:
        return f"Best={s['best']:.4f}, last epoch {s['last_mean']:.4f} (1 run: no mean or std)"
    return (f"best of each run: {' '.join(f'{v:.4f}' for v in s['best_per_run'])}\n"
            f"Mean={s['mean']:.4f}, Std={s['std']:.4f}, Best={s['best']:.4f} "
            f"(runs={s['runs']}, mean of last epochs={s['last_mean']:.4f})")


if __name__ == "__main__":
    cli.main_guard(main)
