"""--method mad (a moving average of the generator whose samples the student also learns
on) and --replay N (a memory of past generated images replayed in every student step):
what they hold, how they mix into a step, off leaves the game as it was, resume is exact."""
import copy
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from test_dfad_engine import game_args, networks, params, players, state, tiny_experiment
from utils.engine import game, loop, replay
from utils.engine.methods import MAD
from utils.engine.methods.mad import two_part_loss
from utils.runtime.errors import UserError
from utils.runtime.signals import Interrupted

CPU = torch.device("cpu")


def mad(p, *flags):
    return MAD(game_args("--method", "mad", *flags), SimpleNamespace(generator=p.generator), 4)


def test_the_moving_average_after_k_rounds_is_the_hand_computed_one():
    p = players()
    method = mad(p, "--mad_momentum", "0.75")
    after_each_step = [params(p.generator)]
    p.optimizer_G.register_step_post_hook(lambda *_: after_each_step.append(params(p.generator)))
    for _ in range(3):
        method.play_round(p, 4)
    assert len(after_each_step) == 4  # the start and three generator steps
    expected = after_each_step[0]
    for weights in after_each_step[1:]:
        expected = [0.75 * e + 0.25 * w for e, w in zip(expected, weights)]
    for averaged, hand in zip(method.ema.parameters(), expected):
        assert torch.allclose(averaged, hand, rtol=1e-6, atol=1e-7)
    assert not torch.equal(list(method.ema.parameters())[0], after_each_step[-1][0])  # it lags behind G
    for averaged, current in zip(method.ema.buffers(), p.generator.buffers()):
        assert torch.equal(averaged, current)  # BN running statistics: G's, copied


def test_its_samples_are_drawn_as_the_student_sees_the_generators_and_leave_it_unchanged():
    p = players()
    method = mad(p)
    before = state(method.ema)
    torch.manual_seed(5)
    samples = method.ema_samples(p, 16)
    assert all(torch.equal(v, before[k]) for k, v in method.ema.state_dict().items())  # BN buffers too
    torch.manual_seed(5)
    z = p.noise(16)
    with torch.no_grad():  # the same weights, normalised with the batch's statistics, not running ones
        train_mode, eval_mode = (copy.deepcopy(p.generator).train(mode)(z) for mode in (True, False))
    assert torch.equal(samples, train_mode) and not torch.allclose(samples, eval_mode)
    assert not any(q.requires_grad for q in method.ema.parameters())


def test_a_mad_round_learns_on_both_batches_then_moves_the_generator():
    p = players()
    method = mad(p)
    steps, student_batches = [], []
    p.optimizer_S.register_step_post_hook(lambda *_: steps.append("student"))
    p.optimizer_G.register_step_post_hook(lambda *_: steps.append("generator"))
    p.student.register_forward_pre_hook(lambda module, inputs: student_batches.append(len(inputs[0])))
    method.play_round(p, 4)
    assert steps == ["student"] * 5 + ["generator"]
    assert student_batches == [8] * 5 + [4]  # 4 of G and 4 of G~ a step; the generator's step: 4
    assert all(q.grad is None for q in p.teacher.parameters())


