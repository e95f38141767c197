"""--cuda_graph: each round of the game replayed from one CUDA graph.

On a GPU a round of a small game is bound by launching its few hundred small kernels from
Python, not by their arithmetic (LeNet-5: 0.021 s per round on an H200, 0.12-0.36 of the
fp32 peak; docs/speed.md). Captured once, a round is one graph launch: the same kernels
on the same tensors, so the same math.

What a graph cannot hold is refused while the flags are parsed (:func:`check_cuda_graph`,
every rule in one place) or handled here:

- the first rounds run eagerly, on a side stream as capture wants: they create the
  optimizers' state and let cuDNN choose its kernels before anything is captured;
- a captured kernel holds the hyperparameters it was captured with as constants (an SGD
  step's learning rate): the round is captured again when any of them changes (a
  scheduler's milestone, a resume with other learning rates);
- the losses a replay returns live in the graph's memory, which the next replay
  overwrites: the caller gets copies.

What runs inside the round is replayed as captured, so it must be GPU work whose host-side
values never change: the optimizers are built ``capturable`` (Adam's step count lives on
the GPU), autocast does not cache casts, and a ``Players.after_student_step`` hook must
hold no Python-side state that changes from step to step.
"""
import warnings

import torch

from ..runtime.errors import UserError

EAGER_ROUNDS = 3  # as PyTorch's own whole-network capture example warms up


def check_cuda_graph(args, methods, device_type, world_size):
    """Refuse a ``--cuda_graph`` run (``args``) that a graph cannot replay, before any work: what the
    run combines first (the method, other options), then where it runs. ``methods``: the
    registry of ``Method`` classes; ``device_type``: "cuda" or "cpu"; ``world_size``: the
    processes the run will have."""
    method = methods[args.method]
    for problem in (
        # A replay repeats the kernels it captured on the same tensors, so a round must be the
        # same GPU work every time, with no host-side value that changes from step to step.
        not method.captures_in_cuda_graph and
        f"--cuda_graph cannot capture --method {args.method}: only methods whose rounds are the same GPU work "
        f"every time are replayed from a graph ({', '.join(m for m, c in methods.items() if c.captures_in_cuda_graph)}). Drop --cuda_graph "
        f"for this method.",
        args.student_ema and
        "--cuda_graph cannot capture --student_ema: the average's bias correction changes with every step, and "
        "a replayed graph would keep the value it had when it was captured. Drop one of the two.",
        args.replay and
        "--cuda_graph cannot capture --replay: which stored images a step replays is decided in Python at "
        "every step, and a replayed graph would repeat the choice it captured. Drop one of the two.",
        args.amp == "fp16" and
        "--cuda_graph cannot replay --amp fp16: its gradient scaler reads the gradients on the host after "
        "every step, which a graph cannot hold. Use --amp bf16 (no scaler) or fp32.",
        args.compile and
        "--cuda_graph and --compile both turn the round into graphs; pass one of them.",
        device_type != "cuda" and
        "--cuda_graph replays each round from a CUDA graph and needs a CUDA GPU, but this run is on the CPU "
        "(no GPU visible to PyTorch, or --no_cuda). Drop --cuda_graph: on a CPU a round costs its arithmetic, "
        "not kernel launches, so a graph has nothing to save.",
        world_size > 1 and
        f"--cuda_graph runs in one process, but this run has {world_size} (torchrun): the gradient all-reduce "
        f"between processes is not captured. Drop --cuda_graph, or run one process per experiment (e.g. "
        f"benchmarks/paper_table.py --jobs).",
    ):
        if problem:
            raise UserError(problem)


def hyperparameters(players, batch_size):
    """Everything a captured round holds as a constant, as one comparable value."""
    groups = [{key: value for key, value in group.items() if key != "params"}
              for optimizer in (players.optimizer_S, players.optimizer_G) for group in optimizer.param_groups]
    return repr((batch_size, groups))


class CapturedRound:
    """A method's ``play_round(p, batch_size)``, replayed from a CUDA graph after
    ``eager_rounds`` eager rounds; every call plays exactly one round of the game."""

    def __init__(self, play_round, eager_rounds=EAGER_ROUNDS):
        self.play_round = play_round
        self.eager_rounds_left = eager_rounds
        self.side_stream = None
        self.graph = None
        self.losses = None
        self.captured_with = None  # hyperparameters(...) at capture

    def __call__(self, p, batch_size):
        if self.eager_rounds_left > 0:
            self.eager_rounds_left -= 1
            return self.eager(p, batch_size)
        constants = hyperparameters(p, batch_size)
        if constants != self.captured_with:
            self.capture(p, batch_size)
            self.captured_with = constants
        self.graph.replay()
        return tuple(loss.clone() for loss in self.losses)

    def eager(self, p, batch_size):
        if self.side_stream is None:
            self.side_stream = torch.cuda.Stream()
        self.side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side_stream), warnings.catch_warnings():
            # Capturable optimizers warn when they step outside a graph; these steps are meant to.
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            losses = self.play_round(p, batch_size)
        torch.cuda.current_stream().wait_stream(self.side_stream)
        return losses

    def capture(self, p, batch_size):
        """Record one round. Capturing computes nothing: the replay that follows plays it."""
        self.graph = self.losses = None  # the previous graph, and its memory, go
        # Gradients that are None when capture starts are allocated by the captured
        # backward passes in the graph's own memory, where every replay writes them.
        p.optimizer_S.zero_grad(set_to_none=True)
        p.optimizer_G.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a DataLoader's pin-memory thread may allocate while this thread captures.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.losses = self.play_round(p, batch_size)
        self.graph = graph
