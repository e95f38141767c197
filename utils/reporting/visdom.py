"""Live plots in visdom that can never stall or kill a training run.

Plots are queued and sent by a background thread, so a slow or hung server costs
the training loop nothing. The connection is made lazily by that thread (nothing
connects at import or construction time). If the server cannot be reached, one
warning is printed and plots are dropped; the thread tries again after a back-off.
"""
import html
import logging
import queue
import sys
import threading
import time

from ..runtime.cli import VISDOM_PORT
from .images import denormalize, grid

HTTP_TIMEOUT_S = 5.0      # visdom's client has no timeout of its own: a hung server blocks forever
FIRST_BACKOFF_S = 30.0
QUEUE_SIZE = 256


def _make_client(port, env):
    import requests
    import visdom

    # visdom logs "Setting up a new session..." and socket notices as warnings.
    logging.getLogger("visdom").setLevel(logging.ERROR)

    class TimeoutVisdom(visdom.Visdom):
        def _handle_post(self, url, data=None):
            return self.session.post(url, data=data or {}, timeout=HTTP_TIMEOUT_S).text

    try:
        return TimeoutVisdom(server="http://127.0.0.1", port=port, env=env,
                             raise_exceptions=True, use_incoming_socket=False)
    except requests.RequestException as e:  # the constructor's first request can time out
        raise ConnectionError(str(e)) from None


class VisdomPlotter:
    """Sends scalars, image grids and text to visdom env ``env`` on 127.0.0.1:``port``."""

    def __init__(self, env, port=VISDOM_PORT, enabled=True):
        self.env, self.port, self.enabled = env, port, enabled
        self._queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread = None
        self._warned = False
        self._started_windows = set()   # windows this run has drawn: later points append

    # ---- public API, called from the training loop ---------------------------------
    def scalar(self, win, x, y):
        self._put(("line", win, float(x), float(y)))

    def images(self, win, images, mean=(0.5,), std=(0.5,), nrow=8):
        """Show a batch of normalised images as one grid."""
        if not self.enabled:
            return
        images = denormalize(images.detach().float().cpu(), mean, std)
        picture = grid(images, nrow=nrow)
        self._put(("image", win, picture.numpy()))

    def color_images(self, win, images, nrow=8):
        """Show a batch of images already in [0, 1] (e.g. colour-coded label maps)."""
        if not self.enabled:
            return
        picture = grid(images, nrow=nrow)
        self._put(("image", win, picture.numpy()))

    def table(self, win, mapping):
        rows = "".join(f"<tr><td><b>{html.escape(str(k))}</b></td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in mapping.items())
        self._put(("text", win, f"<table>{rows}</table>"))

    def close(self, timeout=10.0):
        """Let queued plots go out (bounded wait), then stop the sender thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._thread = None

    # ---- sender thread ---------------------------------------------------------------
    def _put(self, message):
        if not self.enabled:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_loop, name="visdom-sender", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            pass  # the server is too slow: drop the plot rather than slow down training

    def _send_loop(self):
        client, retry_at, backoff = None, 0.0, FIRST_BACKOFF_S
        while True:
            message = self._queue.get()
            if message is None:
                return
            if time.monotonic() < retry_at:
                continue
            try:
                if client is None:
                    client = _make_client(self.port, self.env)
                self._draw(client, message)
                backoff = FIRST_BACKOFF_S
            except Exception as e:  # any failure of a plot must not reach training
                client, retry_at = None, time.monotonic() + backoff
                backoff = min(backoff * 2, 600.0)
                self._warn(e)

    def _draw(self, client, message):
        kind, win = message[0], message[1]
        if kind == "line":
            x, y = message[2], message[3]
            update = "append" if win in self._started_windows else None
            opts = dict(title=win, xlabel="iteration" if win.startswith("Loss") else "epoch")
            if win.startswith("lr"):  # learning rates span decades: a linear axis shows a flat 0
                opts["ytype"] = "log"
            client.line(X=[x], Y=[y], win=win, update=update, opts=opts)
        elif kind == "image":
            picture = message[2]
            height, width = picture.shape[1:]
            scale = max(1, 400 // max(height, width))  # small digits are unreadable at 1:1
            client.image(picture, win=win, opts=dict(title=win, width=width * scale + 40,
                                                  height=height * scale + 60, store_history=False))
        elif kind == "text":
            client.text(message[2], win=win, opts=dict(title=win))
        self._started_windows.add(win)

    def _warn(self, error):
        if self._warned:
            return
        self._warned = True
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"Warning: cannot reach the visdom server at 127.0.0.1:{self.port} ({reason}). "
              f"The run goes on without live plots; start one with "
              f"'python -m visdom.server -port {self.port} -bind_local', or pass --no_visdom "
              f"to silence this.", file=sys.stderr, flush=True)