def test_the_two_parts_of_the_loss_and_their_weight():
    s, t = torch.zeros(3, 2), torch.tensor([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    # G's part: the first two rows, mean |diff| 1.5; G~'s: the last row, 4
    assert two_part_loss(2, 0.5, game.discrepancy)(s, t).item() == pytest.approx(1.5 + 0.5 * 4)
    assert two_part_loss(2, 0.0, game.discrepancy)(s, t).item() == pytest.approx(1.5)


def batch(value, n=4):
    return torch.full((n, 1, 2, 2), float(value))


def test_the_memory_keeps_at_most_n_entries_and_replaces_the_oldest():
    memory = replay.Replay(capacity=3, entry_size=2, store_period=1, steps_per_epoch=1)
    for value in range(5):  # one step an epoch, every epoch stores
        memory.mix(batch(value))
    assert [int(e[0, 0, 0, 0]) for e in memory.entries] == [3, 4, 2]  # 0 and 1 replaced, in that order
    assert all(e.shape == (2, 1, 2, 2) and e.device == CPU for e in memory.entries)


def test_a_step_appends_one_stored_entry_to_its_fresh_images():
    memory = replay.Replay(capacity=4, entry_size=2, store_period=1, steps_per_epoch=1)
    assert torch.equal(memory.mix(batch(7)), batch(7))  # empty: the step's images as they are
    memory.entries = [batch(v, 2) for v in (10, 20, 30)]
    memory.steps_per_epoch = 10 ** 9  # no more storing
    drawn = set()
    for _ in range(60):
        mixed = memory.mix(batch(1))
        assert mixed.shape[0] == 6 and torch.equal(mixed[:4], batch(1))
        drawn.add(float(mixed[4:].unique()))
    assert drawn == {10.0, 20.0, 30.0}  # a whole entry, drawn uniformly among them


def test_entries_are_stored_at_the_end_of_the_first_epoch_and_every_kth_after():
    memory = replay.Replay(capacity=10, entry_size=1, store_period=2 * 10, steps_per_epoch=10)
    for step in range(1, 61):  # six epochs of ten student steps
        memory.mix(batch(step))
    assert [int(e[0, 0, 0, 0]) for e in memory.entries] == [10, 30, 50]  # epochs 1, 3 and 5


def test_the_flags_build_the_papers_memory():
    args = game_args("--replay")  # bare: the default size; batch 8, 3 rounds an epoch
    memory = replay.build(args, uses_generator=True, batch_size=8)
    assert (memory.capacity, memory.entry_size) == (10, 1)
    assert (memory.steps_per_epoch, memory.store_period) == (15, 75)
    assert replay.build(game_args("--replay", "0"), True, 8) is None
    assert replay.build(game_args(), True, 8) is None
    with pytest.raises(UserError, match="--method kd has no generator"):
        replay.build(game_args("--method", "kd", "--replay", "3"), False, 8)


def run_game(tmp_path, *flags, scrambled=False):
    teacher, student, generator = networks(seed=3)
    if scrambled:  # other starting weights: what a resumed run plays with must all come from the file
        with torch.no_grad():
            for q in [*student.parameters(), *generator.parameters()]:
                q.add_(1)
    torch.manual_seed(7)
    exp = tiny_experiment(teacher, student, generator)
    loop.run(game_args(*flags), exp, CPU)
    return state(student), state(generator)


def same_states(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


@pytest.mark.slow
def test_replay_changes_nothing_until_its_first_entry_then_plays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    off = run_game(tmp_path, "--epochs", "1", "--restart")
    assert same_states(off, run_game(tmp_path, "--epochs", "1", "--replay", "0", "--restart"))
    # stored at the end of epoch 1 only: neither the step's images nor the game's noise change before
    assert same_states(off, run_game(tmp_path, "--epochs", "1", "--replay", "--replay_every", "1", "--restart"))
    two_off = run_game(tmp_path, "--epochs", "2", "--restart")
    assert not same_states(two_off, run_game(tmp_path, "--epochs", "2", "--replay", "--replay_every", "1",
                                             "--restart"))


RESUMED_GAME = ("--method", "mad", "--replay", "--replay_every", "1", "--epochs", "3")
LAST = os.path.join("checkpoint", "student", "unit-tiny-mad-last.pt")


@pytest.mark.slow
def test_resume_restores_the_moving_average_and_the_memory_exactly(tmp_path, monkeypatch):
    (tmp_path / "straight").mkdir()
    monkeypatch.chdir(tmp_path / "straight")
    run_game(tmp_path, *RESUMED_GAME)
    straight = torch.load(LAST, weights_only=True)

    (tmp_path / "stopped").mkdir()
    monkeypatch.chdir(tmp_path / "stopped")
    rounds, play_round = [], MAD.play_round

    def stop_in_epoch_two(self, p, batch_size):
        rounds.append(1)
        if len(rounds) == 5:  # the second of epoch 2's three rounds
            os.kill(os.getpid(), signal.SIGTERM)
        return play_round(self, p, batch_size)
    monkeypatch.setattr(MAD, "play_round", stop_in_epoch_two)
    with pytest.raises(Interrupted):
        run_game(tmp_path, *RESUMED_GAME)
    saved = torch.load(LAST, weights_only=True)
    assert (saved["progress"]["epoch"], saved["progress"]["iteration"], len(saved["replay"][0]["entries"])) == (1, 2, 1)
    monkeypatch.setattr(MAD, "play_round", play_round)
    run_game(tmp_path, *RESUMED_GAME, "--resume", scrambled=True)
    resumed = torch.load(LAST, weights_only=True)

    for key in ("student", "generator"):
        assert all(torch.equal(v, straight[key][k]) for k, v in resumed[key].items()), key
    ema = resumed["method"]["ema_generator"]
    assert all(torch.equal(v, straight["method"]["ema_generator"][k]) for k, v in ema.items())
    memory, straight_memory = resumed["replay"][0], straight["replay"][0]  # one process: rank 0's
    assert len(memory["entries"]) == 3 and memory["steps"] == straight_memory["steps"] == 3 * 3 * 5
    assert all(torch.equal(a, b) for a, b in zip(memory["entries"], straight_memory["entries"]))
    assert torch.equal(memory["rng"], straight_memory["rng"])
    assert resumed["progress"]["history"] == straight["progress"]["history"]


def test_a_run_without_these_parts_saves_them_as_none_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_game(tmp_path, "--epochs", "1")
    last = torch.load(os.path.join("checkpoint", "student", "unit-tiny-last.pt"), weights_only=True)
    assert last["method"] is None and last["replay"] is None  # dfad has no state of its own; no --replay
    run_game(tmp_path, "--epochs", "2", "--resume")
    resumed = torch.load(os.path.join("checkpoint", "student", "unit-tiny-last.pt"), weights_only=True)
    assert resumed["progress"]["epoch"] == 2
