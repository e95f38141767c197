"""The paper's Table 2 from run records: per data set and method, the mean +- std over
runs (seeds) of the best epoch on the test set (the paper's convention), of the last
epoch and of the student chosen without labels, with the paper's figures beside."""
import glob
import os

import numpy as np

from .records import read_run_records

# Paper, Tables 2 and 3 (SPEC.md, "Published results"): teacher and each method's student.
PAPER = {
    "mnist": {"teacher": "0.989", "dfad": "0.983 +- 0.002", "dafl": "0.981", "random": "0.747", "KD-ORI": "0.988"},
    "cifar10": {"teacher": "0.955", "dfad": "0.933 +- 0.000", "dafl": "0.885", "random": "0.101", "KD-ORI": "0.939"},
    "cifar100": {"teacher": "0.775", "dfad": "0.677 +- 0.003", "dafl": "0.614", "random": "0.015", "KD-ORI": "0.733"},
    "caltech101": {"teacher": "0.766", "dfad": "0.735 +- 0.008", "dafl": "failed", "random": "0.010", "KD-ORI": "0.775"},
    "camvid": {"teacher": "0.594", "dfad": "0.535", "dafl": "0.010", "random": "0.018", "KD-ORI": "0.535"},
    "nyuv2": {"teacher": "0.517", "dfad": "0.364", "dafl": "0.105", "random": "0.021", "KD-ORI": "0.380"},
}
HEADER = ["| dataset | method | runs | teacher | best on test (mean +- std) | last | label-free | paper |",
          "|---|---|---|---|---|---|---|---|"]


def dataset_of(record, path):
    """From the record, else from its file's name, DFAD-<dataset>[-<method>].json (data set
    names hold no dash)."""
    return (record.get("args", {}).get("dataset")
            or os.path.basename(path)[len("DFAD-"):-len(".json")].partition("-")[0])


def records_in(log_dir):
    """(path, record) of every run logged in ``log_dir``/DFAD-*.json; ``log_dir`` may be a
    pattern, e.g. runs/paper_table/*/log for every cell of benchmarks/paper_table.py."""
    return [(path, r) for path in sorted(glob.glob(os.path.join(log_dir, "DFAD-*.json")))
            for r in read_run_records(path)]


def group(pairs, label):
    """Records by (data set, row label); ``label(record)`` names a record's row (the method
    registry's ``row_label``)."""
    cells = {}
    for path, record in pairs:
        cells.setdefault((dataset_of(record, path), label(record)), []).append(record)
    return cells


def _stat(values):
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return "-"
    return f"{np.mean(values):.4f} +- {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def markdown(cells, order=()):
    """The table as markdown lines, one row per (data set, method); rows follow ``order``
    (row labels), others after them by name."""
    def rank(key):
        dataset, label = key
        return (dataset, order.index(label) if label in order else len(order), label)
    lines = list(HEADER)
    for key in sorted(cells, key=rank):
        dataset, label = key
        rs = cells[key]
        paper = PAPER.get(dataset, {})
        lines.append(f"| {dataset} | {label} | {len(rs)} | {_stat([r.get('teacher') for r in rs])} | "
                     f"{_stat([r.get('best') for r in rs])} | {_stat([r.get('last') for r in rs])} | "
                     f"{_stat([r.get('labelfree') for r in rs])} | {paper.get(label, '-')} "
                     f"(teacher {paper.get('teacher', '-')}) |")
    return lines
