"""Run records: console lines, the per-run CSV row and the JSON run summaries."""
import csv
import hashlib
import importlib.metadata
import io
import json
import locale
import os
import platform
import re
import subprocess
import sys

from ..runtime import atomic
from ..runtime.errors import UserError


def device_name(device):
    """What a run ran on, for its record: the GPU's name, or the CPU's model and core count."""
    import torch
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "CPU"
    return f"{model}, {os.cpu_count()} cores"


PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIT_SECONDS = 10


def code_version(root=PROJECT):
    """The project's git commit and whether tracked files outside results/ differ from it
    (results/ holds the committed records a grid adds while it runs, not code). None for
    both where there is no git or no repository."""
    def git(*command):
        return subprocess.run(["git", "-C", root, *command], capture_output=True, text=True,
                              timeout=GIT_SECONDS, check=True).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(changed.strip())}


def file_sha256(path):
    """The SHA-256 of a file (e.g. the teacher checkpoint), None where it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def provenance(args, device, teacher_path=None):
    """What a run record needs to be traced and regenerated: the code's commit, the
    teacher's hash (DFAD runs), the data read and the environment (:func:`environment`)."""
    import dataloader
    read = [args.dataset]
    if getattr(args, "method", None) == "kd":
        read.append(args.transfer_set or args.dataset)
    found = {**code_version(), "data": [dataloader.data_record(name, args.data_root) for name in read],
             "device": device_name(device), "environment": environment(args.deterministic, script_command())}
    if teacher_path is not None:
        found["teacher_sha256"] = file_sha256(teacher_path)
    return found


OUTSIDE = "<outside the project>"  # stands for a folder of the machine that ran, in records


def portable(value):
    """``value`` with every absolute path made relative to the project, or, outside it,
    replaced by OUTSIDE/<its last part>-<hash> (:func:`path_tag`): a record names no folder
    of the machine that ran.
    Lists and dicts are walked; anything else is returned as it is."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    inside = os.path.relpath(value, PROJECT)
    if not inside.startswith(os.pardir):
        return inside
    return f"{OUTSIDE}/{path_tag(value)}"


def path_tag(path):
    """A path's base name and a short hash of the whole path: a name with no slash that
    tells folders of the same name apart."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(os.path.normpath(path))) or "root"
    return f"{base}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def environment(deterministic, command=None):
    """What a run's numbers depend on beyond its arguments and device (``device_name``): the
    threads (the min-max game amplifies a change of summation order), the interpreter and
    libraries, and the command line as given (``command``: argv, script first; None when
    called as a function)."""
    import torch
    return {
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "command": portable(list(command)) if command else None, "cwd": portable(os.getcwd()),
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": importlib.metadata.version("torchvision"),
        "deterministic": bool(deterministic),
    }


def script_command():
    """argv of this process when it runs one of the project's scripts (``python DFAD_mnist.py
    ...``), else None (a function called by a test or a notebook)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or os.path.dirname(os.path.abspath(path)) != PROJECT:
        return None
    return list(sys.argv)


def format_seconds(seconds):
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_scores(title, scores):
    return title + ": " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items())


def epoch_line(epoch, epochs, loss_S, loss_G, metric_name, score, best, epoch_seconds, elapsed,
               epochs_timed=None):
    eta = elapsed / (epochs_timed or epoch) * (epochs - epoch)
    return (f"Epoch {epoch}/{epochs}  Loss_S={loss_S:.4f}  Loss_G={loss_G:.4f}  "
            f"{metric_name}={score:.4f} (best {best:.4f})  "
            f"{epoch_seconds:.1f}s/epoch  elapsed {format_seconds(elapsed)}  ETA {format_seconds(eta)}")


def _csv_with_row(path, values):
    old = ""
    if os.path.exists(path):
        read_csv_rows(path)  # refuse to extend a file that is not a metric log
        with open(path, newline="") as f:
            old = f.read()
        if old and not old.endswith("\n"):
            old += "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return old + buffer.getvalue()


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` through a fresh temporary file (never through a link)."""
    _publish_texts([(path, text)])


