"""Faults and bad input: resume after a kill, clean stops, safe loading, divergence, hung plots."""
import inspect
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import DFAD_mnist
import network
import train_teacher
from conftest import ROOT, run_script
from utils.reporting import visdom as visualizer
from utils.runtime.errors import UserError

PLOTTED_GAME = ["--dataset", "digits", "--epochs", "3", "--epoch_itrs", "16", "--batch_size", "8",
                "--log_interval", "5"]
GAME = PLOTTED_GAME + ["--no_visdom"]
LAST = os.path.join("checkpoint", "student", "digits-lenet5_half-last.pt")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--no_visdom"])
    finally:
        os.chdir(cwd)
    return folder / "checkpoint" / "teacher" / "digits-lenet5.pt"


@pytest.fixture
def workdir(tmp_path, teacher_file):
    (tmp_path / "checkpoint" / "teacher").mkdir(parents=True)
    os.link(teacher_file, tmp_path / "checkpoint" / "teacher" / "digits-lenet5.pt")
    return tmp_path


def start_dfad(cwd, *extra, game=GAME):
    return subprocess.Popen([sys.executable, str(ROOT / "DFAD_mnist.py"), *game, *extra], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
                                     DFAD_PROGRESS_INTERVAL_S="0"))  # a line per round: points to stop at


def wait_for_line(proc, prefix, timeout=120):
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
        assert time.monotonic() < deadline, f"no line starting with {prefix!r}"
    raise AssertionError(f"process ended before printing {prefix!r}")


def final_state(cwd):
    last = torch.load(cwd / LAST, weights_only=True)
    rows = (cwd / "log" / "DFAD-digits.csv").read_text().splitlines()
    return last["student"], last["generator"], rows


