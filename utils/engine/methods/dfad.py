"""DFAD (Fang et al., 2019): the paper's adversarial game, step for step the reference's.

One round: (1) the student imitates the teacher on generated images, five times, each
on fresh noise; (2) the generator moves towards images on which the two disagree most.
Both play on the L1 distance between student and teacher logits.
"""
import torch

from ..game import STUDENT_STEPS, Method, weights_frozen


def student_step(p, images):
    """One optimizer step of the student towards the teacher on ``images`` (every method's
    student step); with ``--replay``, on past generated images as well."""
    if p.replay is not None:
        images = p.replay.mix(images)
    return imitate(p, images)


def imitate(p, images, loss_fn=None):
    """The optimizer step itself: the student moves towards the teacher's logits on
    ``images``, by ``loss_fn`` (default: the run's student loss, --student_loss)."""
    with torch.no_grad(), p.precision.autocast():
        t_logit = p.teacher(images)
    p.optimizer_S.zero_grad(set_to_none=True)
    with p.precision.autocast():
        loss_S = (loss_fn or p.student_loss)(p.student(images), t_logit)
    p.precision.scale(loss_S, "student").backward()
    p.precision.step(p.optimizer_S, "student")
    p.after_student_step()
    return loss_S.detach()


def generator_step(p, z):
    """One optimizer step of the generator towards its objective (objective.py; DFAD's:
    images where student and teacher disagree, -L1, segmentation -log(L1 + 1))."""
    p.optimizer_G.zero_grad(set_to_none=True)
    with weights_frozen(p.student) as student, p.precision.autocast():
        loss_G = p.objective(p.generator(z), student, p.teacher)
    p.precision.scale(loss_G, "generator").backward()
    p.precision.step(p.optimizer_G, "generator")
    return loss_G.detach()


class DFAD(Method):
    name = "dfad"
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
