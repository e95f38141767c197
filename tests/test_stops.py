"""Stops from every source save and exit 130/143, and the run resumes.

Waits here only order events (a line was printed, then a signal is sent); nothing
asserts how long the code took.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import DFAD_mnist
import network
from conftest import ROOT, free_port
from test_hostile_inputs import GAME, LAST, run_main
from utils.engine import loop

LONG_GAME = ["--epochs", "3", "--epoch_itrs", "16", "--batch_size", "8", "--no_visdom"]
INTO_EPOCH_2 = "progress: epoch 2/3  round 3/16"  # a line per round: a known point to stop at
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
           DFAD_PROGRESS_INTERVAL_S="0")

pytestmark = pytest.mark.slow  # subprocesses under signals and torchrun: the slow tier


def start(cmd, cwd):
    """A job in a process group of its own, as a shell or a batch system starts one."""
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)


def wait_for_line(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"process ended before printing {prefix!r}: {proc.stderr.read()[-2000:]}")


def random_teacher(folder, name):
    os.makedirs(folder / "checkpoint" / "teacher", exist_ok=True)
    torch.save(network.lenet.LeNet5().state_dict(), folder / "checkpoint" / "teacher" / name)


def temporaries(folder):
    return [f for f in os.listdir(folder) if f.startswith(".tmp-")]


def test_sigterm_to_the_process_group_with_loader_workers_saves_and_resumes(tmp_path):
    from datagen import write_mnist
    write_mnist(tmp_path / "data", n_train=30, n_test=40)
    random_teacher(tmp_path, "mnist-lenet5.pt")
    cmd = [sys.executable, str(ROOT / "DFAD_mnist.py"), "--dataset", "mnist", "--data_root", "data",
           "--num_workers", "2", "--test_batch_size", "8", *LONG_GAME]
    proc = start(cmd, tmp_path)
    wait_for_line(proc, INTO_EPOCH_2)
    os.killpg(proc.pid, signal.SIGTERM)  # the job's every process: loader workers too
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "Resume with the same command plus --resume" in err and "Traceback" not in err
    saved = torch.load(tmp_path / "checkpoint" / "student" / "mnist-lenet5_half-last.pt", weights_only=True)
    assert saved["progress"]["epoch"] == 1 and 3 <= saved["progress"]["iteration"] < 16
    assert temporaries(tmp_path / "checkpoint" / "student") == [] and not (tmp_path / "log" / "DFAD-mnist.csv").exists()

    resumed = start(cmd + ["--resume"], tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "Resumed from" in out and "Epoch 3/3" in out
    assert len((tmp_path / "log" / "DFAD-mnist.csv").read_text().splitlines()) == 1


def test_sigterm_during_evaluation_keeps_the_evaluated_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    random_teacher(tmp_path, "digits-lenet5.pt")
    calls, run = [], loop.run

    def run_with_a_stop_in_the_evaluation(args, exp, device):
        evaluate = exp.evaluate

        def evaluate_then_stop(*a):
            calls.append(1)
            if len(calls) == 2:  # the first is the teacher's; the second ends epoch 1
                os.kill(os.getpid(), signal.SIGTERM)
            return evaluate(*a)
        exp.evaluate = evaluate_then_stop
        return run(args, exp, device)
    monkeypatch.setattr(loop, "run", run_with_a_stop_in_the_evaluation)
    code, out, err = run_main(DFAD_mnist.main, GAME[:2] + ["--epochs", "2"] + GAME[4:], capsys)
    assert code == 143 and "Stopped after epoch 1" in err and "Traceback" not in err
    assert "Epoch 1/2" in out and "Epoch 2/2" not in out
    saved = torch.load(LAST, weights_only=True)
    assert (saved["progress"]["epoch"], saved["progress"]["iteration"], len(saved["progress"]["history"])) == (1, 0, 1)


def torchrun_cmd(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
            "127.0.0.1", "--master_port", str(free_port()), str(ROOT / "DFAD_mnist.py"),
            "--dataset", "digits", *LONG_GAME, *args]


def test_sigterm_to_the_torchrun_agent_saves_in_the_workers_and_resumes(tmp_path):
    random_teacher(tmp_path, "digits-lenet5.pt")
    proc = start(torchrun_cmd(), tmp_path)
    wait_for_line(proc, INTO_EPOCH_2)
    proc.send_signal(signal.SIGTERM)  # the agent only: it forwards SIGTERM to its workers
    _, err = proc.communicate(timeout=300)
    assert err.count("Resume with the same command plus --resume") == 2  # both workers saved and stopped
    # torchrun's agent ends by re-raising the signal as an exception, by its own design:
    # status 1 and its traceback, after its workers have exited (README, "When things go wrong").
    assert proc.returncode == 1 and "SignalException" in err
    saved = torch.load(tmp_path / LAST, weights_only=True)
    assert saved["progress"]["epoch"] == 1 and 3 <= saved["progress"]["iteration"] < 16 and saved["world_size"] == 2

    resumed = start(torchrun_cmd("--resume"), tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "Resumed from" in out and "Epoch 3/3" in out


LONG_STEP = """
import pytest
import torch
from utils.runtime.signals import GracefulStop
torch.set_num_threads(1)
a = torch.randn(3000, 3000) / 60
with GracefulStop():
    print("ready", flush=True)
    try:
        torch.linalg.multi_dot([a] * 40)  # one native call of many seconds: no Python runs in it
    finally:
        print("step ended", flush=True)
"""


def test_second_ctrl_c_ends_a_long_step_at_once(tmp_path):
    from utils.runtime.signals import SECOND_PRESS_AFTER_S
    proc = start([sys.executable, "-c", LONG_STEP], tmp_path)
    wait_for_line(proc, "ready")
    proc.send_signal(signal.SIGINT)
    time.sleep(SECOND_PRESS_AFTER_S + 0.5)  # a second press, not the first one delivered twice
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Second Ctrl-C: stopped at once" in err
    assert "step ended" not in out  # it did not wait for the step to finish
