"""What the segmentation experiments (CamVid, NYUv2) add to the DFAD engine.

mIoU evaluation, colour-coded predictions (visdom windows and ``--save_img`` PNGs),
the ``--stu_ckpt`` warm start, and the DeepLabV3 :class:`dfad.Experiment` shared by
``DFAD_camvid_deeplab.py`` and ``DFAD_nyu_deeplab.py``, which differ only in data set,
class count and test batch size.
"""
import functools
import os

import numpy as np
import torch
from PIL import Image

from dataloader import get_dataloader, normalization
from network.gan import GeneratorB
from network.segmentation import deeplabv3_mobilenet, deeplabv3_resnet50

from . import checkpoint, cli, dfad, distributed
from .misc import denormalize
from .stream_metrics import StreamSegMetrics


@torch.no_grad()
def evaluate_segmentation(model, loader, device, num_classes):
    """Mean IoU ("mIoU") and pixel accuracies over a whole loader (255 = ignored)."""
    model.eval()
    metrics = StreamSegMetrics(num_classes)
    for images, targets in loader:
        metrics.update(targets, model(images.to(device)).argmax(1))
    results = metrics.get_results()
    return {"mIoU": results["Mean IoU"],
            **{k: results[k] for k in ("Overall Acc", "Mean Acc", "FreqW Acc")}}


def segmentation_evaluator(num_classes):
    """``evaluate_segmentation`` with the engine's ``(model, loader, device)`` signature."""
    return functools.partial(evaluate_segmentation, num_classes=num_classes)


def colorize(decode_target, labels):
    """Class ids (N, H, W) -> colour-coded float images (N, 3, H, W) in [0, 1]."""
    colours = torch.from_numpy(np.ascontiguousarray(decode_target(labels)))
    return colours.permute(0, 3, 1, 2).float() / 255


class PredictionPlots:
    """``Experiment.extra_plots`` hook: colour-coded teacher and student predictions on
    the first real test batch and on ``num_fake`` generated images from fixed noise."""

    def __init__(self, nz, num_fake, seed=0):
        # A private RNG: the fixed noise does not shift the game's random stream.
        self.z = torch.randn(num_fake, nz, 1, 1, generator=torch.Generator().manual_seed(seed))
        self.real = None  # (images, colour-coded target, colour-coded teacher), computed once

    @torch.no_grad()
    def __call__(self, exp, plotter, epoch, device):
        if not plotter.enabled:
            return
        decode = exp.test_loader.dataset.decode_target
        exp.student.eval()
        exp.generator.eval()
        if self.real is None:  # the teacher is frozen: its real predictions never change
            images, targets = next(iter(exp.test_loader))
            images = images.to(device)
            self.real = images, colorize(decode, targets), colorize(decode, exp.teacher(images).argmax(1))
        images, target, teacher = self.real
        plotter.color_images("Real_target", target)
        plotter.color_images("Real_teacher", teacher)
        plotter.color_images("Real_student", colorize(decode, exp.student(images).argmax(1)))

        fake = exp.generator(self.z.to(device))
        plotter.images("Fake_images", fake, mean=exp.mean, std=exp.std)
        plotter.color_images("Fake_teacher", colorize(decode, exp.teacher(fake).argmax(1)))
        plotter.color_images("Fake_student", colorize(decode, exp.student(fake).argmax(1)))


@torch.no_grad()
def save_predictions(exp, device, folder):
    """Write ``<i>_image.png`` (de-normalised input), ``<i>_target.png``,
    ``<i>_teacher.png`` and ``<i>_student.png`` for every test image."""
    os.makedirs(folder, exist_ok=True)
    decode = exp.test_loader.dataset.decode_target
    exp.teacher.eval()
    exp.student.eval()
    index = 0
    for images, targets in exp.test_loader:
        inputs = denormalize(images, exp.mean, exp.std).mul(255).round().byte().permute(0, 2, 3, 1)
        images = images.to(device)
        pictures = {"image": inputs.numpy(), "target": decode(targets),
                    "teacher": decode(exp.teacher(images).argmax(1)),
                    "student": decode(exp.student(images).argmax(1))}
        for k in range(len(targets)):
            for name, batch in pictures.items():
                Image.fromarray(batch[k]).save(os.path.join(folder, f"{index + k}_{name}.png"))
        index += len(targets)


