"""The paper's Table 2 from run records: per data set and row (a method, or a method with
options such as dfad+ema), the mean +- sample std over runs (seeds) of the best epoch on
the test set (the paper's convention), of the last epoch, of the student chosen without
labels and of the mean of the last 5 epochs, the epoch-to-epoch spread over the last 10
epochs, and the paper's figures beside; then a footnote that defines every column and
says where the records came from (budget, hardware, code commit, teacher file).

Rows come from the method registry (``utils/engine/methods``), handed in as ``registry``
(anything with ``row_label(record)``, ``ROW_ORDER`` and ``METHODS``), so that this module
imports nothing of the engine.

A README shows such a table between markers naming a folder of records,
``<!-- table: results/records/digits -->`` ... ``<!-- /table -->``: the text between them
is exactly what :func:`report` makes of the records in that folder
(:func:`check_marked_tables` says where it is not; :func:`fill_marked_tables` rewrites them).
A marker naming a ``.json`` file shows the speed record of ``benchmarks/bench_game.py --json``
it holds (:func:`speed_report`).
"""
import glob
import os
import re

import numpy as np

from .records import read_run_record, read_run_records

# Paper, Tables 2 and 3 (SPEC.md, "Published results"): teacher and each method's student.
PAPER = {
    "mnist": {"teacher": "0.989", "dfad": "0.983 +- 0.002", "dafl": "0.981", "random": "0.747", "KD-ORI": "0.988"},
    "cifar10": {"teacher": "0.955", "dfad": "0.933 +- 0.000", "dafl": "0.885", "random": "0.101", "KD-ORI": "0.939"},
    "cifar100": {"teacher": "0.775", "dfad": "0.677 +- 0.003", "dafl": "0.614", "random": "0.015", "KD-ORI": "0.733"},
    "caltech101": {"teacher": "0.766", "dfad": "0.735 +- 0.008", "dafl": "failed", "random": "0.010", "KD-ORI": "0.775"},
    "camvid": {"teacher": "0.594", "dfad": "0.535", "dafl": "0.010", "random": "0.018", "KD-ORI": "0.535"},
    "nyuv2": {"teacher": "0.517", "dfad": "0.364", "dafl": "0.105", "random": "0.021", "KD-ORI": "0.380"},
}
HEADER = ["| dataset | method | runs | teacher | best on test | last | label-free | last-5 mean | last-10 std | paper |",
          "|---|---|---|---|---|---|---|---|---|---|"]
LAST_MEAN, LAST_STD = 5, 10  # epochs at the end of a run the stability columns look at
DEFINITIONS = (
    f"- Each figure is the mean +- the sample standard deviation (ddof=1) over the row's runs "
    f"(seeds); a single run shows its value. best on test: the best epoch on the labelled test "
    f"set (the paper's convention; it chooses with test labels); last: the last epoch; label-free: "
    f"the student chosen without labels; last-{LAST_MEAN} mean: the mean test metric over a run's "
    f"last min({LAST_MEAN}, n) epochs (n: its epochs); last-{LAST_STD} std: the sample standard "
    f"deviation of the test metric over a run's last min({LAST_STD}, n) epochs, averaged over the "
    f"runs (how much the student moves from epoch to epoch at the end; '-' for one-epoch runs).")
OPEN_MARKER = re.compile(r"<!--\s*table:\s*(\S+?)\s*-->")
CLOSE_MARKER = "<!-- /table -->"


def dataset_of(record, path):
    """From the record, else from its file's name: DFAD-<dataset>[-<method>].json for a log,
    <dataset>-<cell>.json for a committed record (data set names hold no dash). A pair of
    networks other than the script's reference pair follows it: cifar100 (wrn40_2-wrn16_1)."""
    name = os.path.basename(path)[:-len(".json")]
    dataset = record.get("args", {}).get("dataset") or name.removeprefix("DFAD-").partition("-")[0]
    return f"{dataset} ({record['pair']})" if record.get("pair") else dataset


