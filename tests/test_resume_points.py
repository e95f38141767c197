"""A resume point is never lost, and a resumed run is the same run.

A run started without --resume refuses to replace the -last.pt of an unfinished run
(--restart discards it; a finished run's may be replaced); a resumed run refuses another
batch size or epoch length; a run extended with a larger --epochs is logged once; and
``run_mnist.sh --resume`` goes on with the stage that was stopped.
"""
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import DFAD_caltech101
import DFAD_camvid_deeplab
import DFAD_cifar
import DFAD_mnist
import DFAD_nyu_deeplab
import get_results
import train_teacher
import train_teacher_seg
from conftest import ROOT, run_script
from test_hostile_inputs import CSV, JSON, LAST, TEACHER, run_main, workdir  # noqa: F401 (fixture)
from test_hostile_inputs import GAME as HOSTILE_GAME
from utils.reporting import records

GAME = HOSTILE_GAME + ["--num_workers", "0"]  # 1 epoch x 2 rounds, batch 8

TEACHER_LAST = TEACHER.replace(".pt", "-last.pt")
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
           DFAD_PROGRESS_INTERVAL_S="0")  # a progress line after every step: known points to stop at
STOPPABLE = ["--dataset", "digits", "--epochs", "3", "--epoch_itrs", "20", "--batch_size", "8",
             "--no_visdom", "--num_workers", "0"]


def start(cmd, cwd, env=None):
    """A job in a process group of its own (as a shell starts one), its output in one pipe."""
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(ENV, **(env or {})), start_new_session=True)


