"""A record regenerates from what it stores: its environment, its command, and the replay
of ``get_results.py --reproduce RECORD --run``."""
import json
import os
import re
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_script
from utils.reporting import records, reproduce
from utils.runtime.errors import UserError

ENVIRONMENT = {"threads", "interop_threads", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "command", "cwd", "python",
               "torch", "torchvision", "deterministic"}
TINY_RUN = ("--dataset", "digits", "--epochs", "2", "--epoch_itrs", "5", "--batch_size", "64", "--no_visdom")
REPLAY_RECORD = ROOT / "results" / "records" / "replay" / "digits-dfad-e2x5-b64-seed1.json"
# Folders of the machines that ran: none may appear in a committed file under results/.
MACHINE_PATHS = re.compile(r"(/work/|/home/|/tmp/|/root/|/Users/|[A-Z]:\\\\)")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A teacher (1 epoch) and a 2-epoch DFAD run on digits, both run as a user runs them."""
    folder = tmp_path_factory.mktemp("digits_run")
    teacher = run_script("train_teacher.py", "--dataset", "digits", "--epochs", "1", "--batch_size", "64",
                         "--no_visdom", cwd=folder, env={"OMP_NUM_THREADS": "1"})
    assert teacher.returncode == 0, teacher.stdout + teacher.stderr
    run = run_script("DFAD_mnist.py", *TINY_RUN, cwd=folder, env={"OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    return folder


def latest(path):
    return json.loads(Path(path).read_text())[-1]


@pytest.mark.slow
def test_a_run_record_carries_what_regenerating_it_needs(digits_run):
    record = latest(digits_run / "log" / "DFAD-digits.json")
    environment = record["environment"]
    assert ENVIRONMENT <= set(environment)
    assert environment["threads"] == 1 and environment["OMP_NUM_THREADS"] == "1"
    assert environment["interop_threads"] == torch.get_num_interop_threads()
    assert environment["command"] == ["DFAD_mnist.py", *TINY_RUN]  # the script, relative to the project
    assert environment["torch"] == torch.__version__ and environment["deterministic"] is False
    assert record["device"] == records.device_name("cpu")
    [data] = record["data"]
    assert data["dataset"] == "digits" and re.fullmatch(r"[0-9a-f]{64}", data["sha256"]["sklearn.datasets.load_digits"])
    assert record["teacher_sha256"] == records.file_sha256(digits_run / "checkpoint" / "teacher" / "digits-lenet5.pt")
    assert str(digits_run) not in json.dumps(record)  # the machine's folders stay out


@pytest.mark.slow
def test_a_teacher_run_writes_its_record_beside_its_csv_row(digits_run):
    record = latest(digits_run / "log" / "teacher-digits-lenet5.json")
    rows = (digits_run / "log" / "teacher-digits-lenet5.csv").read_text().splitlines()
    assert [float(v) for v in rows[-1].split(",")] == record["history"] and len(record["history"]) == 1
    assert record["best"] == max(record["history"]) and record["args"]["model"] == "lenet5"
    assert record["teacher_sha256"] == records.file_sha256(digits_run / "checkpoint" / "teacher" / "digits-lenet5.pt")
    assert record["teacher_file"] == "checkpoint/teacher/digits-lenet5.pt"
    assert ENVIRONMENT <= set(record["environment"]) and record["environment"]["command"][0] == "train_teacher.py"


def test_mnist_files_are_hashed_as_the_loader_reads_them(tmp_path):
    from dataloader import data_record
    from dataloader.mnist import MNIST_FILES
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for i, name in enumerate(MNIST_FILES):
        (raw / name.removesuffix(".gz")).write_bytes(bytes([i]))
    found = data_record("mnist", str(tmp_path))
    assert found["folder"].startswith("<outside the project>/")
    assert found["sha256"] == {name.removesuffix(".gz"): records.file_sha256(raw / name.removesuffix(".gz"))
                               for name in MNIST_FILES}
    assert data_record("cifar10", str(ROOT / "data")) == {"dataset": "cifar10", "folder": "data", "sha256": None}


def reproduce_run(record, folder, *flags):
    return run_script("get_results.py", "--reproduce", record, "--run", "--scratch", folder, *flags, cwd=ROOT,
                      timeout=600)


@pytest.mark.slow
def test_the_printed_command_gives_the_same_history(digits_run, tmp_path):
    shown = run_script("get_results.py", "--reproduce", digits_run / "log" / "DFAD-digits.json", cwd=ROOT)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    command = shown.stdout.splitlines()[-1]
    assert command.startswith("OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python DFAD_mnist.py --dataset digits")
    assert "--epochs 2 --epoch_itrs 5 --batch_size 64 --seed 1 --channels_last" in command

    replay = reproduce_run(digits_run / "log" / "DFAD-digits.json", tmp_path / "same")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "identical: every one of the 2 epochs' Acc" in replay.stdout
    assert latest(tmp_path / "same" / "log" / "DFAD-digits.json")["history"] == \
        latest(digits_run / "log" / "DFAD-digits.json")["history"]


@pytest.mark.slow
def test_a_changed_thread_count_is_named(digits_run, tmp_path):
    teacher = digits_run / "log" / "teacher-digits-lenet5.json"
    changed = reproduce_run(teacher, tmp_path / "two", "--threads", "2")
    assert "OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python train_teacher.py" in changed.stdout
    if changed.returncode == 0:  # one epoch of this teacher can sum the same at 1 and 2 threads
        assert "identical" in changed.stdout
    else:
        assert changed.returncode == 1 and "differs from epoch 1" in changed.stdout
        assert "differing condition: intra-op threads: recorded 1, here 2" in changed.stdout


def test_conditions_that_differ_are_named():
    old = {"history": [0.5, 0.6], "metric": "Acc", "device": "CPU A, 2 cores", "commit": "a",
           "environment": {"threads": 1, "torch": "2.14.1"}}
    new = {**old, "history": [0.5, 0.7], "device": "CPU B, 2 cores", "environment": {"threads": 2, "torch": "2.14.1"}}
    identical, lines = reproduce.compare(old, new)
    assert not identical and lines[0] == "differs from epoch 2: Acc 0.700000 here, 0.600000 recorded"
    assert "differing condition: CPU or GPU model: recorded CPU A, 2 cores, here CPU B, 2 cores" in lines
    assert "differing condition: intra-op threads: recorded 1, here 2" in lines
    assert not any(line.startswith("differing condition: torch:") for line in lines)  # the same version
    assert lines[-1] == ("not recorded, so not compared: inter-op threads, Python, torchvision, teacher (sha256), "
                         "data (sha256)")
    assert reproduce.compare(old, dict(old))[0]


def test_a_record_no_command_line_can_give_is_refused():
    saved = {"dataset": "digits", "batch_size": 64, "nz": "many"}
    with pytest.raises(UserError, match="not a command line of DFAD_mnist.py"):
        reproduce.flags("DFAD_mnist.py", saved)


def test_no_committed_file_names_a_folder_of_the_machine_that_ran():
    offenders = []
    for path in sorted((ROOT / "results").rglob("*")):
        if path.is_file() and path.suffix in (".json", ".md", ".csv"):
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in MACHINE_PATHS.findall(path.read_text())]
    assert not offenders, offenders[:5]


def test_committed_records_say_what_was_added_afterwards():
    for path in sorted((ROOT / "results" / "records").rglob("*.json")):
        record = json.loads(path.read_text())
        if path.parent.name == "teachers" or not isinstance(record, dict):
            continue
        environment = record["environment"]
        assert environment["threads"] is not None, path
        assert environment["command"][0] == reproduce.script_of(record), path
        if environment.get("python") is None:  # recorded before records kept their environment
            assert "added afterwards" in environment["added_afterwards"], path


@pytest.mark.slow
def test_the_committed_replay_record_regenerates(tmp_path):
    """The committed 2 x 5 digits cell, from its record alone: its teacher from the committed
    teacher record (or the one here with its hash), then the run. Identical where every
    recorded condition holds here; where one does not (another CPU model, versions), the
    replay names it."""
    record = json.loads(REPLAY_RECORD.read_text())
    replay = reproduce_run(REPLAY_RECORD, tmp_path / "replay")
    assert ("the teacher's recipe: results/records/teachers/digits-lenet5.json" in replay.stdout
            or "the teacher is here" in replay.stdout), replay.stdout + replay.stderr
    new = latest(sorted((tmp_path / "replay" / "log").glob("DFAD-*.json"))[-1])
    changed = [c for c in reproduce.differences(record, new) if not c.startswith("code (git commit)")]
    if not changed:
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "identical: every one of the 2 epochs' Acc" in replay.stdout
    elif replay.returncode == 1:
        assert all(f"differing condition: {c}" in replay.stdout for c in changed), replay.stdout


def test_paper_table_says_each_cells_threads(tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks" / "paper_table.py")
    paper_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paper_table)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert paper_table.cell_threads(2) == str(max(1, os.cpu_count() // 2))
    assert paper_table.child_env(2)["OMP_NUM_THREADS"] == paper_table.cell_threads(2)
    assert paper_table.cell_threads(1) is None and "OMP_NUM_THREADS" not in paper_table.child_env(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert paper_table.cell_threads(2) == "3" and paper_table.describe_threads(2) == "3 threads"
