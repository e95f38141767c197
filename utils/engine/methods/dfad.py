"""DFAD (Fang et al., 2019): the paper's adversarial game, step for step the reference's.

One round: (1) the student imitates the teacher on generated images, five times, each
on fresh noise; (2) the generator moves towards images on which the two disagree most.
Both play on the L1 distance between student and teacher logits.
"""
import torch

from ..game import STUDENT_STEPS, Method, discrepancy, weights_frozen


def student_step(p, images, loss_fn=discrepancy):
    """One optimizer step of the student towards the teacher on ``images`` (every method's
    student step: the baselines pass their own loss); with ``--replay``, on past generated
    images as well."""
    if p.replay is not None:
        images = p.replay.mix(images)
    return imitate(p, images, loss_fn)


def imitate(p, images, loss_fn=discrepancy):
    """The optimizer step itself: the student moves towards the teacher's logits on ``images``."""
    with torch.no_grad(), p.precision.autocast():
        t_logit = p.teacher(images)
    p.optimizer_S.zero_grad(set_to_none=True)
    with p.precision.autocast():
        loss_S = loss_fn(p.student(images), t_logit)
    p.precision.scale(loss_S, "student").backward()
    p.precision.step(p.optimizer_S, "student")
    p.after_student_step()
    return loss_S.detach()


def generator_step(p, z):
    """One optimizer step of the generator towards images where student and teacher disagree."""
    p.optimizer_G.zero_grad(set_to_none=True)
    with weights_frozen(p.student) as student, p.precision.autocast():
        fake = p.generator(z)
        loss_G = p.adversarial_loss(student(fake), p.teacher(fake))  # -L1 (segmentation: -log(L1 + 1))
    p.precision.scale(loss_G, "generator").backward()
    p.precision.step(p.optimizer_G, "generator")
    return loss_G.detach()


class DFAD(Method):
    name, label = "dfad", "dfad"
    summary = "the adversarial game of the paper (default)"
    captures_in_cuda_graph = True  # noise, both players' steps: all on the GPU, same shapes every round

    @classmethod
    def suffix(cls):
        return ""  # the reference's own file names

    def play_round(self, p, batch_size):
        # (1) student: minimise the discrepancy, STUDENT_STEPS times, each on fresh noise
        for _ in range(STUDENT_STEPS):
            loss_S = student_step(p, p.generate(p.noise(batch_size)))
        # (2) generator: maximise it, once
        loss_G = generator_step(p, p.noise(batch_size))
        return loss_S, loss_G
