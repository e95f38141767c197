"""Plain progress lines for output that is not a terminal (a file, a cluster's log).

There the tqdm bar is off (it only draws on a terminal), and an epoch would otherwise
print nothing until it ends, which may be many minutes. Instead one line goes out at a
steady wall-clock interval:

    progress: epoch 3/40  round 17/50  Loss_S=0.1234  Loss_G=-0.5678  0.42 rounds/s  epoch ETA 1:11
"""
import os
import sys
import time

from .records import format_seconds

INTERVAL_S = 60.0
INTERVAL_ENV = "DFAD_PROGRESS_INTERVAL_S"  # seconds between two lines, instead of INTERVAL_S


def interval_s():
    """INTERVAL_S, or the value of $DFAD_PROGRESS_INTERVAL_S when it is a number >= 0."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return INTERVAL_S
    return value if value >= 0 else INTERVAL_S


def is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class ProgressLines:
    """Progress of one epoch: ``total`` steps called ``unit`` (round, step), of which
    ``done`` were done before (a resumed epoch). Prints only where ``enabled`` and stdout
    is not a terminal."""

    def __init__(self, title, unit, total, done=0, enabled=True):
        self.title, self.unit, self.total, self.first = title, unit, total, done
        self.enabled = enabled and not is_terminal(sys.stdout)
        self.interval = interval_s()
        self.started = self.last = time.monotonic()

    def due(self):
        """Whether a line is due now (cheap: call it after every step)."""
        return self.enabled and time.monotonic() - self.last >= self.interval

    def show(self, done, **values):
        """Print the line for ``done`` steps of the epoch, with ``values`` (losses)."""
        self.last = time.monotonic()
        rate = (done - self.first) / max(self.last - self.started, 1e-9)
        eta = format_seconds((self.total - done) / rate) if rate > 0 else "-"
        shown = "  ".join(f"{k}={v:.4f}" for k, v in values.items())
        print(f"progress: {self.title}  {self.unit} {done}/{self.total}  {shown}  "
              f"{rate:.3g} {self.unit}s/s  epoch ETA {eta}", flush=True)