def records_in(log_dir):
    """(path, record) of every run in ``log_dir``: its logs DFAD-*.json (lists of records,
    as the scripts append them) and its committed records, any other *.json (one record
    each, as ``benchmarks/paper_table.py --records`` writes them). ``log_dir`` may be a
    pattern, e.g. runs/paper_table/*/log for every cell of benchmarks/paper_table.py."""
    pairs = []
    for path in sorted(glob.glob(os.path.join(log_dir, "*.json"))):
        if os.path.basename(path).startswith("DFAD-"):
            pairs += [(path, r) for r in read_run_records(path)]
        else:
            pairs.append((path, read_run_record(path)))
    return pairs


def group(pairs, label):
    """Records by (data set, row label); ``label(record)`` names a record's row (the method
    registry's ``row_label``)."""
    cells = {}
    for path, record in pairs:
        cells.setdefault((dataset_of(record, path), label(record)), []).append(record)
    return cells


def numbers(values):
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)]


def mean_std(values):
    """Mean +- sample std (ddof=1); one value shows alone, none as '-'."""
    values = numbers(values)
    if not values:
        return "-"
    return f"{np.mean(values):.4f} +- {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def last_mean(history, count=LAST_MEAN):
    """The mean test metric over the last min(count, n) epochs; None without epochs."""
    tail = numbers(history or [])[-count:]
    return float(np.mean(tail)) if tail else None


def last_std(history, count=LAST_STD):
    """The sample std of the test metric over the last min(count, n) epochs; None with
    fewer than two."""
    tail = numbers(history or [])[-count:]
    return float(np.std(tail, ddof=1)) if len(tail) > 1 else None


def mean_only(values):
    values = numbers(values)
    return f"{np.mean(values):.4f}" if values else "-"


def markdown(cells, order=()):
    """The table as markdown lines, one row per (data set, row label). Rows follow
    ``order`` (method labels; a variant such as dfad+ema follows its method's row), the
    others after them by name."""
    def rank(key):
        dataset, label = key
        method = label.partition("+")[0]
        return (dataset, order.index(method) if method in order else len(order), method, label)
    lines = list(HEADER)
    for key in sorted(cells, key=rank):
        dataset, label = key
        rs = cells[key]
        paper = PAPER.get(dataset, {})
        histories = [r.get("history") for r in rs]
        lines.append(f"| {dataset} | {label} | {len(rs)} | {mean_std([r.get('teacher') for r in rs])} | "
                     f"{mean_std([r.get('best') for r in rs])} | {mean_std([r.get('last') for r in rs])} | "
                     f"{mean_std([r.get('labelfree') for r in rs])} | "
                     f"{mean_std([last_mean(h) for h in histories])} | {mean_only([last_std(h) for h in histories])} | "
                     f"{paper.get(label, '-')} (teacher {paper.get('teacher', '-')}) |")
    return lines


def counted(values, unit="run"):
    """'a (2 runs); b (1 run)' of distinct values, sorted."""
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return "; ".join(f"{v} ({n} {unit}{'s' if n > 1 else ''})" for v, n in sorted(counts.items()))


def budget_of(record):
    """The run's length, batch and learning-rate schedule: a decay changes what the last
    epochs mean, so runs with and without one never share a budget line."""
    args = record.get("args", {})
    schedule = f", --scheduler --step_size {args.get('step_size', '?')}" if args.get("scheduler") else ""
    return (f"{args.get('dataset', '?')}: {args.get('epochs', '?')} epochs x {args.get('epoch_itrs', '?')} "
            f"rounds, batch {args.get('batch_size', '?')}{schedule}")


def code_of(record):
    commit = record.get("commit")
    if not commit:
        return "not recorded"
    return commit[:12] + (" with uncommitted changes" if record.get("dirty") else "")


def teacher_of(record):
    args, digest = record.get("args", {}), record.get("teacher_sha256")
    return f"{args.get('dataset', '?')} {digest[:12] if digest else 'not recorded'}"


def footnote(cells, notes=None):
    """What the table's columns mean and where its records came from, as markdown list lines;
    ``notes`` maps a method's name to what it does not take from its official recipe."""
    records = [r for rs in cells.values() for r in rs]
    if not records:
        return []
    lines = [DEFINITIONS,
             f"- Budgets: {counted(map(budget_of, records))}.",
             f"- Ran on: {counted(r.get('device', 'device not recorded') for r in records)}.",
             f"- Code (git commit): {counted(map(code_of, records))}. Teacher file (sha256): "
             f"{counted(map(teacher_of, records))}."]
    names = sorted({r.get("method", "dfad") for r in records})
    lines += [f"- {notes[name]}." for name in names if (notes or {}).get(name)]
    return lines


