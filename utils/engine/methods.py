"""The paper's Table 2 baselines as policies of the one round (``game.play_round``).

A policy decides how the generator moves, where the student's inputs come from and
which loss the student learns with; the loop around the round is the same for all.
``dfad`` has no policy object: ``play_round`` runs the reference's game itself, so the
default path does no extra work.

- ``random``: the generator keeps its random initialisation; the student imitates the
  teacher (same L1) on its samples.
- ``dafl``: Chen et al., "Data-Free Learning of Student Networks" (ICCV 2019): the
  generator is trained against the frozen teacher alone (one-hot, activation and
  information-entropy losses); the student learns by KD (KL, T=1) on its images.
- ``kd``: distillation on real images (``--transfer_set``), labels never read.
"""
import inspect
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..runtime.errors import UserError
from ..runtime.workers import Loader
from . import game

METHODS = ("dfad", "random", "dafl", "kd")


def kl_divergence(s_logit, t_logit, temperature=1.0):
    """Hinton's KD loss: T^2 * KL(softmax(t/T) || softmax(s/T)) over dim 1, averaged over
    the batch (and, for segmentation, over pixels)."""
    s = game._at_least_fp32(s_logit) / temperature
    t = game._at_least_fp32(t_logit) / temperature
    q = F.softmax(t, dim=1)
    kl = (q * (F.log_softmax(t, dim=1) - F.log_softmax(s, dim=1))).sum(dim=1)
    return kl.mean() * temperature ** 2


def dafl_losses(t_logit, t_feature):
    """DAFL's three generator losses on one batch of teacher outputs:
    one-hot (cross-entropy of the logits against their own argmax), activation (minus
    the mean absolute feature before the classifier) and information entropy
    (sum p log p of the batch-mean softmax, i.e. minus its entropy, natural log)."""
    t_logit = game._at_least_fp32(t_logit)
    one_hot = F.cross_entropy(t_logit, t_logit.argmax(dim=1))
    activation = -game._at_least_fp32(t_feature).abs().mean()
    p = F.softmax(t_logit, dim=1).mean(dim=0)
    info_entropy = (p * torch.log(p)).sum()
    return one_hot, activation, info_entropy


def _student_step(p, images, loss_fn):
    return game.imitation_step(p.teacher, p.student, p.optimizer_S, images, p.precision, loss_fn)


def _generated(p, batch_size, nz, device):
    return game.generate(p.generator, game.sample_noise(batch_size, nz, device), p.precision)


class RandomGenerator:
    """The generator never moves. Its BatchNorm layers stop tracking running statistics:
    its state_dict stays bit-identical, and its samples are normalised with batch
    statistics in train and eval mode alike, as DFAD's generator draws them (the untrained
    running statistics would show other images than the student sees)."""

    name = "random"

    def __init__(self, generator):
        for m in generator.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.track_running_stats = False

    def play_round(self, p, batch_size, nz, device):
        for _ in range(game.STUDENT_STEPS):
            loss_S = _student_step(p, _generated(p, batch_size, nz, device), game.discrepancy)
        return loss_S, torch.zeros((), device=loss_S.device)


def has_out_feature(model):
    try:
        return "out_feature" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class DAFL:
    """Each round: five student KD steps on fresh generated images, then one generator
    step on DAFL's loss (the teacher alone judges the images: the student plays no part
    in the generator's objective). The official code makes one joint step of both per
    iteration; the round keeps DFAD's shape so that at equal --epoch_itrs only the
    objectives differ."""

    name = "dafl"

    def __init__(self, teacher, oh, ie, a):
        if not has_out_feature(teacher):
            raise UserError(
                f"--method dafl needs the teacher's features before its classifier (DAFL's "
                f"activation loss), which {type(teacher).__name__} does not return (no out_feature "
                f"argument; only the reference LeNet-5 and ResNet-8x networks have it). Use "
                f"--method dfad, random or kd with this teacher.")
        self.oh, self.ie, self.a = oh, ie, a

    def loss(self, t_logit, t_feature):
        one_hot, activation, info_entropy = dafl_losses(t_logit, t_feature)
        return self.oh * one_hot + self.ie * info_entropy + self.a * activation

    def play_round(self, p, batch_size, nz, device):
        for _ in range(game.STUDENT_STEPS):
            loss_S = _student_step(p, _generated(p, batch_size, nz, device), kl_divergence)
        p.optimizer_G.zero_grad(set_to_none=True)
        with p.precision.autocast():
            t_logit, t_feature = p.teacher(p.generator(game.sample_noise(batch_size, nz, device)),
                                           out_feature=True)
            loss_G = self.loss(t_logit, t_feature)
        p.precision.step(loss_G, p.optimizer_G, "generator")
        return loss_S, loss_G.detach()


