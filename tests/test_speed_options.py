"""The fast paths keep the method's math: one game step under each option ~ plain fp32."""
import copy
import re
from types import SimpleNamespace

import pytest
import torch

import DFAD_mnist
import network
from conftest import ROOT
from utils.engine import game, loop
from utils.engine.methods.dfad import generator_step, student_step
from utils.runtime import cli, speed
from utils.runtime.speed import EXPERIMENTS

OPTIONS = {  # name -> (channels_last, compile, amp, tolerance on losses and updated weights)
    "default": (None, False, None, 1e-4),  # DFAD_mnist.py's defaults (memory format resolved for this device)
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
    p, _ = loop.build_players(args, experiment(teacher, student, generator), torch.device("cpu"))
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
    p, _ = loop.build_players(args, experiment(*players()), torch.device("cpu"))
    z = torch.randn(4, 100, 1, 1)
    student_step(p, p.generate(z))
    generator_step(p, z)
    assert set(p.precision.state_dict()) == {"student", "generator"}


def test_memory_format_resolves_from_the_measured_table_and_flags_override():
    parse = DFAD_mnist.get_args_parser().parse_args
    auto = parse(["--no_cuda"])
    assert auto.channels_last is True
    assert auto.channels_last_from.startswith("auto: MNIST on cpu measured 1.10-1.35x of NCHW's speed")
    assert parse(["--no_cuda", "--channels_last"]).channels_last_from == "given: --channels_last"
    off = parse(["--no_cuda", "--no_channels_last"])
    assert off.channels_last is False and off.channels_last_from == "given: --no_channels_last"


def test_mnist_on_a_gpu_does_not_default_to_the_layout_measured_slower():
    default = speed.channels_last_default("cuda", "mnist")
    assert default.value is False and "0.78x" in default.evidence
    assert speed.channels_last_default("cuda", "cifar").value is True
    assert speed.channels_last_default("mps", "mnist").value is False  # nobody measured it: PyTorch's NCHW


def test_every_figure_the_table_rests_on_is_in_the_speed_doc():
    speed_section = (ROOT / "docs" / "speed.md").read_text()
    for (device, experiment), default in speed.CHANNELS_LAST.items():
        assert experiment in speed.EXPERIMENTS
        for low, high in re.findall(r"(\d\.\d\d)(?:-(\d\.\d\d))?x", default.evidence):
            for figure in filter(None, (low, high)):
                assert f"{figure}x" in speed_section, (device, experiment, figure)


def test_every_dfad_script_resolves_its_own_experiment_and_teachers_keep_nchw():
    import DFAD_caltech101
    import DFAD_camvid_deeplab
    import DFAD_cifar
    import DFAD_nyu_deeplab
    import train_teacher
    scripts = {DFAD_mnist: "mnist", DFAD_cifar: "cifar", DFAD_caltech101: "caltech101",
               DFAD_camvid_deeplab: "deeplab", DFAD_nyu_deeplab: "deeplab"}
    for script, experiment in scripts.items():
        args = script.get_args_parser().parse_args(["--no_cuda"])
        default = speed.channels_last_default("cpu", experiment)
        assert args.channels_last is default.value and default.evidence in args.channels_last_from
        assert script.get_args_parser().parse_args(["--no_channels_last"]).channels_last is False
        assert EXPERIMENTS[experiment] in script.get_args_parser().format_help().replace("\n", " ")
    assert train_teacher.get_args_parser().parse_args([]).channels_last is False


def test_the_run_starts_with_what_was_resolved_and_why(capsys):
    args = DFAD_mnist.get_args_parser().parse_args(["--no_cuda"])
    cli.setup(args)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"channels_last: on ({args.channels_last_from})"
    assert "channels_last_from=" in lines[0]  # and the run's record holds it (vars(args))
