"""The generator's objective: a weighted sum of named terms, all read from one forward pass
of the teacher (and of the student, where a term needs it) on the generated batch.

DFAD's objective is ``adv`` alone; the field's other generator objectives are other
weightings of the same terms (DAFL: oh + balance + act; DFQ: adv with the KL + bn + oh +
balance). Each term is a scalar the generator *minimises*, defined as the field's code
defines it (shared/datafree-objective/README.md):

- ``adv``: minus the student's discrepancy from the teacher (DFAD's -L1 on logits; the
  experiment's own for segmentation, -log(L1 + 1); ``--adv_loss kl``: -KL(t || s), T = 1);
- ``bn``: over the teacher's BatchNorm layers, the distance of the generated batch's
  statistics from the running ones: ||running_var - var||_2 + ||running_mean - mean||_2,
  biased variance over (N, H, W), summed over layers (DeepInversion, DFQ);
- ``oh``: cross-entropy of the teacher's logits against their own argmax (DAFL);
- ``balance``: sum_c p_c log p_c of the batch-mean softmax, minus its entropy (DAFL);
- ``act``: minus the mean absolute penultimate feature of the teacher (DAFL).

A new term is one function of :class:`Outputs` and one line of ``TERMS``, saying what it
needs (the student's logits, the teacher's features, the teacher's BatchNorm inputs).
"""
import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import distributed
from ..runtime.errors import UserError
from .game import adversarial_loss_l1, at_least_fp32, kl_divergence


@dataclass
class Outputs:
    """What the terms read: the networks' outputs on one generated batch."""

    images: torch.Tensor                          # the generated batch
    t_logit: torch.Tensor = None
    s_logit: torch.Tensor | None = None        # when a term needs the student
    t_feature: torch.Tensor | None = None      # the teacher's penultimate features, when needed
    bn_distances: list = field(default_factory=list)  # one per teacher BatchNorm, in modules() order
    adversarial: Callable = adversarial_loss_l1   # adv's loss of (s_logit, t_logit)


def adv(out):
    return out.adversarial(out.s_logit, out.t_logit)


def bn(out):
    return sum(out.bn_distances)


def oh(out):
    t_logit = at_least_fp32(out.t_logit)
    return F.cross_entropy(t_logit, t_logit.argmax(dim=1))


def balance(out):
    p = F.softmax(at_least_fp32(out.t_logit), dim=1).mean(dim=0)
    return (p * torch.log(p)).sum()


def act(out):
    return -at_least_fp32(out.t_feature).abs().mean()


def adversarial_kl(s_logit, t_logit):
    """DFQ's and ZSKT's adversarial loss: -KL(softmax(t) || softmax(s)), T = 1."""
    return -kl_divergence(s_logit, t_logit)


@dataclass(frozen=True)
class Term:
    compute: Callable
    needs: frozenset  # of "student", "features", "batchnorm"
    help: str


TERMS = {  # their order is the order of the sum
    "adv": Term(adv, frozenset({"student"}), "the adversarial term: minus the student's discrepancy from the "
                "teacher (--adv_loss), DFAD's whole objective"),
    "bn": Term(bn, frozenset({"batchnorm"}), "the distance of the generated batch's statistics from the "
               "teacher's BatchNorm running statistics, summed over its BatchNorm layers (DeepInversion, DFQ)"),
    "oh": Term(oh, frozenset(), "DAFL's one-hot loss: cross-entropy of the teacher's logits against their "
               "own argmax"),
    "balance": Term(balance, frozenset(), "DAFL's information entropy: sum p log p of the batch-mean softmax "
                    "of the teacher (minimising it spreads the classes)"),
    "act": Term(act, frozenset({"features"}), "DAFL's activation loss: minus the mean absolute penultimate "
                "feature of the teacher"),
}
ADVERSARIAL_LOSSES = {"l1": "the experiment's L1 (-L1; segmentation -log(L1 + 1))",
                      "kl": "-KL(teacher || student), T = 1"}


def weights_of(args):
    """The weight of every term with a weight above 0, in ``TERMS`` order."""
    return {name: getattr(args, name) for name in TERMS if getattr(args, name)}


def returns_features(model):
    try:
        return "out_feature" in inspect.signature(distributed.unwrap(model).forward).parameters
    except (TypeError, ValueError):
        return False


