"""What the loop checks besides the test score, without labels.

- Non-finite numbers caught where they start: a diverging player of the game (every
  round), a diverging teacher in training, a broken teacher file (before the game). A
  diverged model is never saved (``utils.runtime.checkpoint.save_state_dict``), and a
  teacher that is already broken is named as the cause before the game starts, instead
  of the student being blamed for diverging against it.

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

from ..runtime import checkpoint, distributed
from ..runtime.errors import UserError
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


def check_round(epoch, i, loss_S, loss_G, stop):
    """The one collective of a round: all processes learn together whether any player
    diverged anywhere (then the game stops with an error: nothing of the epoch is saved)
    or any process was asked to stop (then all stop at the same round; returns whether to
    stop now, see ``GracefulStop.follow``). It costs one
    all-reduce of two numbers (tens of microseconds) and a host sync (the losses are
    read), nothing in a world of one."""
    finite = bool(torch.isfinite(torch.stack([loss_S.float(), loss_G.float()])).all())
    all_finite, none_stopping = distributed.agree(finite, not stop.requested)
    stopping = stop.follow(none_stopping)
    if all_finite:
        return stopping
    player, value = ("student", loss_S) if not torch.isfinite(loss_S) else ("generator", loss_G)
    raise UserError(
        f"The {player} diverged: its loss became {value.item()} at epoch {epoch}, iteration {i}"
        f"{_where()}. Nothing was saved from this epoch, so the last good checkpoints are intact. "
        f"Resume from the last good epoch with --resume and a lower --lr_S / --lr_G (changed "
        f"learning rates take effect on resume), or start again with lower ones.")


def _where():
    return f" (process {distributed.rank()})" if distributed.world_size() > 1 else ""


def check_teacher(teacher, loader, device, path):
    """Fail if ``teacher`` has non-finite weights, or on the first test batch non-finite
    outputs or outputs that do not depend on the input."""
    bad = checkpoint.non_finite_keys(teacher.state_dict())
    if bad:
        raise UserError(f"The teacher checkpoint '{path}' holds non-finite weights (nan or inf in "
                        f"{', '.join(bad[:3])}): it was saved from a diverged training run, so no "
                        f"student can learn from it. Retrain it with a lower --lr, or pass another --ckpt.")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the game's noise stays as it was
        images = next(iter(loader))[0].to(device)
        outputs = teacher(images)
    if not all(torch.isfinite(t).all() for t in _tensors(outputs)):
        raise UserError(f"The teacher checkpoint '{path}' gives non-finite outputs (nan or inf) on "
                        f"the first test batch, though its weights are finite: it is broken (e.g. "
                        f"saved from a diverging run, or BatchNorm statistics overflowed). Retrain "
                        f"it with a lower --lr, or pass another --ckpt.")
    if ignores_input(outputs, len(images)):
        raise UserError(f"The teacher checkpoint '{path}' gives the same outputs for all {len(images)} "
                        f"images of the first test batch: they do not depend on its input (all-zero or "
                        f"dead weights, say), so it predicts one class for everything and no student can "
                        f"learn from it (the game would go on and blame the generator for the collapse). "
                        f"Retrain it, or pass another --ckpt.")


def ignores_input(outputs, batch, tolerance=1e-6):
    """Whether every image of a batch of ``batch`` got the same outputs, to within
    ``tolerance`` of their largest magnitude (a trained or freshly initialised network's
    differ by far more). One image proves nothing."""
    if batch < 2:
        return False
    for t in _tensors(outputs):
        t = t.float()
        if (t - t[:1]).abs().max() > tolerance * t.abs().max():
            return False
    return True


def _tensors(outputs):
    if torch.is_tensor(outputs):
        return [outputs]
    values = outputs.values() if isinstance(outputs, dict) else outputs
    return [t for t in values if torch.is_tensor(t)]


def check_teacher_training(model, loss, epoch):
    """Stop a teacher run whose loss or weights became non-finite, before it evaluates or
    saves anything of that epoch (every process stops together)."""
    finite = torch.isfinite(torch.tensor(float(loss))).item() and not checkpoint.non_finite_keys(model.state_dict())
    (all_finite,) = distributed.agree(finite)
    if all_finite:
        return
    raise UserError(
        f"The teacher diverged in epoch {epoch}{_where()}: its loss or weights became non-finite "
        f"(last loss {loss}). Nothing was saved from this epoch, so the best teacher and its "
        f"-last.pt checkpoint still hold the last good epoch. Resume with --resume and a lower "
        f"--lr (a changed --lr takes effect on resume), or start again with a lower --lr.")
