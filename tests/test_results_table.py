"""The results table from run records: the stability columns and the sample std against
hand-computed figures, variant rows (dfad+ema), the footnote that defines the columns and
discloses a baseline's deviations, each record's provenance (commit, teacher hash), and
the README's marked tables, which must equal what their committed records give."""
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import get_results
from test_dfad_engine import game_args, networks, tiny_experiment
from utils.engine import loop, methods
from utils.reporting import records, table
from utils.runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
HEADER_COLUMNS = ["dataset", "method", "runs", "teacher", "best on test", "last", "label-free", "last-5 mean",
                  "last-10 std", "paper"]


def record(history, method="dfad", dataset="digits", seed=1, **args):
    return {"method": method, "teacher": 0.97, "best": max(history), "last": history[-1], "labelfree": history[0],
            "history": history, "device": "CPU, 2 cores", "commit": "a" * 40, "dirty": False,
            "teacher_sha256": "b" * 64, "args": {"dataset": dataset, "seed": seed, "epochs": len(history),
                                                "epoch_itrs": 50, "batch_size": 64, **args}}


def rows(pairs):
    lines = table.report(pairs, methods)
    assert lines[0].split("|")[1:-1] == [f" {c} " for c in HEADER_COLUMNS]
    return {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in lines[2:] if line.startswith("| ")}


def test_stability_columns_and_sample_std_by_hand():
    one = [0.5, 0.6, 0.7, 0.8, 0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.9, 0.7]    # 12 epochs
    two = [0.6, 0.8]                                                     # fewer than 5: all of them
    row = rows([("a.json", record(one)), ("b.json", record(two, seed=2))])[("digits", "dfad")]
    runs, teacher, best, last, labelfree, last5, last10 = row[:7]
    assert runs == "2" and teacher == "0.9700 +- 0.0000"
    assert best == "0.8500 +- 0.0707"                       # (0.9, 0.8): sample std 0.1 / sqrt(2)
    assert last == "0.7500 +- 0.0707" and labelfree == "0.5500 +- 0.0707"
    means = [(0.6 + 0.9 + 0.8 + 0.9 + 0.7) / 5, 0.7]        # the last 5 epochs; the last 2 of 2
    assert last5 == f"{np.mean(means):.4f} +- {np.std(means, ddof=1):.4f}"
    tail = one[-10:]
    std_one = (sum((v - sum(tail) / 10) ** 2 for v in tail) / 9) ** 0.5
    std_two = abs(0.8 - 0.6) / 2 ** 0.5
    assert last10 == f"{(std_one + std_two) / 2:.4f}"
    assert table.last_std([0.9]) is None and rows([("c.json", record([0.9]))])[("digits", "dfad")][6] == "-"


def test_variant_rows_are_labelled_from_the_arguments_and_follow_their_method():
    pairs = [(f"{i}.json", record([0.9], method=m, **flags)) for i, (m, flags) in enumerate([
        ("kd", {"replay": 500}), ("dfad", {"student_ema": 0.999, "replay": 0}), ("dfad", {"replay": 1000}),
        ("dfad", {"student_ema": 0.999, "replay": 1000}), ("dafl", {}), ("dfad", {"student_ema": 0}),
        ("random", {"student_ema": None})])]
    assert [methods.row_label(r) for _, r in pairs] == ["KD-ORI+replay", "dfad+ema", "dfad+replay",
                                                        "dfad+ema+replay", "dafl", "dfad", "random"]
    assert [label for _, label in rows(pairs)] == ["dfad", "dfad+ema", "dfad+ema+replay", "dfad+replay",
                                                   "random", "dafl", "KD-ORI+replay"]


def test_the_footnote_defines_the_columns_and_says_where_the_records_came_from():
    dirty = dict(record([0.8, 0.9], method="dafl"), commit="c" * 40, dirty=True, device="NVIDIA H200")
    decayed = record([0.9], seed=3, scheduler=True, step_size=7)
    lines = table.report([("a.json", record([0.9])), ("b.json", dirty), ("c.json", record([0.9], seed=2)),
                          ("d.json", decayed)], methods)
    note = "\n".join(lines[lines.index("") + 1:])
    assert "sample standard deviation (ddof=1)" in note and "last min(10, n) epochs" in note
    assert ("Budgets: digits: 1 epochs x 50 rounds, batch 64 (2 runs); digits: 1 epochs x 50 rounds, batch 64, "
            "--scheduler --step_size 7 (1 run); digits: 2 epochs x 50 rounds, batch 64 (1 run).") in note
    assert "Ran on: CPU, 2 cores (3 runs); NVIDIA H200 (1 run)." in note
    assert "Code (git commit): aaaaaaaaaaaa (3 runs); cccccccccccc with uncommitted changes (1 run)." in note
    assert "Teacher file (sha256): digits bbbbbbbbbbbb (4 runs)." in note
    assert "- dafl is DAFL's losses and learning rates at DFAD's budget" in note
    assert "DAFL's" not in "\n".join(table.report([("a.json", record([0.9]))], methods))   # no dafl row: no note


