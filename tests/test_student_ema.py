"""--student_ema: the student evaluated, checkpointed and reported is a moving average of
the weights of the student that plays; the game itself is unchanged, and a stopped run
resumes to the same average."""
import os
import signal

import pytest
import torch

import network
from test_dfad_engine import game_args, networks, players, state, tiny_experiment
from test_methods import TransferSet
from utils.engine import diagnostics, loop
from utils.engine.ema import StudentEMA
from utils.engine.methods.dfad import student_step
from utils.runtime.errors import UserError
from utils.runtime.signals import Interrupted

CPU = torch.device("cpu")
LAST = os.path.join("checkpoint", "student", "unit-tiny-last.pt")
BEST = os.path.join("checkpoint", "student", "unit-tiny.pt")


def student_steps(p, k):
    """``k`` student steps on fresh images; the student's state after each."""
    after = []
    for _ in range(k):
        student_step(p, p.generate(p.noise(8)))
        after.append(state(p.student))
    return after


def test_the_average_after_k_steps_is_the_hand_computed_one():
    decay, k = 0.8, 4
    p = players()
    ema = StudentEMA(p.student, decay)
    p.after_student_step = ema.update
    thetas = student_steps(p, k)
    weights = [decay ** (k - i) for i in range(1, k + 1)]  # the initial weights weigh nothing
    averaged = ema.model.state_dict()
    for name, value in averaged.items():
        if value.is_floating_point():  # weights, and BatchNorm's running means and variances
            expected = sum(w * t[name].double() for w, t in zip(weights, thetas)) / sum(weights)
            assert torch.allclose(value.double(), expected, rtol=1e-5, atol=1e-7), name
        else:                          # num_batches_tracked: the student's
            assert torch.equal(value, thetas[-1][name]), name
    assert ema.steps == k and list(averaged) == list(p.student.state_dict())
    assert not any(torch.equal(averaged[n], thetas[-1][n]) for n, _ in p.student.named_parameters())


