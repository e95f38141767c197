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
import math

from ..game import Method
from .dfad import DFAD

# Official code huawei-noah/Efficient-Computing, DAFL/DAFL-train.py (its defaults are the
# MNIST recipe: Adam for both players with no weight decay, lr_G 0.2, lr_S 2e-3, --oh 1
# --ie 5 --a 0.1, batch 512, latent 100, 200 epochs x 120 joint steps) and DAFL/README.md
# (CIFAR-10: --lr_G 0.02 --lr_S 0.1 (SGD, momentum 0.9, weight decay 5e-4, x0.1 at epochs
# 800 and 1600) --oh 0.05 --ie 5 --act 0.01, batch 1024, latent 1000, 2000 epochs; CIFAR-100:
# the same with --ie 20). The official information-entropy loss takes log10, ours (the
# balance term) the natural log, so its weight here is the official one divided by ln 10.
LN10 = math.log(10)
RECIPES = {
    "mnist": dict(lr_S=2e-3, lr_G=0.2, optimizer_S="adam", weight_decay=0.0, oh=1.0, balance=5 / LN10, act=0.1),
    "cifar10": dict(lr_S=0.1, lr_G=0.02, optimizer_S="sgd", weight_decay=5e-4, oh=0.05, balance=5 / LN10, act=0.01),
    "cifar100": dict(lr_S=0.1, lr_G=0.02, optimizer_S="sgd", weight_decay=5e-4, oh=0.05, balance=20 / LN10,
                     act=0.01),
}
RECIPES["digits"] = RECIPES["mnist"]
NO_RECIPE = dict(oh=1.0, balance=5 / LN10, act=0.1)  # data sets DAFL published nothing for


class DAFL(Method):
    name = "dafl"
    summary = ("Chen et al., ICCV 2019: the generator is trained against the teacher alone (--oh, --balance, "
               "--act; no --adv), the student learns by KD (--student_loss kl) on its images; learning rates, "
               "student optimizer, weight decay and weights default to DAFL's official recipe (MNIST: Adam, "
               "lr_S 2e-3, lr_G 0.2, no weight decay; CIFAR: SGD, lr_S 0.1, lr_G 0.02, weight decay 5e-4), run "
               "at DFAD's budget and round shape")
    note = ("dafl is DAFL's losses and learning rates at DFAD's budget, not DAFL's official run: a round "
            "is 5 student steps then 1 generator step, each on a batch of its own, so --epochs x "
            "--epoch_itrs rounds make that many generator updates and five times as many student updates "
            "(official: one joint step of both players on one batch, 200 x 120 of them at batch 512 on "
            "MNIST, 2,000 x 120 at batch 1,024 on CIFAR with the student's learning rate x0.1 at epochs "
            "800 and 1,600); the generator is DFAD's (official: BatchNorm eps 0.8 in its two inner layers); "
            "the entropy loss takes the natural log, its weight the official one / ln 10")
    play_round = DFAD.play_round  # DFAD's round, with DAFL's weights and student loss

    @staticmethod
    def defaults(dataset):
        return {"adv": 0.0, "student_loss": "kl", **RECIPES.get(dataset, NO_RECIPE)}
