"""The generator's objective as weighted terms: each term is the field's (the fingerprints of
shared/datafree-objective, made by CMI's own code), a weighting is their weighted sum, the
teacher's BatchNorm hooks live only inside the generator step, and a weighting the teacher
cannot serve is refused before any work."""
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_script
from test_reference_game import float64, seeded, set_weights_by_name  # noqa: F401 (float64: a fixture)
from torch import nn

import DFAD_cifar
import DFAD_mnist
import network
from network import wresnet
from utils.engine import game, objective
from utils.engine.methods import DFAD, METHODS
from utils.runtime.errors import UserError

FINGERPRINT = Path(os.environ.get("DFAD_OBJECTIVE_FINGERPRINT",
                                  ROOT.parent / "shared" / "datafree-objective" / "cifar.json"))
TOLERANCE = 1e-6
# Each fingerprinted term as a weighting of ours: (weights, adversarial loss).
AS_WEIGHTS = {"bn": ({"bn": 1}, None), "oh": ({"oh": 1}, None), "act": ({"act": 1}, None),
              "balance": ({"balance": 1}, None), "adv_l1": ({"adv": 1}, game.adversarial_loss_l1),
              "adv_kl": ({"adv": 1}, objective.adversarial_kl)}


def cifar_players():
    """The protocol's players: the reference's CIFAR networks, weights decided by name."""
    teacher, student = network.resnet_8x.ResNet34_8x(10), network.resnet_8x.ResNet18_8x(10)
    generator = network.gan.GeneratorA(nz=256, nc=3, img_size=32)
    for model, prefix in ((teacher, "T."), (student, "S."), (generator, "G.")):
        set_weights_by_name(model, prefix)
    return game.freeze(teacher), student.train(), generator.train()


def value_and_gradient(weights, adversarial, players, z):
    teacher, student, generator = players
    generator.zero_grad(set_to_none=True)
    loss = objective.GeneratorObjective(weights, adversarial or game.adversarial_loss_l1, teacher)(
        generator(z), student, teacher)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in generator.named_parameters()}
    return loss.item(), grads


@pytest.mark.skipif(not FINGERPRINT.is_file(), reason=f"no fingerprint file at {FINGERPRINT} "
                                                       "(DFAD_OBJECTIVE_FINGERPRINT names another)")
@pytest.mark.slow
def test_every_term_reproduces_the_fields_fingerprint(float64):
    reference = json.loads(FINGERPRINT.read_text())
    players = cifar_players()
    assert len(objective.batchnorm_layers(players[0])) == reference["num_teacher_bn_layers"]
    z = seeded(reference["z_key"], (reference["bs"], reference["nz"], 1, 1))
    assert set(AS_WEIGHTS) == set(reference["terms"])
    for name, expected in reference["terms"].items():
        value, grads = value_and_gradient(*AS_WEIGHTS[name], players, z)
        projection = sum(float((g * seeded("vgrad." + n, g.shape)).sum()) for n, g in grads.items())
        norm = float(torch.cat([g.flatten() for g in grads.values()]).norm())
        scale = max(abs(expected["value"]), expected["grad_norm"], 1e-12)
        errors = [abs(ours - expected[key]) / scale
                  for ours, key in ((value, "value"), (projection, "grad_projection"), (norm, "grad_norm"))]
        assert max(errors) < TOLERANCE, (name, errors)


def small_players():
    """CMI's smallest benchmark network as teacher and student: the same terms, in a second."""
    torch.manual_seed(0)
    teacher, student = wresnet.wrn_16_1(10), wresnet.wrn_16_1(10)
    set_weights_by_name(teacher, "T.")
    return game.freeze(teacher), student.train(), network.gan.GeneratorA(nz=16, nc=3).train()


def test_a_weighting_is_the_weighted_sum_of_its_terms(float64):
    players = small_players()
    z = seeded("objective-z", (4, 16, 1, 1))
    weights = {"adv": 0.5, "bn": 0.01, "oh": 2.0, "balance": 20.0, "act": 0.1}
    total, total_grads = value_and_gradient(weights, None, players, z)
    parts = [value_and_gradient({name: 1}, None, players, z) for name in weights]
    assert total == pytest.approx(sum(w * v for w, (v, _) in zip(weights.values(), parts)), rel=1e-12)
    for key, grad in total_grads.items():
        expected = sum(w * g[key] for w, (_, g) in zip(weights.values(), parts))
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


def mnist_round(teacher, weights):
    torch.manual_seed(0)
    student = network.lenet.LeNet5Half().train()
    generator = network.gan.GeneratorA(nz=100, nc=1, img_size=32).train()
    return game.Players(teacher, student, generator, torch.optim.SGD(student.parameters(), lr=0.01),
                        torch.optim.Adam(generator.parameters(), lr=1e-3), nz=100, device=torch.device("cpu"),
                        objective=objective.GeneratorObjective(weights, game.adversarial_loss_l1, teacher))


