"""The paper's "random generator" baseline: the generator keeps its random initialisation
and never moves; the student imitates the teacher (same L1 as DFAD) on its samples."""
import torch

from ..game import STUDENT_STEPS, Method, batch_statistics_only
from .dfad import student_step


class RandomGenerator(Method):
    name = "random"
    summary = "the generator stays at its random initialisation"
    trains_generator = False

    def __init__(self, args, experiment, batch_size):
        # Its BatchNorm layers stop tracking running statistics: the generator's state_dict
        # stays bit-identical, while its samples are normalised with batch statistics in
        # the game, as DFAD's generator draws them. Its running statistics stay the initial
        # ones, so its images are drawn in train mode wherever they are shown or scored
        # (game.draw_as_trained), never in eval mode.
        batch_statistics_only(experiment.generator)

    def play_round(self, p, batch_size):
        for _ in range(STUDENT_STEPS):
            loss_S = student_step(p, p.generate(p.noise(batch_size)))
        return loss_S, torch.zeros((), device=loss_S.device)
