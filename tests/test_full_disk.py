"""A full disk: one message naming the file, exit 2, the previous files intact, no litter,
and a best student never published without its generator.

A write that raises ENOSPC always runs (a real file whose writes fail past a limit, as a
full device makes them fail); a real small tmpfs runs where this process may mount one.
"""
import errno
import io
import os
import shutil
import subprocess

import pytest
import torch

import DFAD_mnist
from test_hostile_inputs import CSV, JSON, LAST, STUDENT_DIR, run_main, workdir  # noqa: F401 (fixture)
from test_hostile_inputs import GAME as HOSTILE_GAME
from utils.runtime import atomic

GAME = HOSTILE_GAME + ["--num_workers", "0"]  # 1 epoch x 2 rounds, batch 8
STUDENT = os.path.join(STUDENT_DIR, "digits-lenet5_half.pt")
GENERATOR = os.path.join(STUDENT_DIR, "digits-lenet5_half-generator.pt")


class FullDevice(io.FileIO):
    """A real file on a device that holds ``room`` more bytes: writes past it fail as
    the kernel fails them, with ENOSPC."""

    room = 0

    def write(self, data):
        if self.tell() + memoryview(data).nbytes > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def fill_up(monkeypatch, room, suffix):
    """From now on, temporary files ending in ``suffix`` hold at most ``room`` bytes."""
    def open_temp(fd, tmp):
        if not tmp.endswith(suffix):
            return os.fdopen(fd, "wb")
        f = FullDevice(fd, "wb")
        f.room = room
        return f
    monkeypatch.setattr(atomic, "_open_temp", open_temp)


def contents(*paths):
    return {p: open(p, "rb").read() for p in paths}


def temporaries(*folders):
    return [f for d in folders for f in os.listdir(d) if f.startswith(".tmp-")]


def assert_named(result, path):
    code, out, err = result
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"Error: No space left on the device while writing {path} (")
    assert "previous version" in err and "Free some space" in err and "another disk" in err


def test_full_disk_keeps_the_student_and_its_generator_as_a_pair(workdir, monkeypatch, capsys):
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0
    before = contents(STUDENT, GENERATOR, LAST, CSV, JSON)
    fill_up(monkeypatch, room=1_000_000, suffix=".pt")  # the student (60 kB) fits, its generator (3 MB) not
    assert_named(run_main(DFAD_mnist.main, GAME, capsys), GENERATOR)
    assert contents(*before) == before  # the previous pair, resume point and logs
    assert temporaries(STUDENT_DIR, "log") == []


def test_full_disk_while_logging_keeps_the_logs_and_the_run_logs_on_resume(workdir, monkeypatch, capsys):
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0
    logs = contents(CSV, JSON)
    with monkeypatch.context() as full:
        fill_up(full, room=100, suffix=".txt")  # the CSV log fits, the JSON record not
        assert_named(run_main(DFAD_mnist.main, GAME, capsys), JSON)
    assert contents(CSV, JSON) == logs and temporaries(STUDENT_DIR, "log") == []
    # Space freed: the finished run is logged, not trained again.
    code, out, err = run_main(DFAD_mnist.main, GAME + ["--resume"], capsys)
    assert code == 0 and "Epoch 1/1" not in out, err
    assert len(open(CSV).read().splitlines()) == 2


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 MB tmpfs, mounted for the test (root in a sandbox usually may; else skipped)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}); "
                    f"the ENOSPC tests above cover the same code")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_on_a_small_tmpfs(small_tmpfs, workdir, monkeypatch, capsys):
    shutil.copytree(workdir / "checkpoint", small_tmpfs / "checkpoint")
    monkeypatch.chdir(small_tmpfs)
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0
    used, last = shutil.disk_usage(small_tmpfs).used, os.path.getsize(LAST)
    # Room for the new best pair, not for a second -last.pt beside the first one.
    size_kb = (used + last // 2) // 1024
    subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(small_tmpfs)], check=True)
    before = contents(LAST, CSV, JSON)

    assert_named(run_main(DFAD_mnist.main, GAME, capsys), LAST)
    assert contents(*before) == before and temporaries(STUDENT_DIR, "log") == []
    torch.load(GENERATOR, weights_only=True)  # the new best pair was written whole
