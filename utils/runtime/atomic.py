"""Atomic file writes that never follow a planted link and never leave litter behind.

Every output is written to a fresh temporary file in the same folder (created with
``O_EXCL`` by :func:`tempfile.mkstemp`, so a symlink or file already at that name is
never written through) and renamed over the target. Temporary names carry the writing
process's host and pid, so a later run can remove those of processes that died
(SIGKILL, power loss) without touching those of a run still writing.
"""
import contextlib
import errno
import os
import re
import shutil
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
    write_all([(path, write, suffix)])


def write_all(items):
    """Publish several files together: ``items`` are ``(path, write, suffix)``; each
    ``write(file)`` fills a temporary file, and only once all are written are they all
    renamed (stop signals held back meanwhile). A failure, a full disk included, leaves
    every ``path`` as it was and no temporary file behind.
    """
    written, current = [], None
    try:
        for path, write, suffix in items:
            current = path
            fd, tmp = temp_file(path, suffix)
            written.append((tmp, path))
            with _open_temp(fd, tmp) as f:
                write(f)
        with signals_deferred():  # a stop between two renames would publish half of them
            for tmp, path in written:
                publish(tmp, path)
    except BaseException as e:
        for tmp, _ in written:
            remove_quietly(tmp)  # those published are gone already
        if is_no_space(e):
            raise no_space_error(current) from None
        if isinstance(e, OSError) and e.errno is not None:  # name the target, not its temporary
            raise OSError(e.errno, e.strerror, current) from e
        raise


def _open_temp(fd, tmp):
    """The file object a temporary file is written through (a seam for tests)."""
    return os.fdopen(fd, "wb")


NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_no_space(error):
    """Whether ``error`` or an exception it wraps says the disk is full (or the quota
    spent). torch.save's zip writer turns the OSError of a failed write into a
    RuntimeError ("enforce fail at inline_container.cc") that keeps it only as its
    context, so the whole chain is searched."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def no_space_error(path):
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free there now"
    except OSError:
        free = "its free space unknown"
    return UserError(f"No space left on the device while writing {path} ({free}). Nothing was "
                     f"half-written: that file and every other one keep their previous version. Free "
                     f"some space on that device, or run from a folder on another disk, then run the "
                     f"same command again (with --resume if a -last.pt checkpoint was saved).")


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
