"""benchmarks/paper_table.py on a tiny grid: both methods' rows, cells side by side in
folders of their own, resumable (finished cells are kept, stopped ones go on from their
-last.pt); get_results prints the same table; --records keeps the records to commit, from
which alone the table is made again; variants (dfad+ema) are cells and rows of their own."""
import fcntl
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import get_results
import train_teacher
from conftest import run_script
from utils.runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def load_paper_table():
    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_teacher():
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--lr", "0.01",
                        "--no_visdom"])


@pytest.mark.slow
def test_tiny_grid_writes_the_table_and_resumes(in_tmp_dir, capsys):
    digits_teacher()
    paper_table = load_paper_table()
    grid = ["--datasets", "digits", "--methods", "dfad", "kd", "--seeds", "1", "2", "--epochs", "2",
            "--epoch_itrs", "1", "--batch_size", "8", "--jobs", "2"]
    paper_table.main(grid)
    text = (in_tmp_dir / "results" / "paper_table.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| digits")]
    assert [r.split("|")[2].strip() for r in rows] == ["dfad", "KD-ORI"]
    assert all(r.split("|")[3].strip() == "2" for r in rows)       # two seeds each
    assert "4 of 4 cells measured" in text and re.search(r"Ran on: .*cores \(4 runs\)", text)   # from the records
    curves = (in_tmp_dir / "results" / "curves.csv").read_text().splitlines()
    assert curves[1:] == [c for c in curves[1:] if c.startswith("digits,")] and len(curves) == 1 + 2 * 2
    assert (in_tmp_dir / "results" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # each cell in its own folder: its own checkpoints and log, nothing in the user's checkpoint/student
    cell = in_tmp_dir / "runs" / "paper_table" / "digits-kd-e2x1-b8-seed2"
    assert (cell / "checkpoint" / "student" / "digits-lenet5_half-kd.pt").is_file()
    assert "Best Acc=" in (cell / "output.log").read_text()
    assert not (in_tmp_dir / "checkpoint" / "student").exists()
    assert len(json.loads((cell / "log" / "DFAD-digits-kd.json").read_text())) == 1

    capsys.readouterr()
    paper_table.main(grid)                                            # every cell exists: nothing runs
    assert "started:" not in capsys.readouterr().out
    assert len(json.loads((cell / "log" / "DFAD-digits-kd.json").read_text())) == 1

    get_results.main(["--methods", "--log_dir", "runs/paper_table/*/log"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == text.strip().splitlines()[:len(printed)]

    # the records to commit, copied from the cells' logs; then the table from them alone
    records = in_tmp_dir / "results" / "records" / "tiny"
    paper_table.main(grid + ["--budget_minutes", "0", "--records", str(records)])
    assert sorted(p.name for p in records.iterdir()) == sorted(
        [f"digits-{m}-e2x1-b8-seed{s}.json" for m in ("dfad", "kd") for s in (1, 2)]
        + ["curves.csv", "curves.png", "paper_table.md"])
    committed = json.loads((records / "digits-kd-e2x1-b8-seed2.json").read_text())
    assert committed == json.loads((cell / "log" / "DFAD-digits-kd.json").read_text())[-1]
    assert {"best", "last", "labelfree", "history", "args", "device", "commit", "dirty", "teacher_sha256"} <= set(committed)
    from_logs = (records / "paper_table.md").read_text()
    assert from_logs.split("\n\n4 of 4")[0] == text.split("\n\n4 of 4")[0]   # the same table and footnote
    (in_tmp_dir / "runs").rename(in_tmp_dir / "elsewhere")
    (in_tmp_dir / "checkpoint").rename(in_tmp_dir / "no_teacher")
    capsys.readouterr()
    paper_table.main(grid + ["--budget_minutes", "0", "--records", str(records)])
    assert "started:" not in capsys.readouterr().out
    assert (records / "paper_table.md").read_text() == from_logs
    get_results.main(["--methods", "--log_dir", str(records)])
    assert from_logs.startswith(capsys.readouterr().out)


@pytest.mark.slow
def test_a_stopped_grid_keeps_its_cells_and_goes_on(in_tmp_dir):
    """SIGTERM to the grid reaches each running cell once: it saves its -last.pt, the grid
    writes the table and exits 143; the same command again resumes that cell."""
    digits_teacher()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), "--datasets", "digits",
           "--methods", "dfad", "--seeds", "1", "--epochs", "12", "--epoch_itrs", "2", "--batch_size", "8"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    grid = subprocess.Popen(cmd, cwd=in_tmp_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output = in_tmp_dir / "runs" / "paper_table" / "digits-dfad-e12x2-b8-seed1" / "output.log"
    deadline = time.time() + 300
    while time.time() < deadline and "Epoch 2/12" not in (output.read_text() if output.exists() else ""):
        time.sleep(0.2)
    with open(output.parent / "cell.lock") as lock, pytest.raises(BlockingIOError):
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)                # held while the cell runs
    grid.send_signal(signal.SIGTERM)
    printed, _ = grid.communicate(timeout=300)
    assert grid.returncode == 143, printed
    assert "0 of 1 cells measured" in printed and "1 not run" not in printed
    assert list((output.parent / "checkpoint" / "student").glob("*-last.pt"))

    resumed = subprocess.run(cmd, cwd=in_tmp_dir, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "1 of 1 cells measured" in resumed.stdout, resumed.stdout + resumed.stderr
    assert "Resumed from" in output.read_text()


TINY_GRID = ["--datasets", "digits", "--seeds", "1", "--epochs", "1", "--epoch_itrs", "1", "--batch_size", "8"]


def grid(folder, *flags):
    return run_script("benchmarks/paper_table.py", *TINY_GRID, *flags, cwd=folder)


def results(folder):
    return {name: (folder / "results" / name).read_bytes() for name in ("paper_table.md", "curves.csv", "curves.png")}


def write_images(folder, count=8):
    folder.mkdir()
    for i in range(count):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")


def test_folder_transfer_sets_get_a_safe_cell_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my images!").mkdir()
    paper_table = load_paper_table()
    args = paper_table.get_args_parser().parse_args(TINY_GRID)
    relative, absolute = (paper_table.cell_args(args, "digits", f"kd:{x}", 1)
                          for x in ("my images!", tmp_path / "my images!"))
    assert relative == absolute and relative["transfer_set"] == str(tmp_path / "my images!")
    assert re.fullmatch(r"digits-kd-my_images_-[0-9a-f]{8}-e1x1-b8-seed1", paper_table.cell_name(relative))
    assert os.path.dirname(relative["folder"]) == os.path.join("runs", "paper_table")
    assert paper_table.cell_name(paper_table.cell_args(args, "digits", "kd:mnist", 1)) == "digits-kd-mnist-e1x1-b8-seed1"
    for method, message in (("kd:nosuch", "nosuch is neither a data set DFAD_mnist.py loads (mnist, digits) nor a folder"),
                            ("kd:", "unknown method kd:"), ("dfad:digits", "unknown method dfad:digits")):
        with pytest.raises(UserError, match=re.escape(message)):
            paper_table.check_method(method)
            paper_table.cell_args(args, "digits", method, 1)


def test_variants_are_cells_and_rows_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paper_table = load_paper_table()
    args = paper_table.get_args_parser().parse_args(TINY_GRID)
    cell = paper_table.cell_args(args, "digits", "dfad+replay+ema", 1)
    assert cell == paper_table.cell_args(args, "digits", "dfad+ema+replay+ema", 1)
    assert paper_table.cell_name(cell) == "digits-dfad_ema_replay-e1x1-b8-seed1"
    assert paper_table.cell_name(paper_table.cell_args(args, "digits", "kd:mnist+ema", 1)) == "digits-kd-mnist_ema-e1x1-b8-seed1"
    flags = paper_table.command(cell, args)
    assert flags[flags.index("--method") + 1] == "dfad"
    for bare in ("--student_ema", "--replay"):                                   # no value: the option's default
        assert all(f.startswith("--") for f in flags[flags.index(bare) + 1:flags.index(bare) + 2])
    saved = {"dataset": "digits", "method": "dfad", "transfer_set": None, "seed": 1, "epochs": 1, "epoch_itrs": 1,
             "batch_size": 8}
    assert paper_table.matches({"args": dict(saved, student_ema=0.999, replay=2000)}, cell)
    assert not paper_table.matches({"args": dict(saved, student_ema=0.999)}, cell)
    assert paper_table.matches({"args": saved}, paper_table.cell_args(args, "digits", "dfad", 1))
    with pytest.raises(UserError, match=re.escape("unknown method dfad+warp: use dfad, random, dafl, dfq, kd")):
        paper_table.check_method("dfad+warp")
    monkeypatch.setitem(paper_table.methods.VARIANTS, "warp", "warp_drive")       # an option the script lacks
    with pytest.raises(UserError, match=re.escape("--methods dfad+warp: DFAD_mnist.py has no --warp_drive flag")):
        paper_table.check_options("dfad+warp", "digits")


def test_extra_flags_that_change_the_run_name_its_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paper_table = load_paper_table()

    def name(*extra):
        args = paper_table.get_args_parser().parse_args([*TINY_GRID, "--extra", *extra] if extra else TINY_GRID)
        return paper_table.cell_name(paper_table.cell_args(args, "digits", "dfad+ema", 1))

    assert name() == "digits-dfad_ema-e1x1-b8-seed1"
    assert name("--num_workers", "0", "--no_cuda") == name()               # runtime flags: the same cell
    assert name("--scheduler", "--step_size", "7") == "digits-dfad_ema-e1x1-b8-seed1-with-scheduler-step_size7"
    assert name("--step_size=7", "--num_workers", "0", "--scheduler") == name("--scheduler", "--step_size", "7")
    assert name("--scheduler", "--step_size", "100") == "digits-dfad_ema-e1x1-b8-seed1-with-scheduler"  # default
    assert re.fullmatch(r"digits-dfad_ema-e1x1-b8-seed1-with-[0-9a-f]{8}",
                        name("--scheduler", "--step_size", "7", "--lr_S", "0.02", "--lr_G", "0.0005", "--momentum", "0.5"))
    with pytest.raises(UserError, match=re.escape("--extra sets --epochs, --seed, which the grid sets for each cell")):
        name("--epochs", "3", "--seed", "4")
    with pytest.raises(UserError, match=re.escape("--extra --warp 9: not flags DFAD_mnist.py takes")):
        name("--warp", "9")


def test_an_unknown_transfer_set_is_refused_before_any_cell(tmp_path):
    result = grid(tmp_path, "--methods", "dfad", "kd:nosuch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Error: --methods kd:nosuch: nosuch is neither a data set" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_folder_transfer_set_given_relatively_or_absolutely(in_tmp_dir):
    digits_teacher()
    write_images(in_tmp_dir / "images")
    first = grid(in_tmp_dir, "--methods", "kd:images", "--extra", "--num_workers", "0")
    assert first.returncode == 0, first.stdout + first.stderr
    cells = list((in_tmp_dir / "runs" / "paper_table").iterdir())
    assert len(cells) == 1 and re.fullmatch(r"digits-kd-images-([0-9a-f]{8})-e1x1-b8-seed1", cells[0].name)
    record = json.loads((cells[0] / "log" / "DFAD-digits-kd.json").read_text())[-1]
    tag = cells[0].name.split("-")[3]
    assert record["args"]["transfer_set"] == f"<outside the project>/images-{tag}"  # no folder of this machine
    assert f"| digits | KD-images-{tag} | 1 |" in (in_tmp_dir / "results" / "paper_table.md").read_text()

    again = grid(in_tmp_dir, "--methods", f"kd:{in_tmp_dir / 'images'}")    # the same cell: measured
    assert again.returncode == 0 and "started:" not in again.stdout and "1 of 1 cells measured" in again.stdout


@pytest.mark.slow
def test_a_failed_cell_fails_the_grid_and_keeps_the_results(in_tmp_dir):
    digits_teacher()
    assert grid(in_tmp_dir, "--methods", "dfad").returncode == 0
    before = results(in_tmp_dir)

    (in_tmp_dir / "empty").mkdir()        # a folder, so accepted; the cell fails: no images in it
    failed = grid(in_tmp_dir, "--methods", "dfad", "kd:empty")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    name = re.search(r"digits-kd-empty-[0-9a-f]{8}-e1x1-b8-seed1", failed.stderr).group()
    assert f"failed: {name} (exit 2); the last lines of runs/paper_table/{name}/output.log:" in failed.stderr
    assert "holds no images" in failed.stderr                          # its log's last lines
    assert f"Error: 1 of 2 cells failed: {name}" in failed.stderr
    assert "Not replaced: results/paper_table.md, results/curves.csv, results/curves.png (1 cell failed)" in failed.stdout
    assert "wrote" not in failed.stdout and results(in_tmp_dir) == before

    fewer = grid(in_tmp_dir, "--methods", "dfad", "--seeds", "2", "--budget_minutes", "0")
    assert fewer.returncode == 0, fewer.stderr
    assert "(the new table holds 0 measured cells, results/paper_table.md 1)" in fewer.stdout
    assert "wrote" not in fewer.stdout and results(in_tmp_dir) == before


@pytest.mark.slow
def test_a_cell_another_grid_holds_is_skipped(tmp_path):
    teacher = tmp_path / "checkpoint" / "teacher" / "digits-lenet5.pt"
    teacher.parent.mkdir(parents=True)
    teacher.write_bytes(b"never read: the only cell is locked")
    cell = tmp_path / "runs" / "paper_table" / "digits-dfad-e1x1-b8-seed1"
    cell.mkdir(parents=True)
    with open(cell / "cell.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)              # as a running grid holds it
        result = grid(tmp_path, "--methods", "dfad")
    assert result.returncode == 0, result.stderr
    assert "skipped: digits-dfad-e1x1-b8-seed1: another grid is running it" in result.stdout
    assert "started:" not in result.stdout and not (cell / "output.log").exists()
    assert "0 of 1 cells measured" in result.stdout and "1 running in another grid" in result.stdout


def test_a_table_without_curves_leaves_no_plot_of_other_runs(in_tmp_dir, capsys):
    (in_tmp_dir / "results").mkdir()
    (in_tmp_dir / "results" / "curves.png").write_bytes(b"a plot of earlier cells")
    load_paper_table().write_results({}, "empty table\n")
    printed = capsys.readouterr().out
    assert "removed results/curves.png: no curves to draw" in printed
    assert "wrote results/paper_table.md, results/curves.csv\n" in printed
    assert not (in_tmp_dir / "results" / "curves.png").exists()


@pytest.mark.slow
def test_a_method_the_teacher_cannot_serve_is_skipped_not_failed(in_tmp_dir, capsys):
    """dfq weighs the teacher's BatchNorm statistics, and the digits teacher (LeNet-5) has none."""
    paper_table = load_paper_table()
    paper_table.main(["--datasets", "digits", "--methods", "dfad", "dfq", "--seeds", "1", "--budget_minutes", "0"])
    out = capsys.readouterr().out
    assert "skipped: digits-dfq-e20x50-b64-seed1 cannot run: --bn 1 (--method dfq weighs it so)" in out
    assert "0 of 1 cells measured" in out and "1 skipped, their method asks what the teacher cannot give" in out
