"""The DeepLab experiments of DFAD, declared once for DFAD_camvid_deeplab.py and
DFAD_nyu_deeplab.py: a DeepLabV3-ResNet50 teacher distilled into a DeepLabV3-MobileNetV2
student on 128 px generated images, scored by mIoU. The two scripts differ only in their
data set (a :class:`DataSet` each)."""
from dataclasses import dataclass

from dataloader import experiment_data
from network.gan import GeneratorB
from network.segmentation import deeplabv3_mobilenet, deeplabv3_resnet50
from utils.engine import loop, options
from utils.engine.game import adversarial_loss_log_l1
from utils.metrics.segmentation import segmentation_evaluator
from utils.reporting.images import PredictionPlots, save_predictions
from utils.runtime import checkpoint, cli, distributed


@dataclass(frozen=True)
class DataSet:
    name: str
    num_classes: int
    test_batch_size: int
    data_root: str
    teacher_lr: float  # train_teacher_seg.py's --lr for it (SPEC)


def get_args_parser(description, data):
    parser = options.dfad_parser(
        description, experiment="deeplab", dataset=data.name, datasets=[data.name], model="deeplabv3_mobilenet",
        models=["deeplabv3_mobilenet"], teacher_model="deeplabv3_resnet50", batch_size=64,
        test_batch_size=data.test_batch_size, epochs=300, lr_S=0.1, lr_G=1e-3, weight_decay=5e-4, nz=256,
        step_size=100)
    parser.set_defaults(data_root=data.data_root)
    parser.add_argument("--stu_ckpt", default=None,
                        help="student weights to start from (and <stu_ckpt without .pt>-generator.pt "
                             "where it exists); with --test_only, the student to evaluate")
    parser.add_argument("--save_img", action="store_true",
                        help="write inputs, targets, teacher and student predictions of the test set "
                             "to results/DFAD-<dataset>[-<method>]/")
    return parser


def networks(args, data):
    """Teacher (untrained here: main loads --ckpt into it), student and generator."""
    return (deeplabv3_resnet50(data.num_classes, dropout_p=0.5, pretrained_backbone=False),
            deeplabv3_mobilenet(data.num_classes, dropout_p=0.5, pretrained_backbone=False),
            GeneratorB(nz=args.nz, nc=3, img_size=128))


def main(args, data):
    device = cli.setup(args)
    teacher, student, generator = networks(args, data)
    checkpoint.load_weights(
        teacher, args.ckpt, "teacher checkpoint", context=f"--dataset {data.name}",
        hint=f"Train it first: python train_teacher_seg.py --model deeplabv3_resnet50 --dataset {data.name} "
             f"--data_root {data.data_root} --scheduler --lr {data.teacher_lr} --num_classes {data.num_classes}")
    experiment = loop.Experiment(
        data.name, args.model, teacher, student, generator, **experiment_data(args),
        evaluate=segmentation_evaluator(data.num_classes), metric_name="mIoU", adversarial_loss=adversarial_loss_log_l1)
    test_loader, mean, std = experiment.test_loader, experiment.mean, experiment.std
    experiment.extra_plots.append(PredictionPlots(test_loader, mean, std, args.nz, num_fake=args.test_batch_size))
    if args.stu_ckpt and args.test_only:
        args.eval_ckpt = args.eval_ckpt or args.stu_ckpt  # the reference's meaning of --stu_ckpt there
    elif args.stu_ckpt and not args.resume:
        loop.warm_start(experiment, args.stu_ckpt)
    score = loop.run(args, experiment, device)
    if args.save_img and distributed.is_main():
        files = loop.RunFiles.of(experiment, loop.METHODS[args.method])
        if not args.test_only:  # the game ends on its last student: show the best one
            checkpoint.load_weights(student, files.student, "student checkpoint")
        save_predictions(files.results, teacher, student, test_loader, mean, std, device)
    return score
