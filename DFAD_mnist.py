"""DFAD on MNIST: distil a LeNet-5 teacher into a LeNet-5-half student without data.

    bash run_mnist.sh        (trains the teacher first, then runs this script)

The real test set is used only to evaluate the student after every epoch (and, with
--method kd, the real training images are distilled on, their labels never read).
"""
from dataloader import experiment_data
from network.gan import GeneratorA
from network.lenet import LeNet5, LeNet5Half
from utils.engine import loop, options
from utils.runtime import checkpoint, cli


def get_args_parser():
    return options.dfad_parser(
        "DFAD MNIST", experiment="mnist", dataset="mnist", datasets=["mnist", "digits"], model="lenet5_half",
        models=["lenet5_half"], teacher_model="lenet5", batch_size=512, test_batch_size=256,
        epochs=40, lr_S=0.01, lr_G=1e-3, weight_decay=1e-4, nz=100, step_size=100)


def networks(args):
    """Teacher (untrained here: main loads --ckpt into it), student and generator."""
    return LeNet5(), LeNet5Half(), GeneratorA(nz=args.nz, nc=1, img_size=32)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    device = cli.setup(args)
    teacher, student, generator = networks(args)
    checkpoint.load_weights(teacher, args.ckpt, "teacher checkpoint",
                            hint=f"Train it first: python train_teacher.py --dataset {args.dataset} --model lenet5")
    experiment = loop.Experiment(args.dataset, args.model, teacher, student, generator, **experiment_data(args))
    return loop.run(args, experiment, device)


if __name__ == "__main__":
    cli.main_guard(main)
