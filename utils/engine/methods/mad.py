"""MAD: Momentum Adversarial Distillation (Do et al., NeurIPS 2022, "Momentum Adversarial
Distillation: Handling Large Distribution Shifts in Data-Free Knowledge Distillation",
arXiv 2209.10359).

The paper's rule (abstract, and the method figure, Fig. 1): besides the generator G that
plays the adversarial game, keep an exponential moving average G~ of its weights, which
is not optimised; the student learns on the samples of both, G(z) and G~(z') with z, z'
independent noise. G~ is an ensemble of G's recent versions and moves less than G from
one update to the next, so its samples remind the student of what it learnt before, and
keep it from following each jump of G (its protection against forgetting).

How it is played here, and the choices we had to make (no official code is public; the
stored copies of the paper we could read hold its abstract, introduction and figure
captions only, so the defaults below are to be checked against its method section):

- G~ starts as a copy of G and, after every generator step, moves towards it:
  w~ <- m * w~ + (1 - m) * w for each weight (``--mad_momentum`` m, default 0.95: the best
  value of the paper's ablation of the momentum, Fig. 6, as a secondary summary reports it).
- Its BatchNorm layers: their affine weights are averaged like every other weight; their
  running statistics are copied from G at each update (they are never used: see below).
- Its samples are drawn as the student sees G's: in train mode, each batch normalised by
  its own statistics, without gradients, and without tracking running statistics, so that
  drawing them leaves G~ unchanged (``track_running_stats`` off, as RandomGenerator does).
- A student step learns on B images of G and B of G~ (B = ``--batch_size``), one forward
  pass through student and teacher on the 2B images (the student's BatchNorm normalises
  them as one batch, and its running statistics move once a step, as in DFAD); the loss is
  L1(G's part) + ``--mad_weight`` x L1(G~'s part), each an L1 mean as DFAD's (the paper
  weights its two terms; 1 and 1 here). With ``--replay``, the replayed images join G's
  part. MAD's extra cost is this second batch (the same summary reports about 40% more
  time than the paper's adversarial baseline).
- DFAD's game otherwise: its unconditional generator (MAD uses a class-conditional one,
  with class embeddings, on large data sets), its L1 on logits for the student, its
  adversarial loss for the generator (-L1; segmentation -log(L1 + 1)), its five student
  steps and one generator step a round.
"""
import copy

import torch

from ...runtime.cli import momentum_value, non_negative_float
from ..game import STUDENT_STEPS, Method, batch_statistics_only
from .dfad import generator_step, imitate

PAPER_MOMENTUM = 0.95


def moving_average_copy(generator):
    """G~ at the start: G's weights, frozen, in train mode, not tracking BN statistics."""
    ema = copy.deepcopy(generator)
    ema.requires_grad_(False)
    ema.train()
    batch_statistics_only(ema)
    return ema


def two_part_loss(n_first, weight, part_loss):
    """``part_loss`` (the student's: L1) on the first ``n_first`` images (G's, and replayed
    ones) + weight x ``part_loss`` on the rest (G~'s)."""
    def loss(s_logit, t_logit):
        return (part_loss(s_logit[:n_first], t_logit[:n_first])
                + weight * part_loss(s_logit[n_first:], t_logit[n_first:]))
    return loss


class MAD(Method):
    name = "mad"
    summary = ("Do et al., NeurIPS 2022: DFAD's game, and the student also learns on the samples of a moving "
               "average of the generator (--mad_momentum)")

    @staticmethod
    def add_args(group, datasets):
        group.add_argument("--mad_momentum", type=momentum_value, default=PAPER_MOMENTUM,
                           help="--method mad: the moving average's momentum m, w~ <- m w~ + (1 - m) w after "
                                "every generator step")
        group.add_argument("--mad_weight", type=non_negative_float, default=1.0,
                           help="--method mad: weight of the loss on the moving average's samples (that on "
                                "the generator's is 1)")

    def __init__(self, args, experiment, batch_size):
        self.momentum, self.weight = args.mad_momentum, args.mad_weight
        self.generator = experiment.generator  # the raw module: its weights are those the game moves
        self.ema = moving_average_copy(self.generator)

    @torch.no_grad()
    def ema_samples(self, p, batch_size):
        with p.precision.autocast():
            return self.ema(p.noise(batch_size))

    @torch.no_grad()
    def update_ema(self):
        for averaged, current in zip(self.ema.parameters(), self.generator.parameters()):
            averaged.mul_(self.momentum).add_(current, alpha=1 - self.momentum)
        for averaged, current in zip(self.ema.buffers(), self.generator.buffers()):
            averaged.copy_(current)

    def student_step(self, p, batch_size):
        fresh = p.generate(p.noise(batch_size))
        remembered = self.ema_samples(p, batch_size)
        if p.replay is not None:
            fresh = p.replay.mix(fresh)
        return imitate(p, torch.cat([fresh, remembered]), two_part_loss(len(fresh), self.weight, p.student_loss))

    def play_round(self, p, batch_size):
        # (1) student: on fresh samples of G and of its moving average, STUDENT_STEPS times
        for _ in range(STUDENT_STEPS):
            loss_S = self.student_step(p, batch_size)
        # (2) generator: DFAD's step, then the moving average follows it
        loss_G = generator_step(p, p.noise(batch_size))
        self.update_ema()
        return loss_S, loss_G

    def state_dict(self):
        return {"ema_generator": self.ema.state_dict()}

    def load_state_dict(self, state):
        self.ema.load_state_dict(state["ema_generator"])
