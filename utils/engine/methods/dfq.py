"""DFQ (Choi et al., "Data-Free Network Quantization With Adversarial Knowledge
Distillation", CVPRW 2020) as the field's benchmark runs it (zju-vipa/CMI's
``scripts/dfq/*.sh``): the generator minimises -KL(teacher || student) (``--adv_loss kl``)
+ the teacher's BatchNorm statistics (``--bn 1``) + DAFL's one-hot (``--oh 1``) and class
balance (``--balance 20``); the student learns by KL at T = 1.

What differs from CMI's run (``DFQ.note``): the round keeps DFAD's shape and budget (five
student steps, then one generator step, each on a batch of its own), where CMI's makes one
generator step, then 10 student steps, 400 steps an epoch for 200 epochs at batch 256, the
student's learning rate x0.1 at epochs 120, 150 and 180; and the generator is DFAD's.
"""
from ..game import Method
from .dfad import DFAD

# CMI's scripts/dfq/dfq_cifar10_res34_res18.sh: --lr 0.05 --lr_g 1e-3 --T 1, and
# datafree_kd.py's default weight decay 1e-4 (SGD, momentum 0.9).
CIFAR_RECIPE = dict(lr_S=0.05, lr_G=1e-3, weight_decay=1e-4)


class DFQ(Method):
    name = "dfq"
    summary = ("Choi et al., CVPRW 2020, as the field's benchmark (CMI) runs it: the generator minimises "
               "-KL(teacher || student) + the teacher's BatchNorm statistics + one-hot + 20 x class balance "
               "(--adv_loss kl --adv 1 --bn 1 --oh 1 --balance 20), the student learns by KL (T = 1); CIFAR: "
               "CMI's learning rates (lr_S 0.05, weight decay 1e-4); needs a teacher with BatchNorm layers")
    note = ("dfq is DFQ's objective as CMI's benchmark weighs it, at DFAD's budget and round shape: a round is "
            "5 student steps then 1 generator step, each on a batch of its own (CMI: 1 generator step then 10 "
            "student steps, 400 steps an epoch, 200 epochs at batch 256, the student's learning rate x0.1 at "
            "epochs 120, 150 and 180); the generator is DFAD's")
    play_round = DFAD.play_round  # DFAD's round, with DFQ's weights and student loss

    @staticmethod
    def defaults(dataset):
        recipe = CIFAR_RECIPE if dataset in ("cifar10", "cifar100") else {}
        return {"adv": 1.0, "adv_loss": "kl", "bn": 1.0, "oh": 1.0, "balance": 20.0, "student_loss": "kl",
                "temperature": 1.0, **recipe}