def batchnorm_layers(model):
    return [m for m in distributed.unwrap(model).modules() if isinstance(m, nn.BatchNorm2d)]


class BatchNormInputs:
    """Forward hooks on the teacher's BatchNorm layers, registered only while
    :meth:`recording` is open (the generator's step), each storing how far its input
    batch's statistics are from the layer's running ones."""

    def __init__(self, teacher):
        self.layers = batchnorm_layers(teacher)
        self.distances = {}

    def hook(self, module, inputs, output):
        x = at_least_fp32(inputs[0])
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        self.distances[module] = (torch.linalg.vector_norm(module.running_var - var)
                                  + torch.linalg.vector_norm(module.running_mean - mean))

    @contextlib.contextmanager
    def recording(self):
        self.distances = {}
        handles = [layer.register_forward_hook(self.hook) for layer in self.layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def in_order(self):
        return [self.distances[layer] for layer in self.layers if layer in self.distances]


class GeneratorObjective:
    """The loss of the generator's step: ``sum_k weight_k * term_k`` over the terms of
    ``weights`` (name -> weight above 0)."""

    def __init__(self, weights, adversarial=adversarial_loss_l1, teacher=None):
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise ValueError(f"unknown terms {unknown}; the terms are {list(TERMS)}")
        self.weights = {name: weights[name] for name in TERMS if weights.get(name)}
        self.adversarial = adversarial
        self.needs = frozenset().union(*(TERMS[name].needs for name in self.weights))
        self.batchnorm = BatchNormInputs(teacher) if "batchnorm" in self.needs else None

    def __call__(self, fake, student, teacher):
        out = Outputs(fake, adversarial=self.adversarial)
        if "student" in self.needs:
            out.s_logit = student(fake)
        with self.batchnorm.recording() if self.batchnorm else contextlib.nullcontext():
            if "features" in self.needs:
                out.t_logit, out.t_feature = teacher(fake, out_feature=True)
            else:
                out.t_logit = teacher(fake)
        if self.batchnorm:
            out.bn_distances = self.batchnorm.in_order()
        return sum(weight * TERMS[name].compute(out) for name, weight in self.weights.items())


def dfad_objective(adversarial=adversarial_loss_l1):
    """DFAD's objective: the adversarial term alone (segmentation: ``adversarial_loss_log_l1``)."""
    return GeneratorObjective({"adv": 1.0}, adversarial)


def unmet_needs(weights, teacher):
    """What of ``weights`` the teacher cannot serve, as (term, why) pairs."""
    name = type(distributed.unwrap(teacher)).__name__
    problems = []
    for term, weight in weights.items():
        needs = TERMS[term].needs
        if "batchnorm" in needs and not batchnorm_layers(teacher):
            problems.append((term, f"{name} has no BatchNorm layer whose statistics it could match"))
        if "features" in needs and not returns_features(teacher):
            problems.append((term, f"{name} does not return its features before the classifier (no "
                                   f"out_feature argument; the reference's LeNet-5 and ResNets and the CIFAR "
                                   f"benchmark networks have it)"))
    return problems


def refusal(args, teacher, method_defaults=None):
    """Why the teacher cannot serve the objective ``args`` weigh, in one paragraph; None
    when it can. ``method_defaults``: the weights the method gave (said so)."""
    weights = weights_of(args)
    if not weights:
        return (f"The generator's objective has no term: every weight ({', '.join('--' + t for t in TERMS)}) is 0. "
                f"Give at least one a weight above 0 (DFAD's objective is --adv 1).")
    problems = unmet_needs(weights, teacher)
    if not problems:
        return None
    given_by = {term: f" (--method {args.method} weighs it so)" for term in (method_defaults or {})}
    return ("; ".join(f"--{term} {weights[term]:g}{given_by.get(term, '')}: the generator's {term} term cannot be "
                      f"computed with this teacher: {why}" for term, why in problems)
            + f". Set {' '.join(f'--{term} 0' for term, _ in problems)} or use another teacher.")


def build(args, teacher, adversarial, method_defaults=None):
    """The objective the run's arguments weigh; refused, before any work, when the teacher
    cannot serve one of its terms or it has none."""
    reason = refusal(args, teacher, method_defaults)
    if reason:
        raise UserError(reason)
    loss = adversarial if args.adv_loss == "l1" else adversarial_kl
    return GeneratorObjective(weights_of(args), loss, teacher)
