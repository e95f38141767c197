"""Data-parallel runs with torchrun: 2 CPU processes over gloo."""
import os
import subprocess
import sys

import pytest
import torch

import train_teacher
from conftest import ROOT, free_port

DFAD = ["--dataset", "digits", "--epochs", "2", "--epoch_itrs", "3", "--batch_size", "8", "--no_visdom"]

pytestmark = pytest.mark.slow  # subprocesses under signals and torchrun: the slow tier


def torchrun(tmp_path, script, *args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(ROOT / "tests" / "ddp_probe.py"),
           str(tmp_path), script, *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def assert_identical_on_both_ranks(tmp_path, name):
    rank0 = torch.load(tmp_path / f"{name}-rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / f"{name}-rank1.pt", weights_only=True)
    for params0, params1 in zip(rank0, rank1):
        assert params0.keys() == params1.keys()
        for key in params0:
            assert torch.equal(params0[key], params1[key]), key


def test_teacher_and_dfad_data_parallel(tmp_path):
    teacher = torchrun(tmp_path, "train_teacher", "--dataset", "digits", "--epochs", "1",
                       "--batch_size", "64", "--no_visdom", "--num_workers", "0")
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    assert teacher.stdout.count("Best Acc=") == 1  # only the first process reports
    assert_identical_on_both_ranks(tmp_path, "teacher")

    result = torchrun(tmp_path, "DFAD_mnist", *DFAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Best Acc=") == 1
    assert_identical_on_both_ranks(tmp_path, "dfad")
    rows = (tmp_path / "log" / "DFAD-digits.csv").read_text().splitlines()
    assert len(rows) == 1 and len(rows[0].split(",")) == 2  # written once, by one process
    assert (tmp_path / "checkpoint" / "student" / "digits-lenet5_half.pt").exists()

    resumed = torchrun(tmp_path, "DFAD_mnist", *DFAD[:2], "--epochs", "3", *DFAD[4:], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "Epoch 3/3" in resumed.stdout
    rows = (tmp_path / "log" / "DFAD-digits.csv").read_text().splitlines()
    assert len(rows) == 1 and len(rows[0].split(",")) == 3  # the extended run's row is whole and replaces its own


def test_global_batch_must_split_evenly(tmp_path):
    result = torchrun(tmp_path, "train_teacher", "--dataset", "digits", "--batch_size", "7", "--no_visdom")
    assert result.returncode != 0 and "cannot be split evenly over 2 processes" in result.stderr
    assert not (tmp_path / "checkpoint").exists()  # refused before any training


def test_mad_with_replay_data_parallel_keeps_and_resumes_each_processs_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--no_visdom"])
    game = [*DFAD, "--method", "mad", "--replay", "--replay_every", "1"]
    result = torchrun(tmp_path, "DFAD_mnist", *game)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_identical_on_both_ranks(tmp_path, "dfad")  # the game's weights; the memories differ
    last = tmp_path / "checkpoint" / "student" / "digits-lenet5_half-mad-last.pt"
    before = torch.load(last, weights_only=True)["replay"]
    assert [len(m["entries"]) for m in before] == [2, 2]  # after epochs 1 and 2, on each process
    assert not torch.equal(before[0]["entries"][0], before[1]["entries"][0])  # each stores its own images

    resumed = torchrun(tmp_path, "DFAD_mnist", *game[:2], "--epochs", "3", *game[4:], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = torch.load(last, weights_only=True)["replay"]
    for rank in (0, 1):  # each process got its own memory back and went on storing
        assert len(after[rank]["entries"]) == 3
        assert all(torch.equal(a, b) for a, b in zip(after[rank]["entries"], before[rank]["entries"]))
