"""Stop a run cleanly on SIGINT / SIGTERM: finish the current step, save, then exit."""
import signal


class Interrupted(Exception):
    """Raised once the run has saved its state after a SIGINT or SIGTERM."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class GracefulStop:
    """Within this context, SIGINT and SIGTERM only set ``signum``; the training loop
    checks it after each step. A second SIGINT stops at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def follow(self, others_go_on):
        """Adopt a stop requested in another process (``others_go_on`` false): every
        process then saves and exits as if it had received SIGTERM itself."""
        if not others_go_on and self.signum is None:
            self.signum = signal.SIGTERM

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after the current step "
              f"(press Ctrl-C again to stop at once, without saving).", flush=True)

    def __enter__(self):
        try:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread (e.g. inside some test runners): no handlers
            self._previous.clear()
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False