def stop_at(proc, prefix):
    """SIGTERM to the job's every process once it prints a line starting with ``prefix``
    (as a cluster's time limit does); returns everything it printed."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            os.killpg(proc.pid, signal.SIGTERM)
            break
    else:
        raise AssertionError(f"never printed {prefix!r}:\n{''.join(seen)[-3000:]}")
    seen.append(proc.communicate(timeout=300)[0])  # until the last process of the job closed it
    return "".join(seen)


def saved(path):
    state = torch.load(path, weights_only=True)
    return state["progress"]["epoch"], state["args"]["epochs"]


# --- item 3: a new run never replaces the resume point of an unfinished one ---------------

@pytest.mark.slow
def test_new_run_refuses_to_replace_an_unfinished_run_and_restart_discards_it(workdir):
    out = stop_at(start([sys.executable, str(ROOT / "DFAD_mnist.py"), *STOPPABLE], workdir), "Epoch 1/3")
    assert "Resume with the same command plus --resume" in out
    resume_point = (workdir / LAST).read_bytes()

    refused = run_script("DFAD_mnist.py", *STOPPABLE, cwd=workdir)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"Error: {LAST} holds an unfinished run (1 of 3 epochs" in refused.stderr
    assert "plus --resume" in refused.stderr and "--restart to discard it" in refused.stderr
    assert "Teacher:" not in refused.stdout  # refused before any work
    assert (workdir / LAST).read_bytes() == resume_point and not (workdir / CSV).exists()

    restarted = run_script("DFAD_mnist.py", *GAME, "--restart", cwd=workdir)
    assert restarted.returncode == 0, restarted.stderr
    assert f"Discarded {LAST} (--restart)" in restarted.stdout and "Best Acc=" in restarted.stdout
    assert saved(workdir / LAST) == (1, 1) and len((workdir / CSV).read_text().splitlines()) == 1


def test_a_finished_runs_resume_point_may_be_replaced(workdir, capsys):
    for _ in range(2):
        code, out, err = run_main(DFAD_mnist.main, GAME, capsys)
        assert code == 0 and "Best Acc=" in out, err
    assert len(records.read_run_records(JSON)) == 2


TEACHER_RUN = ["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--no_visdom", "--num_workers", "0"]


def test_teacher_refuses_to_replace_an_unfinished_run(workdir, capsys):
    os.remove(TEACHER)
    assert run_main(train_teacher.main, TEACHER_RUN, capsys)[0] == 0
    state = torch.load(TEACHER_LAST, weights_only=True)
    state["args"]["epochs"] = 3  # as a run started for 3 epochs and stopped after its first
    torch.save(state, TEACHER_LAST)
    teacher = open(TEACHER, "rb").read()

    code, out, err = run_main(train_teacher.main, TEACHER_RUN, capsys)
    assert code == 2 and f"{TEACHER_LAST} holds an unfinished run (1 of 3 epochs done)" in err
    assert "Epoch 1/" not in out and open(TEACHER, "rb").read() == teacher

    code, out, err = run_main(train_teacher.main, TEACHER_RUN + ["--restart"], capsys)
    assert code == 0 and "Discarded" in out and "Best Acc=" in out, err
    assert saved(TEACHER_LAST) == (1, 1)


@pytest.mark.parametrize("script", [DFAD_mnist, DFAD_cifar, DFAD_caltech101, DFAD_camvid_deeplab,
                                    DFAD_nyu_deeplab, train_teacher, train_teacher_seg],
                         ids=lambda m: m.__name__)
def test_every_script_offers_restart_beside_resume(script, capsys):
    help_text = " ".join(script.get_args_parser().format_help().split())
    assert re.search(r"--restart start afresh, discarding the '-last.pt' checkpoint of an unfinished run "
                     r"[^[]*? \(default: False\)", help_text)
    with pytest.raises(SystemExit):
        script.get_args_parser().parse_args(["--resume", "--restart"])
    assert "not allowed with argument --resume" in capsys.readouterr().err


# --- item 5: a resumed run is the same run ---------------------------------------------------

@pytest.mark.parametrize("flag,old,new", [("--batch_size", "8", "16"), ("--epoch_itrs", "2", "3"),
                                          ("--replay", "0", "10")])
def test_resume_refuses_another_batch_size_epoch_length_or_replay(workdir, capsys, flag, old, new):
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0
    before = {p: open(p, "rb").read() for p in (LAST, CSV, JSON)}
    code, out, err = run_main(DFAD_mnist.main, GAME[:2] + ["--epochs", "2"] + GAME[4:]
                              + [flag, new, "--resume"], capsys)
    assert code == 2 and f"{flag} {old} (saved) vs {new} (now)" in err and "Traceback" not in err
    assert "Epoch 2/2" not in out
    assert {p: open(p, "rb").read() for p in before} == before


def test_an_extended_run_is_logged_once_with_every_epoch(workdir, capsys):
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0
    code, out, err = run_main(DFAD_mnist.main, GAME[:2] + ["--epochs", "2"] + GAME[4:] + ["--resume"], capsys)
    assert code == 0 and "extended from 1 to 2 epochs, replaces its earlier row" in out, err
    rows = records.read_csv_rows(CSV)
    runs = records.read_run_records(JSON)
    assert len(rows) == 1 and len(rows[0]) == 2 and len(runs) == 1 and runs[0]["epochs"] == 2
    assert runs[0]["history"] == rows[0] and runs[0]["args"]["epochs"] == 2
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0  # another run: a row of its own
    assert get_results.main(["--log", CSV])["runs"] == 2


# --- item 3: run_mnist.sh --resume goes on with the stage that was stopped ------------------

PIPELINE_ENV = {"DATASET": "digits", "TEACHER_EPOCHS": "4", "EPOCHS": "3", "EPOCH_ITRS": "20",
                "BATCH_SIZE": "8", "ESTIMATE": "0", "PYTHON": sys.executable}


def pipeline_folder(tmp_path):
    """run_mnist.sh runs in its own folder: a folder of links to the scripts keeps the
    outputs here (imports come from the repository, through PYTHONPATH)."""
    for name in ("run_mnist.sh", "train_teacher.py", "DFAD_mnist.py"):
        os.symlink(ROOT / name, tmp_path / name)
    return tmp_path


def run_mnist(cwd, *flags):
    return start(["bash", str(cwd / "run_mnist.sh"), "--no_visdom", "--num_workers", "0", *flags], cwd,
                 env=PIPELINE_ENV)


@pytest.mark.slow
def test_run_mnist_resume_goes_on_with_the_stage_that_was_stopped(tmp_path):
    cwd = pipeline_folder(tmp_path)
    teacher_last = cwd / TEACHER_LAST
    out = stop_at(run_mnist(cwd), "progress: epoch 2/4  step")  # in the teacher stage
    assert "Stopped during epoch 2" in out and "plus --resume" in out and "===== DFAD" not in out
    assert saved(teacher_last) == (1, 4)

    out = stop_at(run_mnist(cwd, "--resume"), "progress: epoch 2/3  round")  # in the DFAD stage
    assert f"Resumed from {TEACHER_LAST}: 1 epochs done" in out and "Epoch 4/4" in out
    assert "Epoch 1/3" in out and saved(cwd / LAST)[0] == 1
    teacher = (cwd / TEACHER).read_bytes()

    plain = run_mnist(cwd)  # would retrain the teacher under the stopped DFAD run: refused first
    out = plain.communicate(timeout=300)[0]
    assert plain.returncode == 2 and f"{LAST} holds an unfinished run (1 of 3 epochs" in out
    assert "===== Teacher" not in out

    resumed = run_mnist(cwd, "--resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out[-3000:]
    assert "not trained again" in out and f"Resumed from {LAST}" in out and "Epoch 3/3" in out
    assert out.strip().splitlines()[-1].startswith("Best Acc=")
    assert (cwd / TEACHER).read_bytes() == teacher
    assert len((cwd / CSV).read_text().splitlines()) == 1
    assert "cannot reach the visdom server" not in out  # --no_visdom reached both stages


def test_run_mnist_help_explains_resume_and_restart_and_runs_nothing(tmp_path):
    cwd = pipeline_folder(tmp_path)
    proc = run_mnist(cwd, "--help")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and "--restart   start both stages afresh" in out
    assert "usage: DFAD_mnist.py" in out and not (cwd / "checkpoint").exists()
