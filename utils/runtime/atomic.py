"""Atomic file writes that never follow a planted link and never leave litter behind.

Every output is written to a fresh temporary file in the same folder (created with
``O_EXCL`` by :func:`tempfile.mkstemp`, so a symlink or file already at that name is
never written through) and renamed over the target. Temporary names carry the writing
process's host and pid, so a later run can remove those of processes that died
(SIGKILL, power loss) without touching those of a run still writing.
"""
import contextlib
import os
import re
import signal
import socket
import tempfile

from .errors import UserError

PREFIX = ".tmp-"
_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
# .tmp-<host>-<pid>-<mkstemp's 8 random characters><suffix>
_STALE = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def umask():
    """The process's umask, read without changing it (Linux), else by the usual swap."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_prefix():
    """Start of this process's temporary names: what :func:`sweep_stale` recognises."""
    return f"{PREFIX}{_HOST}-{os.getpid()}-"


def temp_file(path, suffix=""):
    """``(fd, name)`` of a new, exclusively created temporary file beside ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        return tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=folder)
    except OSError as e:
        raise UserError(f"Cannot write {path}: {e.strerror}. Choose a writable folder "
                        f"or fix its permissions.") from None


def publish(tmp, path):
    """Give ``tmp`` the permissions a plain ``open()`` would (0666 minus the umask;
    mkstemp makes 0600) and rename it over ``path``: a link at ``path`` is replaced,
    not followed."""
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


def write_bytes(path, write, suffix=""):
    """Call ``write(file)`` on a temporary file, then publish it as ``path``.

    Any failure or interruption removes the temporary file and leaves ``path`` as it was.
    """
    fd, tmp = temp_file(path, suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        publish(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


@contextlib.contextmanager
def signals_deferred(signals=(signal.SIGINT, signal.SIGTERM)):
    """Hold ``signals`` back (they are delivered on leaving) for a few renames that
    belong together."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    except (AttributeError, ValueError, OSError):  # not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_stale(folder):
    """Remove the temporary files that dead processes of this host left in ``folder``.

    Returns the names removed. Files of live processes and of other hosts (a shared
    file system) are left alone.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        match = _STALE.match(name)
        if match and match["host"] == _HOST and not _alive(int(match["pid"])):
            remove_quietly(os.path.join(folder, name))
            removed.append(name)
    return removed
