"""The fast paths keep the method's math: one game step under each option ~ plain fp32."""
import copy
from types import SimpleNamespace

import pytest
import torch

import DFAD_mnist
import network
from utils.engine import dfad, game
from utils.engine.methods.dfad import generator_step, student_step

OPTIONS = {  # name -> (channels_last, compile, amp, tolerance on losses and updated weights)
    "default": (None, False, None, 1e-4),  # DFAD_mnist.py's defaults (channels_last on)
    "channels_last": (True, False, None, 1e-4),
    "bf16": (False, False, "bf16", 5e-2),
    "fp16": (False, False, "fp16", 5e-2),
    "compile": (False, True, None, 1e-4),
}


def players():
    torch.manual_seed(0)
    return (game.freeze(network.lenet.LeNet5()), network.lenet.LeNet5Half().train(),
            network.gan.GeneratorA(nz=100, nc=1, img_size=32).train())


def experiment(teacher, student, generator):
    """What build_players reads of an Experiment."""
    return SimpleNamespace(teacher=teacher, student=student, generator=generator, milestones=None,
                           adversarial_loss=game.adversarial_loss_l1)


def one_round(option):
    teacher, student, generator = players()
    channels_last, compile_, amp, _ = OPTIONS.get(option, (False, False, None, 0))
    layout = {None: [], True: ["--channels_last"], False: ["--no_channels_last"]}[channels_last]
    flags = ["--lr_S", "0.1", "--weight_decay", "0"] + layout + ["--compile"] * compile_ + ["--amp", amp] * bool(amp)
    args = DFAD_mnist.get_args_parser().parse_args(flags)
    p, _ = dfad.build_players(args, experiment(teacher, student, generator), torch.device("cpu"))
    z = torch.randn(16, 100, 1, 1, generator=torch.Generator().manual_seed(1))
    loss_S = student_step(p, p.generate(z))
    loss_G = generator_step(p, z)
    return loss_S.float(), loss_G.float(), copy.deepcopy(student.state_dict()), copy.deepcopy(generator.state_dict())


@pytest.fixture(scope="module")
def plain():
    return one_round("plain")


@pytest.mark.parametrize("option", list(OPTIONS))
def test_option_matches_plain_fp32(option, plain):
    tolerance = OPTIONS[option][3]
    loss_S, loss_G, student, generator = one_round(option)
    torch.testing.assert_close(loss_S, plain[0], rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(loss_G, plain[1], rtol=tolerance, atol=tolerance)
    for ours, theirs in ((student, plain[2]), (generator, plain[3])):
        for key in theirs:
            if theirs[key].is_floating_point():
                torch.testing.assert_close(ours[key].contiguous(), theirs[key], rtol=tolerance,
                                           atol=tolerance * 10, msg=key)


def test_fp16_uses_one_grad_scaler_per_optimizer():
    args = DFAD_mnist.get_args_parser().parse_args(["--amp", "fp16"])
    p, _ = dfad.build_players(args, experiment(*players()), torch.device("cpu"))
    z = torch.randn(4, 100, 1, 1)
    student_step(p, p.generate(z))
    generator_step(p, z)
    assert set(p.precision.state_dict()) == {"student", "generator"}


def test_channels_last_is_the_default_and_can_be_turned_off():
    parse = DFAD_mnist.get_args_parser().parse_args
    assert parse([]).channels_last is True
    assert parse(["--channels_last"]).channels_last is True
    assert parse(["--no_channels_last"]).channels_last is False


def test_every_dfad_script_defaults_to_channels_last_and_teachers_do_not():
    import DFAD_caltech101
    import DFAD_camvid_deeplab
    import DFAD_cifar
    import DFAD_nyu_deeplab
    import train_teacher
    for script in (DFAD_cifar, DFAD_caltech101, DFAD_camvid_deeplab, DFAD_nyu_deeplab):
        assert script.get_args_parser().parse_args([]).channels_last is True
        assert script.get_args_parser().parse_args(["--no_channels_last"]).channels_last is False
    assert train_teacher.get_args_parser().parse_args([]).channels_last is False
