"""DFAD on Caltech101: distil a ResNet-34 teacher into a ResNet-18 student without data (128 px).

    python DFAD_caltech101.py --lr_S 0.05 --lr_G 1e-3 --scheduler --batch_size 64 \\
        --ckpt checkpoint/teacher/caltech101-resnet34.pt
"""
import torchvision

import network
from dataloader import experiment_data, num_classes
from utils.engine import loop, options
from utils.runtime import checkpoint, cli

NUM_CLASSES = num_classes("caltech101")


def get_args_parser():
    return options.dfad_parser(
        "DFAD Caltech101", experiment="caltech101", dataset="caltech101", datasets=["caltech101"], model="resnet18",
        models=["resnet18"], teacher_model="resnet34", batch_size=64, test_batch_size=32,
        epochs=300, lr_S=0.1, lr_G=1e-3, weight_decay=5e-4, nz=256, step_size=100)


def networks(args):
    """Teacher (untrained here: main loads --ckpt into it), student and generator."""
    return (torchvision.models.resnet34(num_classes=NUM_CLASSES), torchvision.models.resnet18(num_classes=NUM_CLASSES),
            network.gan.GeneratorB(nz=args.nz, nc=3, img_size=128))


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    device = cli.setup(args)
    teacher, student, generator = networks(args)
    checkpoint.load_weights(
        teacher, args.ckpt, "teacher checkpoint", context="--dataset caltech101",
        hint="Train it first: python train_teacher.py --dataset caltech101 --batch_size 128 "
             "--num_classes 101 --step_size 50 --epochs 150 --model resnet34 --scheduler")
    experiment = loop.Experiment(args.dataset, args.model, teacher, student, generator, **experiment_data(args))
    return loop.run(args, experiment, device)


if __name__ == "__main__":
    cli.main_guard(main)
