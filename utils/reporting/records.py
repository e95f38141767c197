"""Run records: console lines, the per-run CSV row and the JSON run summaries."""
import csv
import io
import json
import os

from ..runtime.errors import UserError


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


def append_csv_row(path, values):
    """Append one row (a run's per-epoch metric list) to ``path`` atomically.

    The file is rewritten through a temporary file and a rename, so a crash never
    leaves a half-written row behind.
    """
    old = ""
    if os.path.exists(path):
        with open(path, newline="") as f:
            old = f.read()
        if old and not old.endswith("\n"):
            old += "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    atomic_write_text(path, old + buffer.getvalue())


def atomic_write_text(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"Cannot write {path}: {e.strerror}.") from None


def append_run_record(path, record):
    """Add one run's summary (teacher score, best and last metric, arguments) to a JSON list."""
    records = read_run_records(path)
    records.append(record)
    atomic_write_text(path, json.dumps(records, indent=1, default=str))


def read_run_records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def read_csv_rows(path):
    with open(path, newline="") as f:
        return [[float(v) for v in row] for row in csv.reader(f) if row]
