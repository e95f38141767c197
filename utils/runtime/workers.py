"""Data-loading workers that the main process stops itself, however a script ends.

Loader workers ignore SIGINT and SIGTERM (:func:`signals.ignore_stop_signals`): a stop
sent to the whole process group must reach only the main process, which saves first.
The price is that no such signal ends them, not even multiprocessing's ``terminate()``.

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
import weakref

from torch.utils.data import DataLoader

from .signals import STOP_SIGNALS, ignore_stop_signals

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
