"""What the loop checks after each epoch besides the test score, without labels.

- Collapse diagnostics: which classes the teacher sees in the generator's fixed-noise
  samples (per pixel for segmentation): the normalised entropy of that histogram and the
  fraction of classes predicted, and a warning when the generator collapses.
- The pool of probe images the label-free choice (``labelfree.py``) scores the students
  on: the fixed-noise samples of the last ``POOL_SNAPSHOTS`` epochs' generators (kd: one
  fixed probe of the transfer set), and each epoch's argmax agreement of the student with
  the teacher on the pool of that moment.
- The agreement rule: the epoch of highest agreement so far, recorded beside the
  label-free choice so that runs show what each rule picks (it scores each epoch on the
  pool of that moment, in a score that saturates and ties: ``labelfree.py`` says why the
  choice itself is made otherwise).
"""
import math

import torch

from .game import draw_as_trained, sample_noise

POOL_SNAPSHOTS = 16            # the pool: probe images of the last 16 epochs' generators
LARGE_IMAGE = 3 * 64 * 64      # above this many values an image, 16 probe images a snapshot keep it cheap
SAMPLES = 64                   # fixed-noise samples a grid (and a snapshot)


class Monitor:
    """The fixed noise of the sample grids, the label-free pool, the agreement rule's
    choice and the per-epoch diagnostics; its ``state_dict`` entries are top-level keys of
    ``-last.pt``."""

    def __init__(self, nz, device):
        self.fixed_z = sample_noise(SAMPLES, nz, device)  # the same every epoch, so grids compare
        self.pool = []
        self.agreement_choice = {"epoch": 0, "agreement": -math.inf, "test": None}
        self.diagnostics = []   # per epoch: entropy, fraction, classes, collapsed, agreement, epoch

    def samples(self, generator):
        """This epoch's generator on the fixed noise, drawn as the student sees its images
        (``game.draw_as_trained``): the sample grid, the diagnostics and the pool all read
        these."""
        return draw_as_trained(generator, self.fixed_z)

    @torch.no_grad()
    def end_of_epoch(self, teacher, student, probe, fixed_probe, epoch, score):
        """Diagnose ``probe`` (this epoch's probe images), update the pool and note the
        student's epoch as the agreement rule's choice if it agrees with the teacher at least
        as well as the one noted (a tie: the later one, trained longer). A ``fixed_probe``
        (kd's, the same every epoch) is the whole pool: repeating it would only weigh the
        same images more. Returns this epoch's diagnostics."""
        if probe[0].numel() > LARGE_IMAGE:
            probe = probe[:16]
        stats = class_histogram_stats(teacher(probe))
        self.pool = [probe] if fixed_probe else (self.pool + [probe])[-POOL_SNAPSHOTS:]
        training = student.training
        student.eval()
        stats["agreement"] = agreement(student, teacher, torch.cat(self.pool))
        student.train(training)
        stats["epoch"] = epoch
        self.diagnostics.append(stats)
        if stats["agreement"] >= self.agreement_choice["agreement"]:
            self.agreement_choice = {"epoch": epoch, "agreement": stats["agreement"], "test": score}
        return stats

    def collapse_warning(self):
        """A warning line at the onset of a collapse (None otherwise)."""
        now = self.diagnostics[-1]
        before = self.diagnostics[-2]["collapsed"] if len(self.diagnostics) > 1 else False
        if not now["collapsed"] or before:
            return None
        classes = now["classes"]
        return (f"Warning: mode collapse at epoch {now['epoch']}: the teacher predicts {classes} "
                f"class{'es' if classes != 1 else ''} ({now['fraction']:.0%}) on the generated samples, "
                f"class entropy {now['entropy']:.2f} of its maximum.")

    def state_dict(self):
        return {"fixed_z": self.fixed_z.cpu(), "pool": [x.cpu() for x in self.pool],
                "agreement_choice": self.agreement_choice, "diagnostics": self.diagnostics}

    def load_state_dict(self, state):
        device = self.fixed_z.device
        self.fixed_z = state["fixed_z"].to(device)
        self.pool = [x.to(device) for x in state["pool"]]
        self.agreement_choice = dict(state["agreement_choice"])
        self.diagnostics = list(state["diagnostics"])


@torch.no_grad()
def class_histogram_stats(t_logit):
    """Teacher's predicted classes (per image, or per pixel for dense outputs):
    normalised entropy of their histogram, fraction of classes predicted, and whether that
    counts as a collapse (see ``collapsed``)."""
    classes = t_logit.shape[1]
    pred = t_logit.argmax(dim=1).flatten()
    hist = torch.bincount(pred, minlength=classes).double()
    prob = hist / hist.sum()
    nz = prob[prob > 0]
    entropy = max(0.0, float(-(nz * nz.log()).sum() / math.log(classes))) if classes > 1 else 0.0  # no -0.0
    predicted = int((hist > 0).sum())
    return {"entropy": entropy, "fraction": predicted / classes, "classes": predicted,
            "collapsed": collapsed(predicted, classes, pred.numel(), entropy)}


def collapsed(predicted, classes, samples, entropy):
    """Collapse rule: fewer than half the classes that uniform predictions would hit on
    ``samples`` draws (C * (1 - (1 - 1/C)^N)), or a normalised entropy below 0.5."""
    expected = classes * (1 - (1 - 1 / classes) ** samples)
    return predicted < 0.5 * expected or entropy < 0.5


@torch.no_grad()
def agreement(student, teacher, images, batch=256):
    """Fraction of images (pixels) where student and teacher predict the same class."""
    same, total = 0, 0
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        s, t = student(x).argmax(dim=1), teacher(x).argmax(dim=1)
        same += int((s == t).sum())
        total += s.numel()
    return same / max(total, 1)