def report(pairs, registry):
    """The table and its footnote of the records ``pairs`` (markdown lines); ``registry``
    names the rows (``utils.engine.methods``)."""
    cells = group(pairs, registry.row_label)
    notes = {name: method.note for name, method in registry.METHODS.items()}
    return markdown(cells, registry.ROW_ORDER) + [""] + footnote(cells, notes)


def marked_tables(text):
    """(records folder, start, end) of every marked block in ``text``: the text between
    ``<!-- table: <folder> -->`` and the next ``<!-- /table -->`` is text[start:end]. A
    marker left open is a ValueError."""
    blocks = []
    for match in OPEN_MARKER.finditer(text):
        end = text.find(CLOSE_MARKER, match.end())
        following = OPEN_MARKER.search(text, match.end())
        if end < 0 or (following and following.start() < end):
            raise ValueError(f"<!-- table: {match.group(1)} --> has no {CLOSE_MARKER} before the next table")
        blocks.append((match.group(1), match.end(), end))
    return blocks


SPEED_HEADER = ["| config | batch | option | s / round | images/s | of fp32 peak (same run) | vs plain |",
                "|---|---|---|---|---|---|---|"]


def speed_report(record):
    """A speed record of ``benchmarks/bench_game.py --json``: its rows, then a line saying
    where, when, with which code and how busy the machine was."""
    lines = list(SPEED_HEADER)
    for r in record["rows"]:
        versus = f"{r['speedup_vs_plain']:.2f}x" if r.get("speedup_vs_plain") else "-"
        lines.append(f"| {r['config']} | {r['batch']} | {r['option']} | {r['seconds']:.3f} | "
                     f"{r['images_per_s']:.0f} | {r['of_peak']:.2f} | {versus} |")
    code = (record["commit"] or "unknown")[:10] + (" with uncommitted changes" if record["dirty"] else "")
    lines += ["", f"- {record['machine']}, {record['threads']} threads, torch {record['torch']}, fp32 matmul peak "
                  f"{record['peak_flops'] / 1e9:.0f} GFLOP/s (same run); 1-minute load average "
                  f"{record['load_average_start']:.1f} at the start, {record['load_average_end']:.1f} at the end; "
                  f"code {code}; {record['date']}. Each figure is the median of {record['repeats']} timed rounds "
                  f"after {record['warmup']} untimed; images/s counts the 6 batches of a round. "
                  f"Command: `{record['command']}`."]
    lines += [f"- Failed: {f['config']} batch {f['batch']} {f['option']} ({f['error']})." for f in record["failures"]]
    return lines


def rendered(folder, root, registry):
    """What the block of ``folder`` (relative to ``root``) must hold, from its records (a
    ``.json`` file instead: the speed record it holds)."""
    if folder.endswith(".json"):
        record = read_run_record(os.path.join(root, folder))
        if not isinstance(record, dict) or "rows" not in record:
            raise ValueError(f"<!-- table: {folder} -->: not a speed record of benchmarks/bench_game.py --json")
        return "\n".join(speed_report(record))
    pairs = records_in(os.path.join(root, folder))
    if not pairs:
        raise ValueError(f"<!-- table: {folder} -->: {os.path.join(root, folder)} holds no run records")
    return "\n".join(report(pairs, registry))


def check_marked_tables(text, root, registry):
    """Every way the marked blocks of ``text`` differ from what their records give (empty:
    none): the folder, and the first line that differs."""
    problems = []
    for folder, start, end in marked_tables(text):
        expected = rendered(folder, root, registry).splitlines()
        found = text[start:end].strip("\n").splitlines()
        if found != expected:
            i = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), min(len(found), len(expected)))
            problems.append(f"<!-- table: {folder} -->, line {i + 1} of the block: found "
                            f"{found[i] if i < len(found) else '(nothing)'!r}, the records give "
                            f"{expected[i] if i < len(expected) else '(nothing)'!r}")
    return problems


def fill_marked_tables(text, root, registry):
    """``text`` with every marked block rewritten from its records."""
    for folder, start, end in reversed(marked_tables(text)):
        text = text[:start] + "\n\n" + rendered(folder, root, registry) + "\n\n" + text[end:]
    return text
