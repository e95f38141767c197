"""The label-free choice of a student: of the students of the last ``K`` epochs (the
candidates), the one whose logits are closest to the teacher's, in mean L1, on one fixed
pool of images, scored once at the end of the run and saved as ``-labelfree.pt``.

Why this rule, without a label:

- One pool for every candidate. The pool is the monitor's at the end of the run: the
  fixed-noise samples of the last ``diagnostics.POOL_SNAPSHOTS`` epochs' generators, drawn
  as the student saw them (kd: its fixed probe of the transfer set). Scoring each epoch on
  the pool of that moment, as a running rule must, compares students on different images:
  a generator that has just found the student's weak spots makes that epoch look worse.
- A continuous score. The mean L1 distance between student and teacher logits is the
  quantity the student is trained to shrink (the game's value), read on images of many
  generators at once; argmax agreement saturates near 1 on easy pools and ties.
- Only what a data-free user has: the teacher, the generators and the students.

Its limits: the pool is what the run's own generators drew, so a student is judged on the
distribution it was trained on, not on the real test images; a generator pool that misses
a part of the real data (a collapsed generator) cannot reward the student that handles it.
Logit distance on generated images correlates with test accuracy but is not it; a student
with slightly larger logit errors can classify better. Candidates are only the last ``K``
epochs' students, and later students have seen more of the pool's generators in training.
"""
import copy
import os
import re

import torch

from ..runtime import checkpoint
from .game import at_least_fp32

CANDIDATES = 16  # default --labelfree_candidates: the students of the last 16 epochs
CHUNK = 256      # pool images a forward pass
FILE = re.compile(r"^epoch(\d+)\.pt$")


class Candidates:
    """The students of the last ``keep`` epochs, one file each in ``folder`` (beside
    ``-last.pt``, which lists them, so that a resumed run holds the same ones)."""

    def __init__(self, folder, keep=CANDIDATES):
        self.folder, self.keep = folder, keep
        self.epochs = []

    def path(self, epoch):
        return os.path.join(self.folder, f"epoch{epoch:04d}.pt")

    def add(self, student, epoch):
        """Keep ``student`` as epoch ``epoch``'s candidate (the oldest one leaves the list;
        its file goes once ``-last.pt`` no longer lists it: ``prune``)."""
        checkpoint.save_state_dict(student, self.path(epoch))
        self.epochs = ([e for e in self.epochs if e != epoch] + [epoch])[-self.keep:]

    def prune(self):
        """Remove the candidate files ``-last.pt`` no longer lists (call after saving it)."""
        if not os.path.isdir(self.folder):
            return
        for name in os.listdir(self.folder):
            match = FILE.match(name)
            if match and int(match.group(1)) not in self.epochs:
                os.remove(os.path.join(self.folder, name))

    def state_dict(self):
        return {"epochs": list(self.epochs)}

    def load_state_dict(self, state):
        """The candidates a saved run listed, as many as ``keep`` allows now; a file that
        has gone is named, and that epoch is no candidate any more."""
        epochs = [int(e) for e in state["epochs"]][-self.keep:]
        missing = [e for e in epochs if not os.path.isfile(self.path(e))]
        if missing:
            print(f"Warning: the label-free candidates of epochs {', '.join(map(str, missing))} are missing "
                  f"from {self.folder}; the label-free choice is made without them.", flush=True)
        self.epochs = [e for e in epochs if e not in missing]

    @torch.no_grad()
    def choose(self, teacher, student, pool, test_scores, path):
        """Score every candidate on ``pool`` (a list of image batches) by its mean L1
        distance to the teacher's logits, save the closest (a tie: the later one, trained
        longer) at ``path`` and return what was chosen and every candidate's score; None
        without candidates or pool. ``student`` gives the network the candidates load
        into; ``test_scores[e - 1]`` is epoch e's test score, for the record only."""
        if not self.epochs or not pool:
            return None
        images = [x for batch in pool for x in batch.split(CHUNK)]
        targets = [teacher(x) for x in images]
        model = copy.deepcopy(student).eval()
        scored = []
        for epoch in self.epochs:
            model.load_state_dict(checkpoint.safe_load(self.path(epoch), "label-free candidate"))
            scored.append({"epoch": epoch, "l1": mean_l1(model, images, targets), "test": test_scores[epoch - 1]})
        chosen = min(reversed(scored), key=lambda c: c["l1"])
        model.load_state_dict(checkpoint.safe_load(self.path(chosen["epoch"]), "label-free candidate"))
        checkpoint.save_state_dict(model, path)
        return {**chosen, "candidates": scored, "pool_images": sum(len(x) for x in images)}


def mean_l1(model, images, targets):
    """Mean absolute difference between ``model``'s logits on each batch of ``images`` and
    the teacher's ``targets``, over every logit (and pixel) of the pool."""
    total, count = 0.0, 0
    for x, t in zip(images, targets):
        total += float((at_least_fp32(model(x)) - at_least_fp32(t)).abs().sum(dtype=torch.float64))
        count += t.numel()
    return total / count