def warm_start(student, generator, stu_ckpt):
    """Start from a saved student and, where it exists, the generator saved beside it."""
    checkpoint.load_weights(student, stu_ckpt, "student checkpoint (--stu_ckpt)")
    print(f"Student restored from {stu_ckpt}", flush=True)
    generator_path = stu_ckpt.removesuffix(".pt") + "-generator.pt"
    if os.path.isfile(generator_path):
        checkpoint.load_weights(generator, generator_path, "generator checkpoint")
        print(f"Generator restored from {generator_path}", flush=True)
    else:
        print(f"No generator checkpoint {generator_path}: the generator starts afresh.", flush=True)


def dfad_parser(description, *, dataset, data_root, test_batch_size):
    """The flags of a segmentation DFAD script, reference defaults, plus --stu_ckpt and --save_img."""
    parser = cli.dfad_parser(
        description, dataset=dataset, datasets=[dataset], model="deeplabv3_mobilenet",
        models=["deeplabv3_mobilenet"], batch_size=64, test_batch_size=test_batch_size,
        epochs=300, lr_S=0.1, lr_G=1e-3, weight_decay=5e-4, nz=256, step_size=100,
        ckpt_help=f"checkpoint/teacher/{dataset}-deeplabv3_resnet50.pt")
    parser.set_defaults(data_root=data_root)
    parser.add_argument("--stu_ckpt", default=None,
                        help="student weights to start from (and <stu_ckpt without .pt>-generator.pt "
                             "where it exists); with --test_only, the student to evaluate")
    parser.add_argument("--save_img", action="store_true",
                        help=f"write inputs, targets, teacher and student predictions of the test set "
                             f"to results/DFAD-{dataset}/")
    return parser


def run_dfad(args, num_classes, teacher_command):
    """DeepLabV3-ResNet50 teacher -> DeepLabV3-MobileNetV2 student through the DFAD engine."""
    args.ckpt = args.ckpt or f"checkpoint/teacher/{args.dataset}-deeplabv3_resnet50.pt"
    device = cli.setup(args)
    _, test_loader = get_dataloader(args)
    teacher = checkpoint.load_weights(
        deeplabv3_resnet50(num_classes, dropout_p=0.5, pretrained_backbone=False), args.ckpt,
        "teacher checkpoint", hint=f"Train it first: {teacher_command}", context=f"--dataset {args.dataset}")
    mean, std = normalization(args.dataset)
    experiment = dfad.Experiment(
        name=args.dataset, teacher=teacher,
        student=deeplabv3_mobilenet(num_classes, dropout_p=0.5, pretrained_backbone=False),
        generator=GeneratorB(nz=args.nz, nc=3, img_size=128),
        model=args.model, test_loader=test_loader, evaluate=segmentation_evaluator(num_classes),
        metric_name="mIoU",
        adversarial_loss=dfad.adversarial_loss_log_l1, make_schedulers=dfad.step_lr(args.step_size),
        mean=mean, std=std, extra_plots=[PredictionPlots(args.nz, num_fake=args.test_batch_size)])
    if args.stu_ckpt and not args.test_only:  # with --test_only, dfad.run loads it itself
        warm_start(experiment.student, experiment.generator, args.stu_ckpt)
    best = dfad.run(args, experiment, device)
    if args.save_img and distributed.is_main():
        if not args.test_only:  # the game leaves its last student behind: show the best one
            checkpoint.load_weights(experiment.student, experiment.student_ckpt, "student checkpoint")
        save_predictions(experiment, device, f"results/DFAD-{args.dataset}")
    return best
