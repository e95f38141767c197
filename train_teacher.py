"""Train a classification teacher on real data (the only place DFAD sees training data).

Saves the best model to ``checkpoint/teacher/<dataset>-<model>.pt`` as a bare
state_dict, the format of the published teachers, and ends with ``Best Acc=<float>``.
"""
import torch
import torch.nn.functional as F
import torchvision

import network
from dataloader import get_test_loader, get_train_loader
from utils.engine import supervised
from utils.metrics.classification import evaluate_classifier
from utils.reporting import records
from utils.runtime import checkpoint, cli, distributed
from utils.runtime.errors import UserError

NUM_CLASSES = {"mnist": 10, "digits": 10, "cifar10": 10, "cifar100": 100, "caltech101": 101}
MODEL_DATASETS = {"lenet5": ("mnist", "digits"), "resnet34_8x": ("cifar10", "cifar100"),
                  "resnet34": ("caltech101",)}


def torchvision_resnet34(num_classes, pretrained=False):
    """torchvision's ResNet-34, optionally started from ImageNet weights (new classifier)."""
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
    if args.model == "lenet5":
        return network.lenet.LeNet5()
    if args.model == "resnet34_8x":
        return network.resnet_8x.ResNet34_8x(num_classes=args.num_classes)
    return torchvision_resnet34(args.num_classes, args.pretrained)


def get_args_parser():
    parser = cli.new_parser("Train a DFAD teacher")
    cli.add_common_args(parser, batch_size=256, test_batch_size=128, epochs=30, weight_decay=5e-4,
                        dataset="mnist", datasets=sorted(NUM_CLASSES), step_size=50)
    parser.add_argument("--lr", type=cli.positive_float, default=0.1, help="SGD learning rate")
    parser.add_argument("--model", default="lenet5", choices=sorted(MODEL_DATASETS), help="teacher network")
    parser.add_argument("--pretrained", action="store_true",
                        help="start resnet34 from ImageNet weights (downloads them)")
    return cli.add_teacher_args(parser)


def check_args(args):
    cli.check_num_classes(args, NUM_CLASSES[args.dataset])
    if args.dataset not in MODEL_DATASETS[args.model]:
        raise UserError(f"--model {args.model} is for {', '.join(MODEL_DATASETS[args.model])}, "
                        f"not --dataset {args.dataset}.")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    check_args(args)
    device = cli.setup(args)
    save_path = supervised.save_path(args)
    test_loader = get_test_loader(args)
    model = get_model(args)
    if args.ckpt or args.test_only:
        checkpoint.load_weights(model, args.ckpt or save_path, "teacher checkpoint",
                                hint="Train one with this script (without --test_only).",
                                context=f"--dataset {args.dataset}")
    if args.test_only:
        print(records.format_scores("Teacher", evaluate_classifier(model.to(device), test_loader, device)))
        return None
    train_loader = get_train_loader(args, distributed.local_batch_size(args.batch_size))
    return supervised.fit(args, model, train_loader, test_loader, device, loss_fn=F.cross_entropy,
                          evaluate=evaluate_classifier, metric_name="Acc", save_path=save_path)


if __name__ == "__main__":
    cli.main_guard(main)
