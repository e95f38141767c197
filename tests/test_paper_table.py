"""benchmarks/paper_table.py on a tiny grid: both methods' rows, cells side by side in
folders of their own, resumable (finished cells are kept, stopped ones go on from their
-last.pt); get_results prints the same table."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import get_results
import train_teacher

ROOT = Path(__file__).resolve().parents[1]


def load_paper_table():
    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_teacher():
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--lr", "0.01",
                        "--no_visdom"])


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
    assert "4 of 4 cells measured" in text and "cores: 4 cells)" in text   # the device each record names
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
    grid.send_signal(signal.SIGTERM)
    printed, _ = grid.communicate(timeout=300)
    assert grid.returncode == 143, printed
    assert "0 of 1 cells measured" in printed and "1 not run" not in printed
    assert list((output.parent / "checkpoint" / "student").glob("*-last.pt"))

    resumed = subprocess.run(cmd, cwd=in_tmp_dir, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "1 of 1 cells measured" in resumed.stdout, resumed.stdout + resumed.stderr
    assert "Resumed from" in output.read_text()
