"""DFAD on CIFAR-10/100: distil a ResNet-34-8x teacher into a ResNet-18-8x student without data.

    python DFAD_cifar.py --dataset cifar10 --ckpt checkpoint/teacher/cifar10-resnet34_8x.pt --scheduler

--teacher and --model take any pair of the field's benchmark networks (network/cifar_zoo.py:
the reference's resnet34_8x / resnet18_8x, CMI's resnet34 resnet18 vgg11 wrn40_2 wrn40_1
wrn16_2 wrn16_1), e.g. --teacher wrn40_2 --model wrn16_1 --ckpt cifar100_wrn40_2.pth (CMI's
published teacher file, as it is). A pair other than the reference's names its files
<dataset>-<teacher>-<model>.
"""
from network import cifar_zoo, gan
from dataloader import experiment_data, num_classes
from utils.engine import loop, options
from utils.runtime import checkpoint, cli

CIFAR = ("cifar10", "cifar100")
MILESTONES = [100, 200]  # --scheduler: the reference's MultiStepLR epochs (it ignores --step_size)
TEACHER, STUDENT = "resnet34_8x", "resnet18_8x"  # the reference's pair


def get_args_parser():
    return options.dfad_parser(
        "DFAD CIFAR", experiment="cifar", dataset="cifar10", datasets=list(CIFAR), model=STUDENT,
        models=list(cifar_zoo.CIFAR_NETWORKS), teacher_model=TEACHER, teachers=list(cifar_zoo.CIFAR_NETWORKS),
        batch_size=256, test_batch_size=128, epochs=500, lr_S=0.1, lr_G=1e-3, weight_decay=5e-4, nz=256,
        step_size=100, milestones=MILESTONES)


def networks(args):
    """Teacher (untrained here: main loads --ckpt into it), student and generator."""
    classes = num_classes(args.dataset)
    return (cifar_zoo.build(args.teacher, classes), cifar_zoo.build(args.model, classes),
            gan.GeneratorA(nz=args.nz, nc=3, img_size=32))


def pair(args):
    """How the run names its files: the student for the reference's pair, else both."""
    return None if (args.teacher, args.model) == (TEACHER, STUDENT) else f"{args.teacher}-{args.model}"


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    device = cli.setup(args)
    teacher, student, generator = networks(args)
    checkpoint.load_weights(
        teacher, args.ckpt, "teacher checkpoint", context=f"--dataset {args.dataset} --teacher {args.teacher}",
        hint=f"Train it first: python train_teacher.py --dataset {args.dataset} --model {args.teacher} "
             f"--batch_size 128 --step_size 80 --epochs 200 --scheduler")
    # the test set normalised as the teacher was trained (CMI's CIFAR-100 teachers: its own statistics)
    data = experiment_data(args, cifar_zoo.NORMALIZATION[args.teacher])
    experiment = loop.Experiment(args.dataset, pair(args) or args.model, teacher, student, generator, **data,
                                 milestones=MILESTONES, pair=pair(args))
    return loop.run(args, experiment, device)


if __name__ == "__main__":
    cli.main_guard(main)