def test_the_average_leaves_the_student_that_plays_as_it_was():
    plain = players()
    torch.manual_seed(1)
    expected = student_steps(plain, 3)[-1]
    averaged = players()
    averaged.after_student_step = StudentEMA(averaged.student, 0.5).update
    torch.manual_seed(1)
    got = student_steps(averaged, 3)[-1]
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_the_average_is_evaluated_and_saved_while_the_game_stays_the_same(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = {}
    for i, flags in enumerate(([], ["--student_ema", "0"], ["--student_ema", "0.9"])):
        folder = tmp_path / str(i)
        folder.mkdir()
        monkeypatch.chdir(folder)
        exp = tiny_experiment(*networks())
        evaluated = []
        evaluate = exp.evaluate
        exp.evaluate = lambda model, loader, device: (evaluated.append(state(model)), evaluate(model, loader, device))[1]
        loop.run(game_args("--epochs", "1", *flags), exp, CPU)
        runs[i] = torch.load(LAST, weights_only=True), (folder / BEST).read_bytes(), evaluated
    (plain, plain_best, _), (off, off_best, _), (on, on_best, evaluated) = runs.values()
    assert off_best == plain_best and off["student_ema"] is None  # 0 is off: the same files
    for key in ("student", "generator"):  # the average changes nothing of the game
        assert all(torch.equal(v, plain[key][k]) for k, v in on[key].items()), key
    average = on["student_ema"]["model"]
    assert on["student_ema"]["steps"] == 3 * 5  # 3 rounds of 5 student steps
    best = torch.load(tmp_path / "2" / BEST, weights_only=True)
    assert list(best) == list(network.lenet.LeNet5Half().state_dict())  # the reference's keys
    assert all(torch.equal(best[k], v) for k, v in average.items())   # the average is saved
    assert all(torch.equal(evaluated[-1][k], v) for k, v in average.items())  # and evaluated
    assert any(not torch.equal(average[k], v) for k, v in on["student"].items())


def stop_at_round(monkeypatch, epoch, i):
    """SIGTERM to this process during round ``i`` of ``epoch`` (as a time limit sends it)."""
    check_round = diagnostics.check_round

    def check_then_stop(e, j, *rest):
        if (e, j) == (epoch, i):
            os.kill(os.getpid(), signal.SIGTERM)
        return check_round(e, j, *rest)
    monkeypatch.setattr(diagnostics, "check_round", check_then_stop)


def straight_and_stopped(tmp_path, monkeypatch, game, stop_at, check_stopped, outcome):
    """``outcome(folder)`` of ``game`` run straight through, and of it stopped at round
    ``stop_at`` (epoch, i) then resumed, each in a folder of its own; ``check_stopped``
    looks at the stopped run's files before it resumes."""
    outcomes = []
    for name in ("straight", "stopped"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        resume = []
        if name == "stopped":
            with monkeypatch.context() as m:
                stop_at_round(m, *stop_at)
                with pytest.raises(Interrupted):
                    loop.run(game_args(*game), tiny_experiment(*networks()), CPU)
            check_stopped()
            resume = ["--resume"]
        loop.run(game_args(*game, *resume), tiny_experiment(*networks()), CPU)
        outcomes.append(outcome(folder))
    return outcomes


def test_a_run_stopped_mid_epoch_resumes_to_the_same_average(tmp_path, monkeypatch):
    def stopped_after_two_rounds():
        assert torch.load(LAST, weights_only=True)["progress"]["iteration"] == 2

    (straight, straight_best), (resumed, resumed_best) = straight_and_stopped(
        tmp_path, monkeypatch, ["--epochs", "3", "--student_ema", "0.9"], (2, 1), stopped_after_two_rounds,
        lambda folder: (torch.load(LAST, weights_only=True), torch.load(BEST, weights_only=True)))
    assert resumed["student_ema"]["steps"] == straight["student_ema"]["steps"] == 3 * 3 * 5
    for a, b in ((straight["student_ema"]["model"], resumed["student_ema"]["model"]),
                 (straight["student"], resumed["student"]), (straight_best, resumed_best)):
        assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())
    assert straight["progress"]["history"] == resumed["progress"]["history"]


def test_a_run_without_the_average_is_not_resumed_with_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loop.run(game_args("--epochs", "1"), tiny_experiment(*networks()), CPU)
    with pytest.raises(UserError, match=r"--student_ema 0.0 \(saved\) vs 0.999 \(now\)"):
        loop.run(game_args("--epochs", "2", "--student_ema", "--resume"), tiny_experiment(*networks()), CPU)


def assert_reports_the_average(root, stem, student, rounds):
    """After a one-epoch run of a script with a bare --student_ema: its best and label-free
    students are the average, in the reference layout (``student`` loads them strictly),
    and -last.pt keeps the average beside the student that plays."""
    students = root / "checkpoint" / "student"
    last = torch.load(students / f"{stem}-last.pt", weights_only=True)
    assert last["args"]["student_ema"] == 0.999 and last["student_ema"]["steps"] == 5 * rounds
    average = last["student_ema"]["model"]
    for name in (f"{stem}.pt", f"{stem}-labelfree.pt"):
        saved = torch.load(students / name, weights_only=True)
        student.load_state_dict(saved, strict=True)
        assert all(torch.equal(saved[k], v) for k, v in average.items()), name


@pytest.mark.parametrize("method", ["random", "dafl", "kd"])
def test_every_method_steps_the_average(method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = tiny_experiment(*networks())
    exp.transfer_set = TransferSet()
    loop.run(game_args("--epochs", "1", "--method", method, "--student_ema", "--num_workers", "0"), exp, CPU)
    last = torch.load(os.path.join("checkpoint", "student", f"unit-tiny-{method}-last.pt"), weights_only=True)
    assert last["student_ema"]["steps"] == 3 * 5
    best = torch.load(os.path.join("checkpoint", "student", f"unit-tiny-{method}.pt"), weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in last["student_ema"]["model"].items())


def test_a_resume_point_of_an_earlier_layout_is_refused_with_what_to_do(tmp_path, monkeypatch, capsys):
    """A -last.pt written before run state was saved one way (no "layout", parts spread):
    one message, before any work, saying to finish it with the earlier commit or --restart."""
    monkeypatch.chdir(tmp_path)
    loop.run(game_args("--epochs", "1"), tiny_experiment(*networks()), CPU)
    state = torch.load(LAST, weights_only=True)
    del state["layout"]
    state.update(state.pop("progress"))
    torch.save(state, LAST)
    with pytest.raises(UserError, match="an earlier version of this program wrote it") as refused:
        loop.run(game_args("--epochs", "2", "--resume"), tiny_experiment(*networks()), CPU)
    assert "Finish that run with the commit that started it, or start afresh with --restart" in str(refused.value)
    assert torch.load(LAST, weights_only=True)["epoch"] == 1  # untouched
    loop.run(game_args("--epochs", "2", "--restart"), tiny_experiment(*networks()), CPU)
    assert torch.load(LAST, weights_only=True)["progress"]["epoch"] == 2