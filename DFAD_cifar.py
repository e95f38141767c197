"""DFAD on CIFAR-10/100: distil a ResNet-34-8x teacher into a ResNet-18-8x student without data.

    python DFAD_cifar.py --dataset cifar10 --ckpt checkpoint/teacher/cifar10-resnet34_8x.pt --scheduler
"""
import network
from dataloader import experiment_data
from utils.engine import dfad, options
from utils.runtime import checkpoint, cli

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
MILESTONES = [100, 200]  # --scheduler: the reference's MultiStepLR epochs (it ignores --step_size)


def get_args_parser():
    return options.dfad_parser(
        "DFAD CIFAR", experiment="cifar", dataset="cifar10", datasets=sorted(NUM_CLASSES), model="resnet18_8x",
        models=["resnet18_8x"], teacher_model="resnet34_8x", batch_size=256, test_batch_size=128,
        epochs=500, lr_S=0.1, lr_G=1e-3, weight_decay=5e-4, nz=256, step_size=100, milestones=MILESTONES)


def networks(args):
    """Teacher (untrained here: main loads --ckpt into it), student and generator."""
    classes = NUM_CLASSES[args.dataset]
    return (network.resnet_8x.ResNet34_8x(num_classes=classes), network.resnet_8x.ResNet18_8x(num_classes=classes),
            network.gan.GeneratorA(nz=args.nz, nc=3, img_size=32))


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    device = cli.setup(args)
    teacher, student, generator = networks(args)
    checkpoint.load_weights(
        teacher, args.ckpt, "teacher checkpoint", context=f"--dataset {args.dataset}",
        hint=f"Train it first: python train_teacher.py --dataset {args.dataset} --model resnet34_8x "
             f"--batch_size 128 --step_size 80 --epochs 200 --scheduler")
    experiment = dfad.Experiment(args.dataset, args.model, teacher, student, generator, **experiment_data(args), milestones=MILESTONES)
    return dfad.run(args, experiment, device)


if __name__ == "__main__":
    cli.main_guard(main)
