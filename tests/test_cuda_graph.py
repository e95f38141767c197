"""--cuda_graph: the round replayed from a CUDA graph plays the eager round's game, and
what a graph cannot run is refused before anything runs."""
import copy

import pytest
import torch

import DFAD_mnist
import network
from utils.engine import game, graphs
from utils.engine.methods import DFAD, METHODS
from utils.runtime import distributed
from utils.runtime.errors import UserError
from utils.runtime.speed import Precision

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA graphs capture GPU kernels and no CUDA GPU is visible "
                                       "(on a CPU --cuda_graph is refused: the tests below)")


def players(device, graph, seed=0):
    """MNIST's players in fp32, built for capture where ``graph``."""
    torch.manual_seed(seed)
    teacher = game.freeze(network.lenet.LeNet5()).to(device)
    student = network.lenet.LeNet5Half().train().to(device)
    generator = network.gan.GeneratorA(nz=100, nc=1, img_size=32).train().to(device)
    return game.Players(teacher, student, generator, torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9),
                        torch.optim.Adam(generator.parameters(), lr=1e-3, capturable=graph), nz=100,
                        device=torch.device(device), precision=Precision(None, device, cache_casts=not graph))


def play(p, play_round, rounds, lr_change_after):
    """``rounds`` rounds from one seed; the learning rates drop x0.1 (a scheduler's
    milestone) after ``lr_change_after`` of them."""
    torch.manual_seed(1)
    losses = []
    for i in range(rounds):
        if i == lr_change_after:
            for optimizer in (p.optimizer_S, p.optimizer_G):
                optimizer.param_groups[0]["lr"] *= 0.1
        losses.append(torch.stack(play_round(p, 32)).cpu())
    return torch.stack(losses), copy.deepcopy(p.student.state_dict()), copy.deepcopy(p.generator.state_dict())


@NEEDS_CUDA
def test_graph_rounds_match_eager_rounds_in_fp32():
    rounds, change = graphs.EAGER_ROUNDS + 6, graphs.EAGER_ROUNDS + 3  # replays before and after a recapture
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        eager = play(players("cuda", graph=False), DFAD().play_round, rounds, change)
        captured = graphs.CapturedRound(DFAD().play_round)
        replayed = play(players("cuda", graph=True), captured, rounds, change)
    assert captured.graph is not None  # the later rounds were replays
    torch.testing.assert_close(replayed[0], eager[0], rtol=1e-4, atol=1e-4)
    for ours, theirs in zip(replayed[1:], eager[1:]):
        for key, value in theirs.items():
            torch.testing.assert_close(ours[key], value, rtol=1e-4, atol=1e-4, msg=key)


def test_a_captured_round_is_captured_again_when_a_constant_of_it_changes():
    p = players("cpu", graph=False)
    scheduler = torch.optim.lr_scheduler.StepLR(p.optimizer_S, 1)
    constants = graphs.hyperparameters(p, 32)
    DFAD().play_round(p, 4)  # optimizer state grows; the constants do not
    assert graphs.hyperparameters(p, 32) == constants
    scheduler.step()  # x0.1 at a milestone
    assert graphs.hyperparameters(p, 32) != constants
    assert graphs.hyperparameters(p, 64) != graphs.hyperparameters(p, 32)


def test_cuda_graph_is_refused_on_the_cpu():
    with pytest.raises(UserError, match="--cuda_graph replays each round from a CUDA graph and needs a CUDA GPU"):
        DFAD_mnist.main(["--cuda_graph", "--no_cuda", "--no_visdom"])  # before any file is read


def gpu_args(*flags):
    """The arguments a GPU machine parses (on a CPU the parser refuses --cuda_graph)."""
    args = DFAD_mnist.get_args_parser().parse_args(list(flags))
    args.cuda_graph = True
    return args


@pytest.mark.parametrize("flags,problem", [
    (["--amp", "fp16"], "cannot replay --amp fp16"),
    (["--compile"], "pass one of them"),
])
def test_cuda_graph_refuses_what_a_graph_cannot_hold(flags, problem):
    with pytest.raises(UserError, match=problem):
        graphs.check_cuda_graph(gpu_args(*flags), METHODS, "cuda", world_size=1)
    with pytest.raises(UserError, match="runs in one process, but this run has 2"):
        graphs.check_cuda_graph(gpu_args(), METHODS, "cuda", world_size=2)
    graphs.check_cuda_graph(gpu_args(), METHODS, "cuda", world_size=1)  # the allowed case passes


def test_under_torchrun_cuda_graph_is_refused_while_parsing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="--cuda_graph runs in one process, but this run has 2"):
        graphs.check_cuda_graph(gpu_args(), METHODS, "cuda", distributed.launched_world_size())


def test_cuda_graph_refuses_methods_whose_rounds_change():
    with pytest.raises(UserError, match="cannot capture --method kd"):
        DFAD_mnist.get_args_parser().parse_args(["--cuda_graph", "--method", "kd"])  # on any machine
    graphs.check_cuda_graph(gpu_args("--method", "dfad"), METHODS, "cuda", world_size=1)


@pytest.mark.parametrize("flag", ["--student_ema", "--replay"])
def test_cuda_graph_refuses_what_changes_from_step_to_step(flag):
    with pytest.raises(UserError, match=flag):
        graphs.check_cuda_graph(gpu_args(flag), METHODS, "cuda", world_size=1)
