"""Stop a run cleanly on SIGINT / SIGTERM: finish the current step, save, then exit.

Stops come from a terminal (Ctrl-C reaches every process of the job), from ``timeout``,
a cluster's time limit or ``kill -TERM -- -PGID`` (SIGTERM to every process), or from
torchrun's agent (it forwards the signal it got to its workers). Data-loading workers
ignore them (:func:`ignore_stop_signals`), so only the main process reacts, and saves.

So the main process stops its data-loading workers itself, however a script ends: no
stop signal ends them, not even multiprocessing's ``terminate()``.

PyTorch stops a loader's workers when its iterator is freed. An error raised in a worker
keeps that iterator alive: PyTorch re-raises it from a frame that holds the new exception
in a local variable, so the exception's traceback, that frame and the iterator's frames
form a reference cycle, which only the garbage collector frees, and not before the
interpreter's exit handlers run. There multiprocessing terminates its daemonic children
(SIGTERM, ignored) and then waits for them, forever: the run printed its error and never
exited. (PyTorch's own exit hook stops only persistent workers that pin memory, i.e.
on a GPU.) So every loader with workers is a :class:`Loader`, and :func:`stop_all`
(called by ``cli.main_guard`` as a script ends) stops their workers while PyTorch still can.
"""
import os
import signal
import sys
import threading
import time
import weakref

from torch.utils.data import DataLoader

from . import distributed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A second SIGINT sooner than this is the same Ctrl-C arriving twice (the terminal sends
# it to the whole job, torchrun's agent forwards its own copy), not a second press.
SECOND_PRESS_AFTER_S = 1.0


class Interrupted(Exception):
    """Raised once the run has saved its state after a SIGINT or SIGTERM."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def ignore_stop_signals(worker_id=None):
    """``worker_init_fn`` of every loader (:class:`Loader`): a stop sent to the
    whole process group must not kill the workers (PyTorch would then raise in the main
    process before it could save); the main process stops them itself."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    try:
        signal.set_wakeup_fd(-1)  # inherited from the parent by fork: its signals are not ours
    except ValueError:
        pass


def stop_outside_loop(signum, frame):
    """Handler outside the training loop (loading, evaluating the teacher, writing logs):
    nothing is in progress there, so stop at once with the usual exit status."""
    raise Interrupted(signum, f"{signal.Signals(signum).name} received outside the training loop: "
                              f"stopped, no training was lost. Run the same command again (with "
                              f"--resume if a -last.pt checkpoint was written) to go on.")


def install_outside_loop_handlers():
    try:
        for s in STOP_SIGNALS:
            signal.signal(s, stop_outside_loop)
    except ValueError:  # not the main thread: leave Python's defaults
        pass


class GracefulStop:
    """Within this context, SIGINT and SIGTERM only set ``signum``; the training loop
    checks it after each step. A second Ctrl-C stops at once, without saving, even in the
    middle of a long step (see :class:`_SecondPressWatcher`)."""

    def __init__(self):
        self.signum = None
        self._previous = {}
        self._watcher = None

    @property
    def requested(self):
        return self.signum is not None

    def follow(self, others_go_on):
        """Adopt a stop requested in another process (``others_go_on`` false, the flag all
        processes agreed on): every process then saves and exits as if it had received
        SIGTERM itself. Returns whether to stop now. A loop must break on this, not on
        ``requested``, which a signal arriving after the agreement sets in one process only:
        that process would stop while the others play on, all waiting in collectives that
        never match (the signal is taken at the next agreement instead)."""
        if not others_go_on and self.signum is None:
            self.signum = signal.SIGTERM
        return not others_go_on

    def raise_if_requested(self, message):
        """Raise :class:`Interrupted` if a stop arrived in any process (all agree)."""
        (go_on,) = distributed.agree(not self.requested)
        if not go_on:
            raise Interrupted(self.signum or signal.SIGTERM, message)

    def _handle(self, signum, frame):
        if self.signum is None:
            print(f"\n{signal.Signals(signum).name} received: stopping after the current step "
                  f"(press Ctrl-C again to stop at once, without saving).", flush=True)
        self.signum = self.signum or signum

    def __enter__(self):
        try:
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread (e.g. inside some test runners): no handlers
            self._previous.clear()
            return self
        self._watcher = _SecondPressWatcher()
        return self

    def __exit__(self, *exc):
        if self._watcher:
            self._watcher.close()
            self._watcher = None
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False


class _SecondPressWatcher:
    """Ends the process on a second SIGINT at once, from a thread of its own.

    Python runs signal handlers in the main thread between bytecodes, so during one long
    native operation (a big convolution, a backward pass) a handler would wait for its
    end. The interpreter's C-level handler also writes each signal's number to the
    "wakeup fd"; this thread reads it as it arrives.
    """

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="second-ctrl-c", daemon=True)
        self._thread.start()

    def _watch(self):
        first = None
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum != signal.SIGINT:
                    continue
                now = time.monotonic()
                if first is None:
                    first = now
                elif now - first >= SECOND_PRESS_AFTER_S:
                    os.write(2, b"\nSecond Ctrl-C: stopped at once, without saving; the checkpoints "
                                b"of the last finished epoch are intact (resume with --resume).\n")
                    os._exit(128 + signal.SIGINT)

    def close(self):
        signal.set_wakeup_fd(self._old_fd)
        os.close(self._write)  # the thread reads end-of-file and returns
        self._thread.join(timeout=5)
        os.close(self._read)


_iterators = weakref.WeakSet()  # the iterators of Loaders that started worker processes


class Loader(DataLoader):
    """A DataLoader whose workers ignore stop signals and are stopped by :func:`stop_all`."""

    def __init__(self, dataset, num_workers=0, **options):
        if num_workers:
            options.setdefault("worker_init_fn", ignore_stop_signals)
        super().__init__(dataset, num_workers=num_workers, **options)

    def __iter__(self):
        iterator = super().__iter__()
        if self.num_workers:
            _iterators.add(iterator)
        return iterator


def stop_all():
    """Stop the workers of every Loader: each finishes the item it is reading; one still
    busy after PyTorch's waits (5 s, and 5 s more after a SIGTERM it ignores) is killed.
    From here on a SIGINT or SIGTERM ends the process at once, workers included: the run
    is over, nothing is left to save, and the training loop's stop messages would mislead."""
    try:
        for s in STOP_SIGNALS:
            signal.signal(s, _kill_and_exit)
    except ValueError:  # not the main thread: no handlers of ours were installed either
        pass
    for iterator in list(_iterators):
        _stop(iterator)
    _iterators.clear()


def _stop(iterator):
    # PyTorch's own shutdown (what freeing the iterator runs): it also stops the pin-memory
    # thread and closes the queues, so that nothing waits on them at exit. PyTorch has no
    # public way to stop persistent workers.
    iterator._shutdown_workers()
    for worker in iterator._workers:
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)


def _kill_and_exit(signum, frame):
    """The stop signals' handler once the run is over."""
    for iterator in list(_iterators):
        for worker in iterator._workers:
            worker.kill()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(128 + signum)
