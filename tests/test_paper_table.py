"""benchmarks/paper_table.py on a tiny grid: both methods' rows, resumable; get_results
prints the same table."""
import importlib.util
import json
from pathlib import Path

import get_results
import train_teacher

ROOT = Path(__file__).resolve().parents[1]


def load_paper_table():
    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_grid_writes_the_table_and_resumes(in_tmp_dir, capsys):
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--lr", "0.01",
                        "--no_visdom"])
    paper_table = load_paper_table()
    grid = ["--datasets", "digits", "--methods", "dfad", "kd", "--seeds", "1", "2", "--epochs", "2",
            "--epoch_itrs", "1", "--batch_size", "8"]
    paper_table.main(grid)
    text = (in_tmp_dir / "results" / "paper_table.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| digits")]
    assert [r.split("|")[2].strip() for r in rows] == ["dfad", "KD-ORI"]
    assert all(r.split("|")[3].strip() == "2" for r in rows)       # two seeds each
    assert "4 of 4 cells measured" in text
    curves = (in_tmp_dir / "results" / "curves.csv").read_text().splitlines()
    assert curves[1:] == [c for c in curves[1:] if c.startswith("digits,")] and len(curves) == 1 + 2 * 2

    logged = len(json.loads((in_tmp_dir / "log" / "DFAD-digits.json").read_text()))
    capsys.readouterr()
    paper_table.main(grid)                                            # every cell exists: nothing runs
    assert "running:" not in capsys.readouterr().out
    assert len(json.loads((in_tmp_dir / "log" / "DFAD-digits.json").read_text())) == logged == 2

    get_results.main(["--methods"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == text.strip().splitlines()[:len(printed)]
