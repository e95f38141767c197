"""DFAD on CamVid: distil a DeepLabV3-ResNet50 teacher into a DeepLabV3-MobileNetV2 student.

    python DFAD_camvid_deeplab.py --ckpt checkpoint/teacher/camvid-deeplabv3_resnet50.pt \\
        --data_root ./data/CamVid --scheduler
"""
from dataloader import get_test_loader, get_transfer_set, normalization
from network.gan import GeneratorB
from network.segmentation import deeplabv3_mobilenet, deeplabv3_resnet50
from utils.engine import dfad
from utils.engine.game import adversarial_loss_log_l1
from utils.metrics.segmentation import segmentation_evaluator
from utils.reporting.images import PredictionPlots
from utils.runtime import checkpoint, cli

NUM_CLASSES = 11


def get_args_parser():
    parser = cli.dfad_parser(
        "DFAD CamVid", dataset="camvid", datasets=["camvid"], model="deeplabv3_mobilenet",
        models=["deeplabv3_mobilenet"], teacher_model="deeplabv3_resnet50", batch_size=64,
        test_batch_size=16, epochs=300, lr_S=0.1, lr_G=1e-3, weight_decay=5e-4, nz=256, step_size=100,
        channels_last=True)
    return cli.add_segmentation_args(parser, data_root="data/CamVid")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    device = cli.setup(args)
    teacher = checkpoint.load_weights(
        deeplabv3_resnet50(NUM_CLASSES, dropout_p=0.5, pretrained_backbone=False), args.ckpt,
        "teacher checkpoint", context=f"--dataset {args.dataset}",
        hint="Train it first: python train_teacher_seg.py --model deeplabv3_resnet50 --dataset camvid "
             "--data_root ./data/CamVid --scheduler --lr 0.1 --num_classes 11")
    mean, std = normalization(args.dataset)
    experiment = dfad.Experiment(
        dataset=args.dataset, student_name=args.model, method=args.method, teacher=teacher,
        student=deeplabv3_mobilenet(NUM_CLASSES, dropout_p=0.5, pretrained_backbone=False),
        generator=GeneratorB(nz=args.nz, nc=3, img_size=128),
        test_loader=get_test_loader(args),
        transfer_set=lambda: get_transfer_set(args),
        evaluate=segmentation_evaluator(NUM_CLASSES), metric_name="mIoU",
        adversarial_loss=adversarial_loss_log_l1, make_schedulers=dfad.step_lr(args.step_size),
        mean=mean, std=std, extra_plots=[PredictionPlots(args.nz, num_fake=args.test_batch_size)],
        start_from=args.stu_ckpt or "",
        save_img=args.save_img)
    return dfad.run(args, experiment, device)


if __name__ == "__main__":
    cli.main_guard(main)
