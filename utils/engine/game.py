"""The vocabulary of the DFAD game: the players, the discrepancy they play on, noise,
and what a method (a way of playing a round) declares.

The value of the game is the L1 distance between student and teacher logits on generated
images: the student minimises it, the generator maximises it ("hard samples"), the
teacher is frozen. Each method's round is in ``methods/``; the loop around the rounds
(epochs, evaluation, checkpoints) is in ``loop.py``.
"""
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import distributed
from ..runtime.speed import Precision

STUDENT_STEPS = 5  # student steps per round, then one generator step


def discrepancy(s_logit, t_logit):
    """Mean absolute error between student and teacher logits (the game's value).

    Half-precision logits (mixed precision) are compared in float32; fp32 and float64
    ones as they are."""
    return F.l1_loss(at_least_fp32(s_logit), at_least_fp32(t_logit))


def at_least_fp32(x):
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def adversarial_loss_l1(s_logit, t_logit):
    """Classification: the generator maximises the L1 discrepancy."""
    return -discrepancy(s_logit, t_logit)


def adversarial_loss_log_l1(s_logit, t_logit):
    """Segmentation: -log(L1 + 1) keeps the generator's gradient bounded on dense outputs."""
    return -torch.log(discrepancy(s_logit, t_logit) + 1)


def kl_divergence(s_logit, t_logit, temperature=1.0):
    """Hinton's KD loss: T^2 * KL(softmax(t/T) || softmax(s/T)) over dim 1, averaged over
    the batch (and, for segmentation, over pixels)."""
    s = at_least_fp32(s_logit) / temperature
    t = at_least_fp32(t_logit) / temperature
    kl = (F.softmax(t, dim=1) * (F.log_softmax(t, dim=1) - F.log_softmax(s, dim=1))).sum(dim=1)
    return kl.mean() * temperature ** 2


def sample_noise(batch_size, nz, device):
    return torch.randn(batch_size, nz, 1, 1, device=device)


@torch.no_grad()
def draw_as_trained(generator, z):
    """The generator's images for noise ``z`` as the student sees them in the game: in
    train mode, each BatchNorm normalising with the batch's own statistics. Nothing of
    the generator changes: its running statistics are updated on copies, its mode is
    restored. (In eval mode a generator whose running statistics never moved, the random
    generator's, would normalise with its initial ones and draw nearly blank images.)"""
    generator = distributed.unwrap(generator)
    buffer_copies = {name: b.clone() for name, b in generator.named_buffers()}
    training = generator.training
    generator.train()
    try:
        return torch.func.functional_call(generator, buffer_copies, (z,))
    finally:
        generator.train(training)


def batch_statistics_only(generator):
    """Its BatchNorm layers stop tracking running statistics: it normalises every batch with
    the batch's own, in either mode, and its buffers never change."""
    for m in generator.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False


def freeze(model):
    """Eval mode and no weight gradients: the teacher is never trained."""
    model.eval()
    model.requires_grad_(False)
    return model


@contextlib.contextmanager
def weights_frozen(model):
    """``model`` (unwrapped from DDP) with no weight gradients for a while: gradients flow
    through it to its inputs, but nobody reads its own, so they are neither computed nor
    synchronised."""
    model = distributed.unwrap(model)
    model.requires_grad_(False)
    try:
        yield model
    finally:
        model.requires_grad_(True)


@dataclass
class Players:
    """The three networks as a round calls them, the two optimizers, and what a step needs.

    ``student`` and ``generator`` may be wrapped (DistributedDataParallel) or compiled;
    the raw modules, whose state_dicts carry the reference keys, are the Experiment's.
    """

    teacher: nn.Module
    student: nn.Module
    generator: nn.Module
    optimizer_S: torch.optim.Optimizer
    optimizer_G: torch.optim.Optimizer
    nz: int
    device: torch.device
    objective: Callable = None  # the generator's loss of (images, student, teacher); None: DFAD's (-L1)
    precision: Precision = field(default_factory=Precision)
    after_student_step: Callable = lambda: None  # e.g. the student's moving average
    replay: object = None  # --replay: past generated images every student step also learns on (replay.Replay)
    student_loss: Callable = discrepancy  # what the student minimises, of (s_logit, t_logit)

    def __post_init__(self):
        if self.objective is None:
            from .objective import dfad_objective  # objective.py builds on this module
            self.objective = dfad_objective()

    def noise(self, batch_size):
        return sample_noise(batch_size, self.nz, self.device)

    @torch.no_grad()
    def generate(self, z):
        """Images for the student's steps: the generator is not updated there, so no graph."""
        with self.precision.autocast():
            return distributed.unwrap(self.generator)(z)


class Method:
    """One way of training the student from the teacher. Subclasses set ``name`` (the
    ``--method`` value; also its row in the results table unless ``row_label`` says
    otherwise) and write ``play_round``; the rest has defaults that fit a method with a
    generator."""

    name = ""
    summary = ""             # one line for --help
    note = ""                # disclosed under every results table that shows this method's row
    uses_generator = True  # False: the generator never plays, so it is neither saved nor drawn
    trains_generator = True  # False: no generator step, so no generator objective
    captures_in_cuda_graph = False  # True: every round is the same GPU work (--cuda_graph may replay it)

    @classmethod
    def suffix(cls):
        """What its file and log names carry after the reference's names: a baseline never
        overwrites the DFAD run's files."""
        return f"-{cls.name}"

    @classmethod
    def row_label(cls, args):
        return cls.name

    @staticmethod
    def add_args(group, datasets):
        """The method's own flags (default None where they depend on the data set)."""

    @staticmethod
    def defaults(dataset):
        """Defaults this method gives to flags left unset (``None``) on the command line."""
        return {}

    def __init__(self, args=None, experiment=None, batch_size=None):
        """Built by the loop from the run's arguments, its Experiment and this process's
        batch size; a method without state of its own needs none of them."""

    def play_round(self, p, batch_size):
        """One round with the players ``p`` (``game.Players``); returns the last student
        loss and the generator's loss (detached)."""
        raise NotImplementedError

    def probe_images(self, samples):
        """The images the end-of-epoch diagnostics look at: by default this epoch's
        fixed-noise samples of the generator."""
        return samples

    def state_dict(self):
        """What --resume needs of the method's own state (``-last.pt`` key ``method``);
        None for a method that keeps none."""
        return

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s value (only called with one that is not None)."""
