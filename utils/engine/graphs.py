"""--cuda_graph: each round of the game replayed from one CUDA graph.

On a GPU a round of a small game is bound by launching its few hundred small kernels from
Python, not by their arithmetic (LeNet-5: 0.021 s per round on an H200, 0.12-0.36 of the
fp32 peak; docs/speed.md). Captured once, a round is one graph launch: the same kernels
on the same tensors, so the same math.

What a graph cannot hold is refused before the run (``utils/runtime/speed.py``: CPU,
torchrun, fp16, --compile; ``options.check_cuda_graph_method``: rounds that read data)
or handled here:

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

EAGER_ROUNDS = 3  # as PyTorch's own whole-network capture example warms up


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