def assert_same_run(a, b):
    for x, y in zip(a[:2], b[:2]):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k
    assert a[2] == b[2]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, teacher_file):
    """The final state of the run uninterrupted: computed once, compared by both kill tests."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    (cwd / "checkpoint" / "teacher").mkdir(parents=True)
    os.link(teacher_file, cwd / "checkpoint" / "teacher" / "digits-lenet5.pt")
    result = run_script("DFAD_mnist.py", *GAME, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return final_state(cwd)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(workdir, uninterrupted):
    proc = start_dfad(workdir)
    wait_for_line(proc, "progress: epoch 2/3  round 3/16")
    proc.kill()
    proc.wait()
    assert not (workdir / "log" / "DFAD-digits.csv").exists()
    resumed = run_script("DFAD_mnist.py", *GAME, "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed from" in resumed.stdout and "Epoch 2/3" in resumed.stdout
    assert_same_run(final_state(workdir), uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_resume_is_exact(workdir, uninterrupted):
    proc = start_dfad(workdir)
    wait_for_line(proc, "progress: epoch 2/3  round 3/16")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "--resume" in err and "Traceback" not in err
    saved = torch.load(workdir / LAST, weights_only=True)
    assert saved["progress"]["epoch"] == 1 and 3 <= saved["progress"]["iteration"] < 16
    resumed = run_script("DFAD_mnist.py", *GAME, "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(final_state(workdir), uninterrupted)


def test_resume_with_other_arguments_is_refused(workdir):
    assert run_script("DFAD_mnist.py", *GAME, "--epochs", "1", cwd=workdir).returncode == 0
    result = run_script("DFAD_mnist.py", *GAME, "--resume", "--nz", "50", cwd=workdir)
    assert result.returncode == 2
    assert "--nz 100 (saved) vs 50 (now)" in result.stderr and "Traceback" not in result.stderr


def test_resume_without_a_saved_run_says_so(workdir):
    result = run_script("DFAD_mnist.py", *GAME, "--resume", cwd=workdir)
    assert result.returncode == 2 and "run without --resume" in result.stderr


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_never_runs(workdir):
    marker = workdir / "payload-ran"
    evil = workdir / "evil.pt"
    torch.save({"conv1.weight": Payload(marker)}, evil)
    result = run_script("DFAD_mnist.py", *GAME, "--ckpt", evil, cwd=workdir)
    assert result.returncode == 2 and "Refused to load" in result.stderr
    assert not marker.exists()


def test_truncated_checkpoint_gives_a_clear_error(workdir):
    good = (workdir / "checkpoint" / "teacher" / "digits-lenet5.pt").read_bytes()
    torn = workdir / "torn.pt"
    torn.write_bytes(good[: len(good) // 2])
    result = run_script("DFAD_mnist.py", *GAME, "--ckpt", torn, cwd=workdir)
    assert result.returncode == 2 and "truncated" in result.stderr and "Traceback" not in result.stderr


def test_divergence_names_the_player_and_keeps_the_last_good_checkpoint(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    DFAD_mnist.main(GAME[:2] + ["--epochs", "1", "--epoch_itrs", "2", "--batch_size", "8", "--no_visdom"])
    good = (workdir / LAST).read_bytes()
    with pytest.raises(UserError, match="The student diverged.*epoch 1, iteration 0"):
        DFAD_mnist.main(GAME[:2] + ["--epochs", "1", "--epoch_itrs", "2", "--batch_size", "8",
                                    "--no_visdom", "--lr_S", "1e30"])
    assert (workdir / LAST).read_bytes() == good


def test_unwritable_output_folder_fails_before_training(workdir):
    (workdir / "log").write_text("a file where the log folder should be")
    result = run_script("DFAD_mnist.py", *GAME, cwd=workdir)
    assert result.returncode == 2 and "Cannot write to the output folder log" in result.stderr
    assert not (workdir / LAST).exists()


def test_checkpoints_are_written_atomically(workdir, monkeypatch):
    """A failure while writing leaves the previous file and no temporary behind."""
    from utils.runtime import checkpoint
    target = workdir / "model.pt"
    checkpoint.save_state_dict(network.lenet.LeNet5(), target)
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_state_dict(network.lenet.LeNet5Half(), target)
    assert target.read_bytes() == before
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.slow
def test_visdom_server_killed_mid_run(workdir, visdom_server_proc):
    port, server = visdom_server_proc
    proc = start_dfad(workdir, "--visdom_port", str(port), game=PLOTTED_GAME)
    wait_for_line(proc, "Epoch 1/3")
    server.kill()
    out, err = proc.communicate(timeout=600)  # a guard against a hang, not a speed limit
    assert proc.returncode == 0 and "Best Acc=" in out
    assert err.count("cannot reach the visdom server") <= 1 and "Traceback" not in err


@pytest.mark.slow
def test_visdom_server_hung_mid_run(workdir, visdom_server_proc):
    port, server = visdom_server_proc
    proc = start_dfad(workdir, "--visdom_port", str(port), game=PLOTTED_GAME)
    wait_for_line(proc, "Epoch 1/3")
    server.send_signal(signal.SIGSTOP)
    try:
        out, err = proc.communicate(timeout=600)  # a guard against a hang, not a speed test
        assert proc.returncode == 0 and "Best Acc=" in out
        assert err.count("cannot reach the visdom server") <= 1 and "Traceback" not in err
    finally:
        server.send_signal(signal.SIGCONT)
    # The waits the code controls are bounded, whatever the machine's load: each request
    # times out, failed sends back off, and the exit waits a bounded time for the sender.
    assert visualizer.HTTP_TIMEOUT_S <= 5 and visualizer.FIRST_BACKOFF_S >= 30
    assert inspect.signature(visualizer.VisdomPlotter.close).parameters["timeout"].default <= 10


def test_resume_errors_keep_their_cause_and_let_bugs_through():
    from utils.runtime import checkpoint
    from utils.runtime.errors import UserError
    with pytest.raises(UserError, match="Cannot resume from x-last.pt") as error:
        with checkpoint.resume_errors("x-last.pt"):
            raise RuntimeError("size mismatch for conv1.weight")
    assert isinstance(error.value.__cause__, RuntimeError)
    with pytest.raises(AttributeError):  # a bug in the project keeps its traceback
        with checkpoint.resume_errors("x-last.pt"):
            raise AttributeError("'NoneType' object has no attribute 'load_state_dict'")