def write_records(folder, pairs):
    folder.mkdir(parents=True)
    for name, r in pairs:
        records.write_run_record(str(folder / f"{name}.json"), r)


MARKED = "# Results\n\nSome prose.\n\n<!-- table: results/records/tiny -->\n<!-- /table -->\n\nMore prose.\n"


def test_a_marked_table_equals_its_records_and_an_edited_number_fails(tmp_path, capsys):
    write_records(tmp_path / "results" / "records" / "tiny", [
        ("digits-dfad-seed1", record([0.8, 0.9, 0.85])), ("digits-dfad-seed2", record([0.7, 0.95, 0.9], seed=2))])
    readme = tmp_path / "README.md"
    readme.write_text(MARKED)
    assert table.check_marked_tables(MARKED, tmp_path, methods)           # an empty block is not the table
    assert get_results.main(["--fill_tables", str(readme)]) == ["results/records/tiny"]
    filled = readme.read_text()
    assert filled.startswith("# Results\n\nSome prose.\n\n<!-- table: results/records/tiny -->\n\n| dataset |")
    assert filled.endswith("\n\n<!-- /table -->\n\nMore prose.\n")
    assert table.check_marked_tables(filled, tmp_path, methods) == []
    capsys.readouterr()
    get_results.main(["--methods", "--log_dir", str(tmp_path / "results" / "records" / "tiny")])
    assert capsys.readouterr().out.strip() in filled                    # the same text as --methods prints

    edited = filled.replace("0.8750 +- 0.0354", "0.8760 +- 0.0354")     # last: (0.85, 0.9)
    assert edited != filled
    problems = table.check_marked_tables(edited, tmp_path, methods)
    assert len(problems) == 1 and "found '| digits | dfad | 2 |" in problems[0] and "0.8760" in problems[0]
    with pytest.raises(ValueError, match="has no <!-- /table -->"):
        table.marked_tables("<!-- table: a -->\n| x |\n<!-- table: b -->\n<!-- /table -->\n")
    with pytest.raises(ValueError, match="holds no run records"):
        table.check_marked_tables("<!-- table: results/none -->\n<!-- /table -->", tmp_path, methods)
    with pytest.raises(UserError, match="marks no table"):
        get_results.main(["--fill_tables", str(tmp_path / "results" / "records" / "tiny" / "digits-dfad-seed1.json")])


@pytest.mark.parametrize("name", ["docs/results.md", "docs/speed.md"])  # tables from committed records
def test_the_docs_tables_equal_their_committed_records(name):
    """Every table of the file between <!-- table: <folder> --> and <!-- /table --> is what
    `python get_results.py --fill_tables <file>` writes from the records in <folder>."""
    path = ROOT / name
    assert table.marked_tables(path.read_text())
    assert table.check_marked_tables(path.read_text(), path.parent, methods) == []


def test_the_readme_summary_cites_its_records():
    """Each row of the README's results summary: its figures are those the row's records
    folder gives for that method (best on test, last, label-free), and its run count."""
    readme = (ROOT / "README.md").read_text()
    summary = readme[readme.index("## Results"):readme.index("## Regenerating a record")]
    cited = [[c.strip() for c in line.split("|")[1:-1]] for line in summary.splitlines()
             if line.startswith("| ") and "`results/records/" in line]
    assert len(cited) == 4
    for _, method, runs, best, last, labelfree, folder in cited:
        generated = rows(table.records_in(str(ROOT / folder.strip("`"))))
        [row] = [v for (_, m), v in generated.items() if m == method]
        assert row[0] == runs and row[2:5] == [best, last, labelfree], (folder, method)


def test_the_readme_reads_in_ten_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_code_version_names_the_commit_and_changes_outside_results(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()
    assert records.code_version(str(tmp_path)) == {"commit": None, "dirty": None}    # not a repository
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "records").mkdir(parents=True)
    (tmp_path / "results" / "records" / "a.json").write_text("{}\n")
    git("add", ".")
    git("commit", "-qm", "one")
    clean = {"commit": git("rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "results" / "records" / "a.json").write_text('{"best": 1}\n')      # a grid adds records
    (tmp_path / "new_notes.txt").write_text("untracked\n")
    assert records.code_version(str(tmp_path)) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert records.code_version(str(tmp_path)) == dict(clean, dirty=True)


def test_a_run_record_names_its_commit_and_teacher_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher, student, generator = networks()
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    loop.run(game_args("--epochs", "1", "--epoch_itrs", "1", "--ckpt", str(tmp_path / "teacher.pt")),
             tiny_experiment(teacher, student, generator), torch.device("cpu"))
    saved = json.loads((tmp_path / "log" / "DFAD-unit.json").read_text())[-1]
    assert saved["teacher_sha256"] == hashlib.sha256((tmp_path / "teacher.pt").read_bytes()).hexdigest()
    assert {k: saved[k] for k in ("commit", "dirty")} == records.code_version()
    assert len(saved["commit"]) == 40 and isinstance(saved["dirty"], bool)
    assert records.file_sha256(tmp_path / "missing.pt") is None
