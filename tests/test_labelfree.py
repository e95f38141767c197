"""The label-free choice: of the last epochs' students, the one closest to the teacher
(mean L1 of the logits) on one fixed pool of generated images, chosen at the end of the
run, the same after a stop and a resume."""
import copy
import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from test_dfad_engine import game_args, networks, tiny_experiment
from test_student_ema import straight_and_stopped
from utils.engine import loop
from utils.engine.labelfree import Candidates

CPU = torch.device("cpu")
STUDENTS = os.path.join("checkpoint", "student")
LAST = os.path.join(STUDENTS, "unit-tiny-last.pt")
LABELFREE = os.path.join(STUDENTS, "unit-tiny-labelfree.pt")
CANDIDATES = os.path.join(STUDENTS, "unit-tiny-candidates")


def linear_teacher():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()


def shifted(teacher, shift):
    """The teacher with every logit moved by ``shift``: its mean L1 to the teacher is |shift|."""
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student[1].bias += shift
    return student


def load(path):
    return torch.load(path, weights_only=True)


def test_the_choice_is_the_candidate_closest_to_the_teacher_on_the_pool(tmp_path):
    teacher = linear_teacher()
    pool = [torch.randn(5, 3, 2, 2), torch.randn(7, 3, 2, 2)]
    candidates = Candidates(str(tmp_path / "candidates"), keep=4)
    shifts = {1: 0.5, 2: -0.125, 3: 0.3, 4: 0.25}
    for epoch, shift in shifts.items():
        candidates.add(shifted(teacher, shift), epoch)
    tests = [0.1, 0.2, 0.3, 0.4]
    choice = candidates.choose(teacher, teacher, pool, tests, str(tmp_path / "labelfree.pt"))
    assert (choice["epoch"], choice["test"], choice["pool_images"]) == (2, 0.2, 12)
    assert choice["l1"] == pytest.approx(0.125, abs=1e-6)
    assert [c["l1"] for c in choice["candidates"]] == pytest.approx([abs(s) for s in shifts.values()], abs=1e-6)
    saved = load(tmp_path / "labelfree.pt")
    assert torch.equal(saved["1.bias"], shifted(teacher, -0.125)[1].bias)


def test_a_tie_goes_to_the_later_candidate_and_only_the_last_k_are_kept(tmp_path):
    teacher = linear_teacher()
    candidates = Candidates(str(tmp_path / "candidates"), keep=3)
    for epoch, shift in enumerate([0.01, 0.2, 0.1, 0.3, 0.1], start=1):  # epoch 1, the closest, leaves the list
        candidates.add(shifted(teacher, shift), epoch)
    candidates.prune()
    assert candidates.epochs == [3, 4, 5] and sorted(os.listdir(candidates.folder)) == \
        ["epoch0003.pt", "epoch0004.pt", "epoch0005.pt"]
    choice = candidates.choose(teacher, teacher, [torch.randn(4, 3, 2, 2)], [0] * 5, str(tmp_path / "lf.pt"))
    assert choice["epoch"] == 5  # as close as epoch 3 (the same student), trained longer


def test_a_candidate_file_gone_on_resume_is_named_and_left_out(tmp_path, capsys):
    teacher = linear_teacher()
    candidates = Candidates(str(tmp_path / "c"), keep=4)
    for epoch in (1, 2, 3):
        candidates.add(teacher, epoch)
    saved = candidates.state_dict()
    os.remove(candidates.path(2))
    resumed = Candidates(str(tmp_path / "c"), keep=2)  # a smaller K on resume keeps the latest
    resumed.load_state_dict(saved)
    assert resumed.epochs == [3]
    assert "label-free candidates of epochs 2 are missing" in capsys.readouterr().out


def record(folder):
    return json.loads((folder / "log" / "DFAD-unit.json").read_text())[-1]


def test_a_run_chooses_on_the_last_pool_and_records_both_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher, student, generator = networks()
    loop.run(game_args("--epochs", "3", "--labelfree_candidates", "2"), tiny_experiment(teacher, student, generator), CPU)
    r = record(tmp_path)
    last = load(LAST)
    assert [c["epoch"] for c in r["labelfree_candidates"]] == last["candidates"]["epochs"] == [2, 3]
    assert sorted(os.listdir(CANDIDATES)) == ["epoch0002.pt", "epoch0003.pt"]
    pool = torch.cat(last["monitor"]["pool"])  # every epoch's fixed-noise samples: 3 x 64 images
    assert r["labelfree_pool_images"] == len(pool) == 192
    model = copy.deepcopy(student).eval()
    with torch.no_grad():
        target = teacher(pool)
        for c in r["labelfree_candidates"]:  # the score, computed here on the whole pool at once
            model.load_state_dict(load(os.path.join(CANDIDATES, f"epoch{c['epoch']:04d}.pt")))
            assert c["l1"] == pytest.approx(F.l1_loss(model(pool), target).item(), rel=1e-5)
            assert c["test"] == r["history"][c["epoch"] - 1]
    chosen = min(r["labelfree_candidates"], key=lambda c: c["l1"])
    assert (r["labelfree_epoch"], r["labelfree_l1"], r["labelfree"]) == (chosen["epoch"], chosen["l1"], chosen["test"])
    saved, kept = load(LABELFREE), load(os.path.join(CANDIDATES, f"epoch{chosen['epoch']:04d}.pt"))
    assert all(torch.equal(saved[k], v) for k, v in kept.items())
    by_agreement = r["labelfree_by_agreement"]  # the rule the choice replaces, recorded to compare
    assert by_agreement["test"] == r["history"][by_agreement["epoch"] - 1] and 0 <= by_agreement["agreement"] <= 1


@pytest.mark.slow
def test_a_run_stopped_and_resumed_chooses_the_same(tmp_path, monkeypatch):
    def two_candidates_kept():
        assert load(LAST)["candidates"]["epochs"] == [1, 2]

    def choice(folder):
        return {k: v for k, v in record(folder).items() if k.startswith("labelfree")}, load(LABELFREE)

    (straight, straight_file), (resumed, resumed_file) = straight_and_stopped(
        tmp_path, monkeypatch, ["--epochs", "4", "--labelfree_candidates", "2"], (3, 1), two_candidates_kept,
        choice)
    assert straight == resumed and [c["epoch"] for c in straight["labelfree_candidates"]] == [3, 4]
    assert all(torch.equal(resumed_file[k], v) for k, v in straight_file.items())
