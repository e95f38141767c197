"""The DFAD min-max game: one round is five student steps, then one generator step.

The value of the game is the L1 discrepancy between student and teacher logits on
generated images. The student minimises it, the generator maximises it ("hard
samples"); the teacher is frozen. This module holds only the game: the training loop
around it (epochs, evaluation, checkpoints) is in ``dfad.py``.
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime import distributed
from ..runtime.precision import Precision

STUDENT_STEPS = 5


def discrepancy(s_logit, t_logit):
    """Mean absolute error between student and teacher logits (the game's value).

    Half-precision logits (mixed precision) are compared in float32; fp32 and float64
    ones as they are."""
    return F.l1_loss(_at_least_fp32(s_logit), _at_least_fp32(t_logit))


def _at_least_fp32(x):
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def adversarial_loss_l1(s_logit, t_logit):
    """Classification: the generator maximises the L1 discrepancy."""
    return -discrepancy(s_logit, t_logit)


def adversarial_loss_log_l1(s_logit, t_logit):
    """Segmentation: -log(L1 + 1) keeps the generator's gradient bounded on dense outputs."""
    return -torch.log(discrepancy(s_logit, t_logit) + 1)


def sample_noise(batch_size, nz, device):
    return torch.randn(batch_size, nz, 1, 1, device=device)


def freeze(model):
    """Eval mode and no weight gradients: the teacher is never trained."""
    model.eval()
    model.requires_grad_(False)
    return model


def generate(generator, z, precision):
    """Images for the student's steps: the generator is not updated there, so no graph."""
    with torch.no_grad(), precision.autocast():
        return distributed.unwrap(generator)(z)


def imitation_step(teacher, student, optimizer_S, images, precision, loss_fn=None):
    """Move the student towards the teacher on one batch of images (by default with the
    game's L1 discrepancy; the baselines of methods.py pass their own loss)."""
    with torch.no_grad(), precision.autocast():
        t_logit = teacher(images)
    optimizer_S.zero_grad(set_to_none=True)
    with precision.autocast():
        loss_S = (loss_fn or discrepancy)(student(images), t_logit)
    precision.step(loss_S, optimizer_S, "student")
    return loss_S.detach()


def student_step(teacher, student, generator, optimizer_S, z, precision):
    """Move the student towards the teacher on one generated batch."""
    return imitation_step(teacher, student, optimizer_S, generate(generator, z, precision), precision)


def generator_step(teacher, student, generator, optimizer_G, z, adversarial_loss, precision):
    """Move the generator towards samples where student and teacher disagree."""
    # Gradients flow through the student to the images, but nobody reads the
    # student's weight gradients here, so they are not computed (nor synchronised).
    student = distributed.unwrap(student)
    student.requires_grad_(False)
    try:
        optimizer_G.zero_grad(set_to_none=True)
        with precision.autocast():
            fake = generator(z)
            loss_G = adversarial_loss(student(fake), teacher(fake))
        precision.step(loss_G, optimizer_G, "generator")
    finally:
        student.requires_grad_(True)
    return loss_G.detach()


@dataclass
class Players:
    """The three networks as the round calls them, and the two optimizers.

    ``student`` and ``generator`` may be wrapped (DistributedDataParallel) or compiled;
    their raw modules, whose state_dicts carry the reference keys, are kept by the caller.
    """

    teacher: nn.Module
    student: nn.Module
    generator: nn.Module
    optimizer_S: torch.optim.Optimizer
    optimizer_G: torch.optim.Optimizer
    adversarial_loss: Callable = adversarial_loss_l1
    precision: Precision = None
    method: object = None   # a baseline's policy (methods.py); None: the DFAD game itself

    def __post_init__(self):
        self.precision = self.precision or Precision()


def play_round(players, batch_size, nz, device):
    """One outer iteration of DFAD; returns the last student loss and the generator loss."""
    p = players
    if p.method is not None:  # a baseline (random, dafl, kd): its own round, same loop
        return p.method.play_round(p, batch_size, nz, device)
    # (1) student: minimise the discrepancy, STUDENT_STEPS times, each on fresh noise
    for _ in range(STUDENT_STEPS):
        loss_S = student_step(p.teacher, p.student, p.generator, p.optimizer_S,
                              sample_noise(batch_size, nz, device), p.precision)
    # (2) generator: maximise it, once
    loss_G = generator_step(p.teacher, p.student, p.generator, p.optimizer_G,
                            sample_noise(batch_size, nz, device), p.adversarial_loss, p.precision)
    return loss_S, loss_G