def test_the_batchnorm_hooks_fire_only_in_the_generator_step(monkeypatch):
    teacher = network.lenet.LeNet5()
    teacher.conv1 = nn.Sequential(teacher.conv1, nn.BatchNorm2d(6))  # one BatchNorm layer
    game.freeze(teacher)
    p = mnist_round(teacher, {"adv": 1, "bn": 1})
    calls = []
    hook = objective.BatchNormInputs.hook
    monkeypatch.setattr(objective.BatchNormInputs, "hook", lambda self, *a: (calls.append(1), hook(self, *a))[1])
    DFAD().play_round(p, 8)  # 5 student steps (6 teacher forwards with the generator step), 1 generator step
    assert len(calls) == 1  # one layer, one generator step: the student steps never fire it
    assert not teacher.conv1[1]._forward_hooks  # removed after the step: evaluation never fires it


def test_no_hook_is_registered_without_the_bn_term(monkeypatch):
    registered = []
    register = nn.Module.register_forward_hook
    monkeypatch.setattr(nn.Module, "register_forward_hook",
                        lambda self, *a, **k: (registered.append(self), register(self, *a, **k))[1])
    teacher, student, generator = small_players()  # 13 BatchNorm layers in the teacher
    p = game.Players(teacher, student, generator, torch.optim.SGD(student.parameters(), lr=0.01),
                     torch.optim.Adam(generator.parameters(), lr=1e-3), nz=16, device=torch.device("cpu"),
                     objective=objective.GeneratorObjective({"adv": 1}, game.adversarial_loss_l1, teacher))
    assert p.objective.batchnorm is None
    DFAD().play_round(p, 2)
    assert registered == []


def test_a_new_term_is_one_function_and_one_registry_line(monkeypatch):
    def tv(out):  # total variation of the generated images (DeepInversion's image prior)
        x = out.images
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()
    monkeypatch.setitem(objective.TERMS, "tv", objective.Term(tv, frozenset(), "total variation of the images"))
    args = DFAD_mnist.get_args_parser().parse_args(["--tv", "0.5", "--no_visdom"])
    assert objective.weights_of(args) == {"adv": 1.0, "tv": 0.5}
    built = objective.build(args, network.lenet.LeNet5(), game.adversarial_loss_l1)
    images = torch.rand(2, 1, 32, 32)
    teacher, student = game.freeze(network.lenet.LeNet5()), network.lenet.LeNet5Half()
    expected = game.adversarial_loss_l1(student(images), teacher(images)) + 0.5 * tv(objective.Outputs(images))
    assert built(images, student, teacher).item() == pytest.approx(expected.item(), rel=1e-6)


def test_methods_are_weightings_of_the_one_step():
    weights = {name: objective.weights_of(DFAD_cifar.get_args_parser().parse_args(["--method", name]))
               for name in ("dfad", "dafl", "dfq", "mad")}
    assert weights["dfad"] == weights["mad"] == {"adv": 1.0}
    assert set(weights["dafl"]) == {"oh", "balance", "act"}
    assert weights["dfq"] == {"adv": 1.0, "bn": 1.0, "oh": 1.0, "balance": 20.0}
    dfq = DFAD_cifar.get_args_parser().parse_args(["--method", "dfq"])
    assert (dfq.adv_loss, dfq.student_loss, dfq.temperature) == ("kl", "kl", 1.0)
    dafl = DFAD_mnist.get_args_parser().parse_args(["--method", "dafl", "--dafl_ie", "3"])  # DAFL's own flag name
    assert (dafl.balance, dafl.student_loss, dafl.adv) == (3.0, "kl", 0.0)
    assert all(METHODS[m].play_round is DFAD.play_round for m in ("dafl", "dfq"))


def test_a_weighting_the_teacher_cannot_serve_is_refused_before_any_work(tmp_path, monkeypatch):
    torch.save(network.lenet.LeNet5().state_dict(), tmp_path / "teacher.pt")
    flags = ["--dataset", "digits", "--no_visdom", "--ckpt", "teacher.pt"]
    proc = run_script("DFAD_mnist.py", *flags, "--bn", "1", cwd=tmp_path, timeout=120)  # as a user meets it
    assert proc.returncode == 2, proc.stderr
    assert ("--bn 1: the generator's bn term cannot be computed with this teacher: LeNet5 has no BatchNorm layer"
            in proc.stderr)
    assert "Set --bn 0 or use another teacher" in proc.stderr and "Teacher" not in proc.stdout
    monkeypatch.chdir(tmp_path)  # the method's weighting, in this process
    with pytest.raises(UserError, match=r"--bn 1 \(--method dfq weighs it so\).*Set --bn 0 or use another teacher"):
        DFAD_mnist.main([*flags, "--method", "dfq"])
    assert not (tmp_path / "log").exists() and not (tmp_path / "results").exists()


def test_weights_for_a_method_without_generator_step_are_refused():
    with pytest.raises(UserError, match="--bn --oh weigh the generator's objective, and --method random has no "
                                        "generator step"):
        DFAD_mnist.get_args_parser().parse_args(["--method", "random", "--bn", "1", "--oh", "1"])
    with pytest.raises(UserError, match="every weight .* is 0"):
        objective.build(DFAD_mnist.get_args_parser().parse_args(["--adv", "0"]), network.lenet.LeNet5(), None)
    assert DFAD_mnist.get_args_parser().parse_args(["--method", "kd"]).adv == 1.0  # defaults are not "given"
