"""``--student_ema``: the student that is evaluated, checkpointed and reported is a moving
average of the weights of the student that plays the game.

The student of the game swings from epoch to epoch (the generator keeps moving the images
it learns on); an average of its recent weights swings less. The raw student keeps
playing, so the game itself is the one it would be without the average.
"""
import copy

import torch

RECOMMENDED_DECAY = 0.999  # a bare --student_ema: about the last 1,000 student steps


class StudentEMA:
    """An exponential moving average of ``student``'s weights, updated after every student
    step (``update``, the players' ``after_student_step``); ``model`` is the averaged
    student, a copy of ``student`` with the same state_dict keys.

    After k steps it is the average of the student's states after each step, theta_i,
    weighted by decay^(k - i) and normalised over the k steps taken::

        ema_k = sum_i decay^(k - i) theta_i / sum_i decay^(k - i)        (i = 1 .. k)

    that is, the usual recursion ema_k = decay ema_(k-1) + (1 - decay) theta_k with Adam's
    bias correction: the initial, random weights weigh nothing (without it they would
    still weigh 0.999^250 = 78% after a first epoch of 50 rounds), so the average is the
    student of the first epoch already.

    BatchNorm: the running means and variances are averaged like the weights (same decay,
    same steps) and ``num_batches_tracked``, an integer, is copied. Running statistics are
    themselves averages of the batches' statistics under the raw student's recent weights,
    so averaging them over the same window as the weights gives the averaged weights
    statistics of the same time scale at no cost (as torch's AveragedModel with
    use_buffers=True and timm's ModelEma do). Copying the raw student's would pair weights
    averaged over about 1/(1 - decay) steps with statistics of its last ten or so batches;
    recomputing them for the averaged weights would cost forward passes on generated
    images at every evaluation and draw noise from the game's random stream. The average
    of statistics is not exactly the statistics of the averaged weights (the network is
    not linear): the standard approximation, close when the window's weights are close.
    """

    def __init__(self, student, decay):
        if not 0 < decay < 1:
            raise ValueError(f"the decay of a moving average is in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(student).eval().requires_grad_(False)
        # The tensors themselves: optimizers and load_state_dict update them in place.
        raw, own = student.state_dict(), self.model.state_dict()
        averaged = [k for k, v in raw.items() if v.is_floating_point()]
        self.averaged = ([own[k] for k in averaged], [raw[k] for k in averaged])
        self.copied = [(own[k], raw[k]) for k in raw if k not in averaged]

    @torch.no_grad()
    def update(self):
        """Take the student's state after one more step into the average."""
        self.steps += 1
        weight = (1 - self.decay) / (1 - self.decay ** self.steps)  # 1 at the first step: a copy
        torch._foreach_lerp_(*self.averaged, weight)
        for own, raw in self.copied:
            own.copy_(raw)

    def state_dict(self):
        return {"model": self.model.state_dict(), "steps": self.steps}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.steps = int(state["steps"])
