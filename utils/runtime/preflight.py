"""Checks of every output a run will write, made before it trains.

A run that could only fail at its end (a folder where a checkpoint goes, a damaged log
it appends to) fails at its start instead, with one message and nothing written.
"""
import os

from . import atomic, checkpoint
from .errors import UserError


def check_outputs(files=(), folders=()):
    """Fail unless every output can be written; remove dead runs' temporary files.

    ``files`` are written (replaced whole, or extended: a log's present content is the
    caller's to check), ``folders`` receive new files. Folders are created.
    """
    for path in files:
        check_file_target(path)
    folders = sorted({os.path.dirname(p) or "." for p in files} | set(folders))
    for folder in folders:  # all checked before any is created
        error = checkpoint.blocked_folder(folder)
        if error:
            raise error
    checkpoint.ensure_writable(*folders)
    for folder in folders:
        atomic.sweep_stale(folder)


def check_file_target(path):
    """``path`` is absent or a file that a rename may replace."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, but this run writes a file there. Move the folder "
                        f"away (or run from another directory), then start again.")
    if os.path.lexists(path) and not os.path.islink(path) and not os.path.isfile(path):
        raise UserError(f"{path} is not a regular file (a device, socket or pipe), but this run "
                        f"writes a file there. Remove it, then start again.")