def _publish_texts(items):
    """Write every ``(path, text)`` to its temporary file first, then rename them all:
    either every file is updated or (short of a kill between two renames) none. A full
    disk is named as such (:func:`utils.runtime.atomic.write_all`)."""
    writes = [(path, _text_writer(text), ".txt") for path, text in items]
    try:
        atomic.write_all(writes)
    except OSError as e:
        raise UserError(f"Cannot write {e.filename or items[-1][0]}: {e.strerror}. Check that it "
                        f"is a file in a folder you can write to.") from None


def _text_writer(text):
    # The encoding open() would use: logs read back with open() must decode the same way.
    data = text.encode(locale.getpreferredencoding(False))
    return lambda f: f.write(data)


def log_run(csv_path, json_path, history, record):
    """Log a finished run: its CSV row and JSON record, both or neither.

    A run is identified by ``record["run_id"]``. Resumed after it had finished (nothing
    new trained), it is not logged again; extended with a larger --epochs, its new row and
    record replace its earlier ones (the new row holds every epoch, the earlier ones
    included), so get_results.py counts it once. Returns whether anything was written.
    """
    records = read_run_records(json_path)
    run_id = record.get("run_id")
    same = [i for i, r in enumerate(records) if run_id and r.get("run_id") == run_id]
    if any(records[i].get("epochs") == record.get("epochs") for i in same):
        print(f"This run is already logged in {csv_path} and {json_path}: nothing appended.", flush=True)
        return False
    lines = _csv_lines(csv_path)
    row = _csv_row(history)
    if same and len(lines) == len(records):  # written together, row i is record i
        i = same[-1]
        print(f"This run, extended from {records[i].get('epochs')} to {record.get('epochs')} epochs, "
              f"replaces its earlier row in {csv_path} and record in {json_path}.", flush=True)
        lines[i], records[i] = row, record
    else:
        lines.append(row)
        records.append(record)
    _publish_texts([(csv_path, "".join(lines)), (json_path, json.dumps(records, indent=1, default=str))])
    return True


def _csv_lines(path):
    """The non-empty lines of the metric log ``path`` (checked first), each ending in a newline."""
    if not os.path.exists(path):
        return []
    read_csv_rows(path)
    with open(path, newline="") as f:
        return [line + "\n" for line in f.read().splitlines() if line.strip()]


def _csv_row(values):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _load_json(path, advice):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path} is not a readable run record ({_reason(e)}). {advice}") from None


def read_run_records(path):
    """The JSON list of run records at ``path`` ([] when absent); a file that is not one
    is an error naming it."""
    if not os.path.exists(path):
        return []
    records = _load_json(path, "Move it away or repair it; runs append one record to it, and "
                            "get_results.py reads it.")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path} is not a run record: it should hold a JSON list of objects. Move it "
                        f"away or repair it.")
    return records


def read_run_record(path):
    """The one run record (a JSON object) committed at ``path``; anything else is an error
    naming it."""
    record = _load_json(path, "Move it away or repair it.")
    if not isinstance(record, dict):
        raise UserError(f"{path} is not a run record: it should hold one JSON object, as "
                        f"benchmarks/paper_table.py --records writes them. Move it away or repair it.")
    return record


def write_run_record(path, record):
    """Commit-ready copy of one run record at ``path`` (rewritten only when it changed, so
    that an unchanged record keeps its file untouched); returns whether it was written."""
    text = json.dumps(record, indent=1, default=str) + "\n"
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except (OSError, UnicodeDecodeError):
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write_text(path, text)
    return True


def _reason(error):
    lines = str(error).splitlines()
    return getattr(error, "strerror", None) or (lines[0] if lines else type(error).__name__)


def read_csv_rows(path):
    """Rows of numbers of the CSV metric log ``path``; anything else is an error naming it."""
    try:
        with open(path, newline="") as f:
            return [[float(v) for v in row] for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as e:
        raise UserError(f"{path} is not a readable metric log ({_reason(e)}): each line should be "
                        f"one run's comma-separated test metrics. Move it away or repair it.") from None


def check_logs(*paths):
    """Parse existing logs as a run will when it appends to them, before it trains."""
    for path in paths:
        if path.endswith(".json"):
            read_run_records(path)
        elif os.path.exists(path):
            read_csv_rows(path)