class ImagesOnly(Dataset):
    """A data set's images without its labels (which are never read, not even collated)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i][0]


class KD:
    """Distillation on real images: five student steps a round on batches of the transfer
    set, no generator step (its loss is reported as 0)."""

    name = "kd"

    def __init__(self, transfer_set, batch_size, seed, loss="l1", temperature=1.0, num_workers=0):
        images = ImagesOnly(transfer_set)
        if len(images) < batch_size:
            raise UserError(f"The transfer set holds {len(images)} images, fewer than one batch "
                            f"({batch_size}); lower --batch_size or pick a larger --transfer_set.")
        # Five batches a round: decoding and resizing them in the main process left a GPU idle.
        self.loader = Loader(images, batch_size=batch_size, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(seed), num_workers=num_workers,
                             persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())
        self.batches = iter(self.loader)
        self.loss = game.discrepancy if loss == "l1" else (lambda s, t: kl_divergence(s, t, temperature))
        self.fixed_images = probe_subset(images, seed)

    def next_images(self, device):
        try:
            x = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            x = next(self.batches)
        return x.to(device, non_blocking=True)

    def play_round(self, p, batch_size, nz, device):
        for _ in range(game.STUDENT_STEPS):
            loss_S = _student_step(p, self.next_images(device), self.loss)
        return loss_S, torch.zeros((), device=loss_S.device)


def build(args, exp, batch_size):
    """The policy of the experiment's method (None for dfad: the reference round); its
    options come from ``args``."""
    method = exp.method
    if method == "dfad":
        return None
    if method == "random":
        return RandomGenerator(exp.generator)
    if method == "dafl":
        return DAFL(exp.teacher, args.dafl_oh, args.dafl_ie, args.dafl_a)
    if method == "kd":
        transfer = exp.transfer_set() if callable(exp.transfer_set) else exp.transfer_set
        if transfer is None:
            raise UserError("--method kd needs real images, and this experiment declares no transfer set.")
        return KD(transfer, batch_size, args.seed, args.kd_loss, args.temperature, args.num_workers)
    raise UserError(f"Unknown --method {method}; choose one of {', '.join(METHODS)}.")


PROBE_IMAGES = 1024      # kd's fixed probe: enough that agreement does not saturate at 1.0
LARGE_IMAGE = 3 * 64 * 64  # above this many values an image, 16 of them are probe enough


def probe_subset(images, seed):
    """A fixed, seeded sample of the transfer set, the same every epoch: kd's probe images."""
    count = PROBE_IMAGES if images[0].numel() <= LARGE_IMAGE else 16
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return torch.stack([images[int(i)] for i in order[:count]])


def label_free_pool(method, pool, images, snapshots):
    """The pool the label-free choice scores students on: the probe images of the last
    ``snapshots`` epochs' generators, or for kd its one fixed probe (repeating it would
    only weigh the same images more)."""
    if isinstance(method, KD):
        return [images]
    return (pool + [images])[-snapshots:]


def probe_images(method, samples):
    """Images the diagnostics and the label-free pool are computed on: this epoch's
    fixed-noise ``samples`` for the generator methods, a fixed batch of the transfer set
    for kd (whose generator plays no part)."""
    if isinstance(method, KD):
        return method.fixed_images.to(samples.device)
    return samples


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
