"""The progress of an epoch: a tqdm bar on a terminal, plain lines everywhere else.

Where the output is a file or a cluster's log, a bar draws nothing and an epoch would
print nothing until it ends, which may be many minutes. There one line goes out at a
steady wall-clock interval instead:

    progress: epoch 3/40  round 17/50  Loss_S=0.1234  Loss_G=-0.5678  0.42 rounds/s  epoch ETA 1:11
"""
import os
import sys
import time

from tqdm import tqdm

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


class EpochProgress:
    """``total`` steps called ``unit`` (round, step), of which ``done`` were done before
    (a resumed epoch); shown only where ``enabled`` (the first process)."""

    def __init__(self, title, unit, total, done=0, enabled=True, refresh_every=10):
        self.title, self.unit, self.total, self.first = title, unit, total, done
        terminal = is_terminal(sys.stdout)
        self.bar = tqdm(desc=title, total=total, initial=done, leave=False, dynamic_ncols=True,
                        disable=not (enabled and terminal))
        self.lines = enabled and not terminal
        self.interval, self.refresh_every = interval_s(), refresh_every
        self.started = self.last = time.monotonic()

    def update(self, done, **values):
        """After each step: ``done`` steps of the epoch, ``values`` the losses (tensors or
        numbers, read only when shown)."""
        self.bar.update(1)
        if not self.bar.disable and (done % self.refresh_every == 0 or done == self.total):
            self.bar.set_postfix({k: f"{float(v):.4f}" for k, v in values.items()})
        if self.due():
            self.show(done, **values)

    def close(self):
        self.bar.close()

    def due(self):
        """Whether a line is due now."""
        return self.lines and time.monotonic() - self.last >= self.interval

    def show(self, done, **values):
        """Print the line for ``done`` steps of the epoch, with ``values`` (losses)."""
        self.last = time.monotonic()
        rate = (done - self.first) / max(self.last - self.started, 1e-9)
        eta = format_seconds((self.total - done) / rate) if rate > 0 else "-"
        shown = "  ".join(f"{k}={float(v):.4f}" for k, v in values.items())
        print(f"progress: {self.title}  {self.unit} {done}/{self.total}  {shown}  "
              f"{rate:.3g} {self.unit}s/s  epoch ETA {eta}", flush=True)
