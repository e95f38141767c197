"""The min-max game and its loop: each player moves the discrepancy its way; the
teacher never changes; a run saves the best players and one CSV row."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import DFAD_mnist
import network
from utils.engine import game, loop
from utils.engine.methods import DFAD
from utils.engine.methods.dfad import generator_step, student_step
from utils.metrics.classification import evaluate_classifier


def game_args(*flags):
    """The DFAD MNIST script's own flags, at tiny sizes."""
    return DFAD_mnist.get_args_parser().parse_args(
        ["--epochs", "2", "--epoch_itrs", "3", "--batch_size", "8", "--lr_S", "0.05",
         "--weight_decay", "5e-4", "--log_interval", "1", "--no_visdom", *flags])


def players(seed=0):
    """The MNIST players and their optimizers (the script's learning rates, no weight decay)."""
    torch.manual_seed(seed)
    teacher = game.freeze(network.lenet.LeNet5())
    student = network.lenet.LeNet5Half().train()
    generator = network.gan.GeneratorA(nz=100, nc=1, img_size=32).train()
    return game.Players(teacher, student, generator, torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9),
                        torch.optim.Adam(generator.parameters(), lr=1e-3), nz=100, device=torch.device("cpu"))


def discrepancy_on(teacher, student, generator, z):
    with torch.no_grad():
        fake = generator(z)
        return game.discrepancy(student(fake), teacher(fake)).item()


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_student_steps_lower_the_discrepancy_on_a_fixed_batch():
    p = players()
    images = p.generate(torch.randn(64, 100, 1, 1))
    losses = [student_step(p, images).item() for _ in range(10)]
    assert losses[-1] < 0.7 * losses[0]


def test_generator_step_raises_the_discrepancy_on_its_samples():
    p = players()
    p.generator.eval()  # compare before/after with the same (running) statistics
    z = torch.randn(64, 100, 1, 1)
    before = discrepancy_on(p.teacher, p.student, p.generator, z)
    p.generator.train()
    for _ in range(3):
        generator_step(p, z)
    p.generator.eval()
    assert discrepancy_on(p.teacher, p.student, p.generator, z) > before


def test_each_optimizer_only_moves_its_own_player():
    p = players()
    z = torch.randn(16, 100, 1, 1)
    g_before = params(p.generator)
    student_step(p, p.generate(z))
    assert all(torch.equal(a, b) for a, b in zip(g_before, params(p.generator)))

    s_before = params(p.student)
    p.optimizer_S.zero_grad(set_to_none=True)
    generator_step(p, z)
    assert all(torch.equal(a, b) for a, b in zip(s_before, params(p.student)))
    assert all(w.requires_grad for w in p.student.parameters())  # unfrozen again afterwards
    assert all(w.grad is None for w in p.student.parameters())   # no wasted weight gradients


def test_a_round_is_five_student_steps_then_one_generator_step():
    p = players()
    steps = []
    p.optimizer_S.register_step_post_hook(lambda *_: steps.append("student"))
    p.optimizer_G.register_step_post_hook(lambda *_: steps.append("generator"))
    DFAD().play_round(p, 4)
    assert steps == ["student"] * 5 + ["generator"]


def test_segmentation_loss_is_negative_log_of_l1_plus_one():
    s, t = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 2.0)
    assert game.adversarial_loss_log_l1(s, t).item() == pytest.approx(-torch.log(torch.tensor(3.0)).item())
    assert game.adversarial_loss_l1(s, t).item() == pytest.approx(-2.0)


def tiny_experiment(teacher, student, generator):
    images = torch.randn(20, 1, 32, 32)
    loader = DataLoader(TensorDataset(images, torch.randint(0, 10, (20,))), batch_size=8)
    return loop.Experiment(
        dataset="unit", student_name="tiny", teacher=teacher, student=student, generator=generator,
        test_loader=loader, evaluate=evaluate_classifier, metric_name="Acc")


def networks(seed=0):
    p = players(seed)
    return p.teacher, p.student, p.generator


def test_teacher_is_bit_identical_after_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher, student, generator = networks()
    teacher_before = state(teacher)
    exp = tiny_experiment(teacher, student, generator)
    loop.run(game_args(), exp, torch.device("cpu"))
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_run_saves_best_players_and_one_csv_row_per_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        exp = tiny_experiment(*networks())
        best = loop.run(game_args(), exp, torch.device("cpu"))
    rows = (tmp_path / "log" / "DFAD-unit.csv").read_text().splitlines()
    assert len(rows) == 2 and all(len(r.split(",")) == 2 for r in rows)
    assert max(float(v) for v in rows[-1].split(",")) == pytest.approx(best)
    saved = torch.load(tmp_path / "checkpoint" / "student" / "unit-tiny.pt", weights_only=True)
    assert list(saved) == list(network.lenet.LeNet5Half().state_dict())
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Best Acc={best:.6f}"


def test_same_seed_gives_the_same_game(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = []
    for _ in range(2):
        teacher, student, generator = networks(seed=3)
        torch.manual_seed(7)
        loop.run(game_args("--epochs", "1"), tiny_experiment(teacher, student, generator), torch.device("cpu"))
        results.append(state(student))
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k
