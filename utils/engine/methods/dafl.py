"""DAFL (Chen et al., "Data-Free Learning of Student Networks", ICCV 2019) as a baseline.

The generator is trained against the frozen teacher alone (one-hot, activation and
information-entropy losses: the student plays no part in its objective); the student
learns by KD (KL, T=1) on its images. Its losses, learning rates, student optimizer and
weight decay are DAFL's official recipe; what is not (``DAFL.note``, printed under every
results table that holds a DAFL row): the round keeps DFAD's shape (five student steps,
then one generator step, each on a batch of its own) and DFAD's budget, so that at equal
``--epoch_itrs`` only the objectives differ, where the official code makes one joint step
of both players on one batch, 200 x 120 of them on MNIST; and the generator is DFAD's,
whose BatchNorm layers keep PyTorch's eps where the official one passes 0.8.
"""
import inspect
import math

import torch
import torch.nn.functional as F

from ...runtime.errors import UserError
from ...runtime.cli import non_negative_float
from ..game import STUDENT_STEPS, Method, at_least_fp32, kl_divergence
from .dfad import student_step

# Official code huawei-noah/Efficient-Computing, DAFL/DAFL-train.py (its defaults are the
# MNIST recipe: Adam for both players with no weight decay, lr_G 0.2, lr_S 2e-3, --oh 1
# --ie 5 --a 0.1, batch 512, latent 100, 200 epochs x 120 joint steps) and DAFL/README.md
# (CIFAR-10: --lr_G 0.02 --lr_S 0.1 (SGD, momentum 0.9, weight decay 5e-4, x0.1 at epochs
# 800 and 1600) --oh 0.05 --ie 5 --act 0.01, batch 1024, latent 1000, 2000 epochs; CIFAR-100:
# the same with --ie 20). The official information-entropy loss takes log10, ours the
# natural log, so its weight here is the official one divided by ln 10.
LN10 = math.log(10)
RECIPES = {
    "mnist": dict(lr_S=2e-3, lr_G=0.2, optimizer_S="adam", weight_decay=0.0, dafl_oh=1.0, dafl_ie=5 / LN10,
                  dafl_a=0.1),
    "cifar10": dict(lr_S=0.1, lr_G=0.02, optimizer_S="sgd", weight_decay=5e-4, dafl_oh=0.05, dafl_ie=5 / LN10,
                    dafl_a=0.01),
    "cifar100": dict(lr_S=0.1, lr_G=0.02, optimizer_S="sgd", weight_decay=5e-4, dafl_oh=0.05, dafl_ie=20 / LN10,
                     dafl_a=0.01),
}
RECIPES["digits"] = RECIPES["mnist"]
NO_RECIPE = dict(dafl_oh=1.0, dafl_ie=5 / LN10, dafl_a=0.1)  # data sets DAFL published nothing for


def dafl_losses(t_logit, t_feature):
    """DAFL's three generator losses on one batch of teacher outputs: one-hot
    (cross-entropy of the logits against their own argmax), activation (minus the mean
    absolute feature before the classifier) and information entropy (sum p log p of the
    batch-mean softmax, i.e. minus its entropy, natural log)."""
    t_logit = at_least_fp32(t_logit)
    one_hot = F.cross_entropy(t_logit, t_logit.argmax(dim=1))
    activation = -at_least_fp32(t_feature).abs().mean()
    p = F.softmax(t_logit, dim=1).mean(dim=0)
    info_entropy = (p * torch.log(p)).sum()
    return one_hot, activation, info_entropy


def has_out_feature(model):
    try:
        return "out_feature" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class DAFL(Method):
    name, label = "dafl", "dafl"
    summary = ("Chen et al., ICCV 2019: the generator is trained against the teacher alone, the student "
               "learns by KD on its images; learning rates, student optimizer, weight decay and loss weights "
               "default to DAFL's official recipe (MNIST: Adam, lr_S 2e-3, lr_G 0.2, no weight decay; CIFAR: "
               "SGD, lr_S 0.1, lr_G 0.02, weight decay 5e-4), run at DFAD's budget and round shape")
    note = ("dafl is DAFL's losses and learning rates at DFAD's budget, not DAFL's official run: a round "
            "is 5 student steps then 1 generator step, each on a batch of its own, so --epochs x "
            "--epoch_itrs rounds make that many generator updates and five times as many student updates "
            "(official: one joint step of both players on one batch, 200 x 120 of them at batch 512 on "
            "MNIST, 2,000 x 120 at batch 1,024 on CIFAR with the student's learning rate x0.1 at epochs "
            "800 and 1,600); the generator is DFAD's (official: BatchNorm eps 0.8 in its two inner layers); "
            "the entropy loss takes the natural log, its weight the official one / ln 10")

    @staticmethod
    def add_args(group, datasets):
        group.add_argument("--dafl_oh", type=non_negative_float, default=None,
                           help="--method dafl: weight of the one-hot loss (default: DAFL's for the data set)")
        group.add_argument("--dafl_ie", type=non_negative_float, default=None,
                           help="--method dafl: weight of the information-entropy loss, natural log "
                                "(default: DAFL's for the data set divided by ln 10, as its code takes log10)")
        group.add_argument("--dafl_a", type=non_negative_float, default=None,
                           help="--method dafl: weight of the activation loss (default: DAFL's for the data set)")

    @staticmethod
    def defaults(dataset):
        return RECIPES.get(dataset, NO_RECIPE)

    def __init__(self, args, experiment, batch_size):
        if not has_out_feature(experiment.teacher):
            raise UserError(
                f"--method dafl needs the teacher's features before its classifier (DAFL's "
                f"activation loss), which {type(experiment.teacher).__name__} does not return (no "
                f"out_feature argument; only the reference LeNet-5 and ResNet-8x networks have it). "
                f"Use --method dfad, random or kd with this teacher.")
        self.oh, self.ie, self.a = args.dafl_oh, args.dafl_ie, args.dafl_a

    def generator_loss(self, t_logit, t_feature):
        one_hot, activation, info_entropy = dafl_losses(t_logit, t_feature)
        return self.oh * one_hot + self.ie * info_entropy + self.a * activation

    def play_round(self, p, batch_size):
        # (1) student: KD (KL, T=1) on fresh generated images, STUDENT_STEPS times
        for _ in range(STUDENT_STEPS):
            loss_S = student_step(p, p.generate(p.noise(batch_size)), kl_divergence)
        # (2) generator: DAFL's losses, judged by the teacher alone
        p.optimizer_G.zero_grad(set_to_none=True)
        with p.precision.autocast():
            t_logit, t_feature = p.teacher(p.generator(p.noise(batch_size)), out_feature=True)
            loss_G = self.generator_loss(t_logit, t_feature)
        p.precision.scale(loss_G, "generator").backward()
        p.precision.step(p.optimizer_G, "generator")
        return loss_S, loss_G.detach()
