"""Output to a file or a cluster's log gets a plain progress line at a steady interval
(no tqdm bar there); a terminal keeps the bar and gets no such lines."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from test_hostile_inputs import workdir  # noqa: F401 (fixture)
from utils.reporting import progress

EVERY_STEP = {"DFAD_PROGRESS_INTERVAL_S": "0"}  # a line after every step: a short run shows them


def run_to_file(script, args, cwd, log, env):
    """The script with its output going to ``log`` (not a terminal), as on a cluster."""
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, stdout=f,
                              stderr=subprocess.STDOUT, timeout=300,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), **env)).returncode
    return code, open(log).read()


def test_dfad_prints_progress_lines_to_a_log_file(workdir):
    code, text = run_to_file("DFAD_mnist.py", ["--dataset", "digits", "--epochs", "1", "--epoch_itrs", "3",
                                               "--batch_size", "8", "--no_visdom", "--num_workers", "0"],
                             workdir, workdir / "run.log", EVERY_STEP)
    assert code == 0, text
    lines = [line for line in text.splitlines() if line.startswith("progress:")]
    assert [re.match(r"progress: epoch 1/1  round (\d)/3  Loss_S=-?\d\.\d{4}  Loss_G=-?\d\.\d{4}  "
                     r"[\d.e+-]+ rounds/s  epoch ETA (\d+:\d\d|-)$", line)[1] for line in lines] == ["1", "2", "3"]
    assert text.index("round 3/3") < text.index("Epoch 1/1  Loss_S=")


def test_teacher_prints_progress_lines_to_a_log_file(workdir):
    code, text = run_to_file("train_teacher.py", ["--dataset", "digits", "--epochs", "1", "--batch_size", "720",
                                                  "--no_visdom", "--num_workers", "0"],
                             workdir, workdir / "teacher.log", EVERY_STEP)
    assert code == 0, text
    lines = [line for line in text.splitlines() if line.startswith("progress:")]
    assert len(lines) == 2 and lines[0].startswith("progress: epoch 1/1  step 1/2  loss=")
    assert "steps/s  epoch ETA" in lines[0]


def test_a_terminal_gets_the_bar_and_no_progress_lines(monkeypatch, capsys):
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal, monkeypatch.context() as on_terminal:
        on_terminal.setattr(sys, "stdout", terminal)
        assert not progress.EpochProgress("epoch 1/1", "round", 3).due()
    os.close(leader)
    assert progress.EpochProgress("epoch 1/1", "round", 3).due()  # captured output: not a terminal


@pytest.mark.parametrize("value,expected", [("", 60.0), ("2.5", 2.5), ("0", 0.0), ("soon", 60.0), ("-1", 60.0)])
def test_the_interval_is_a_minute_unless_the_environment_says_otherwise(monkeypatch, value, expected):
    assert progress.INTERVAL_S == 60
    monkeypatch.setenv(progress.INTERVAL_ENV, value)
    assert progress.interval_s() == expected
