"""Train a classification teacher on real data (the only place DFAD sees training data).

Saves the best model to ``checkpoint/teacher/<dataset>-<model>.pt`` as a bare
state_dict, the format of the published teachers, and ends with ``Best Acc=<float>``.

Which network a ``--model`` name means depends on ``--dataset``: on cifar10/cifar100
every name of :data:`network.cifar_zoo.CIFAR_NETWORKS` (the reference's 8x ResNets and
CMI's benchmark networks; there ``resnet34`` is the zoo's, the same network as
``resnet34_8x``), on caltech101 ``resnet34`` is torchvision's ResNet-34 (the
reference's), on mnist/digits ``lenet5``.
"""
import argparse

import torch
import torch.nn.functional as F

import network
from dataloader import get_test_loader, get_train_loader, num_classes
from network import cifar_zoo
from utils.engine import supervised
from utils.metrics.classification import evaluate_classifier
from utils.reporting import records
from utils.runtime import checkpoint, cli, distributed
from utils.runtime.errors import UserError

DATASETS = ("mnist", "digits", "cifar10", "cifar100", "caltech101")
CIFAR = ("cifar10", "cifar100")
# The --model names each data set takes.
MODELS = {"mnist": ("lenet5",), "digits": ("lenet5",),
          **{dataset: tuple(sorted(cifar_zoo.CIFAR_NETWORKS)) for dataset in CIFAR},
          "caltech101": ("resnet34",)}
# The data sets each --model name is for (the other way round).
MODEL_DATASETS = {model: tuple(d for d in MODELS if model in MODELS[d])
                  for model in sorted({m for names in MODELS.values() for m in names})}
LR_SCHEDULES = ("step", "multistep")
CMI_MILESTONES = "120,150,180"  # zju-vipa/CMI train_scratch.py's --lr_decay_milestones


def torchvision_resnet34(num_classes, pretrained=False):
    """torchvision's ResNet-34, optionally started from ImageNet weights (new classifier)."""
    import torchvision  # here, not at the top: the other teachers' runs need none of it
    if not pretrained:
        return torchvision.models.resnet34(num_classes=num_classes)
    try:
        model = torchvision.models.resnet34(weights=torchvision.models.ResNet34_Weights.IMAGENET1K_V1)
    except OSError as e:  # URLError, timeouts: no network
        raise UserError(f"Could not download the ImageNet weights of ResNet-34 ({e}). Connect to the "
                        f"internet, put the file into {torch.hub.get_dir()}/checkpoints, or drop "
                        f"--pretrained to start from random weights.") from None
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    return model


def get_model(args):
    """The network ``--model`` names on ``--dataset`` (check_args made sure it has one)."""
    if args.dataset in CIFAR:
        return cifar_zoo.build(args.model, args.num_classes)
    if args.model == "lenet5":
        return network.lenet.LeNet5()
    return torchvision_resnet34(args.num_classes, args.pretrained)


def data_normalization(args):
    """CMI's networks are trained on CIFAR-100 normalised with its own statistics, as its
    published teachers were, so that both kinds of teacher read the data alike."""
    return cifar_zoo.NORMALIZATION[args.model] if args.dataset in CIFAR else "reference"


def milestone_list(text):
    """``120,150,180`` -> [120, 150, 180]: positive epochs in increasing order."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values) or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(
            f"must be epochs in increasing order separated by commas, e.g. {CMI_MILESTONES}; got {text}")
    return values


def get_args_parser():
    parser = cli.new_parser("Train a DFAD teacher")
    cli.add_common_args(parser, batch_size=256, test_batch_size=128, epochs=30, weight_decay=5e-4,
                        dataset="mnist", datasets=sorted(DATASETS), step_size=50)
    parser.add_argument("--lr", type=cli.positive_float, default=0.1, help="SGD learning rate")
    parser.add_argument("--model", default="lenet5", choices=sorted(MODEL_DATASETS),
                        help="teacher network; which ones fit depends on --dataset: "
                             + "; ".join(f"{d}: {', '.join(m)}" for d, m in MODELS.items())
                             + " (resnet34 is torchvision's on caltech101, the 8x ResNet-34 on CIFAR)")
    parser.add_argument("--pretrained", action="store_true",
                        help="start caltech101's resnet34 from ImageNet weights (downloads them)")
    parser.add_argument("--lr_schedule", default="step", choices=LR_SCHEDULES,
                        help="the decay --scheduler turns on: step: x0.1 every --step_size epochs (the "
                             "reference's); multistep: x0.1 after each epoch of --milestones (CMI's "
                             "teacher recipe)")
    parser.add_argument("--milestones", type=milestone_list, default=None,
                        help=f"epochs after which --lr_schedule multistep multiplies the learning rate "
                             f"by 0.1 (default: {CMI_MILESTONES}, CMI's for 200 epochs)")
    return cli.add_teacher_args(parser)


def check_args(args):
    cli.check_num_classes(args, num_classes(args.dataset))
    if args.model not in MODELS[args.dataset]:
        raise UserError(f"--model {args.model} is for {', '.join(MODEL_DATASETS[args.model])}, "
                        f"not --dataset {args.dataset}, which takes --model "
                        f"{' or '.join(MODELS[args.dataset])}.")
    if args.pretrained and (args.dataset, args.model) != ("caltech101", "resnet34"):
        raise UserError(f"--pretrained (ImageNet weights) is only for --model resnet34 --dataset "
                        f"caltech101, not --model {args.model} --dataset {args.dataset}. Drop it.")
    if args.lr_schedule != "step" and not args.scheduler:
        raise UserError(f"--lr_schedule {args.lr_schedule} shapes the decay that --scheduler turns on; "
                        f"add --scheduler (without it the learning rate stays --lr).")
    if args.milestones is not None and args.lr_schedule != "multistep":
        raise UserError(f"--milestones is for --lr_schedule multistep, not {args.lr_schedule}: add "
                        f"--lr_schedule multistep --scheduler, or drop --milestones.")
    if args.lr_schedule == "multistep" and args.milestones is None:
        args.milestones = milestone_list(CMI_MILESTONES)


def lr_scheduler(args):
    """What builds the decay from the optimizer, for supervised.fit; None: its StepLR."""
    if args.lr_schedule == "multistep":
        return lambda optimizer: torch.optim.lr_scheduler.MultiStepLR(optimizer, args.milestones, gamma=0.1)
    return None


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    check_args(args)
    device = cli.setup(args)
    save_path = supervised.save_path(args)
    test_loader = get_test_loader(args, data_normalization(args))
    model = get_model(args)
    if args.ckpt or args.test_only:
        checkpoint.load_weights(model, args.ckpt or save_path, "teacher checkpoint",
                                hint="Train one with this script (without --test_only).",
                                context=f"--dataset {args.dataset}")
    if args.test_only:
        print(records.format_scores("Teacher", evaluate_classifier(model.to(device), test_loader, device)))
        return None
    train_loader = get_train_loader(args, distributed.local_batch_size(args.batch_size), data_normalization(args))
    return supervised.fit(args, model, train_loader, test_loader, device, loss_fn=F.cross_entropy,
                          evaluate=evaluate_classifier, metric_name="Acc", save_path=save_path,
                          make_scheduler=lr_scheduler(args))


if __name__ == "__main__":
    cli.main_guard(main)
