"""DFAD on NYUv2 (13 classes): distil a DeepLabV3-ResNet50 teacher into a DeepLabV3-MobileNetV2 student.

    python DFAD_nyu_deeplab.py --ckpt checkpoint/teacher/nyuv2-deeplabv3_resnet50.pt \\
        --data_root ./data/NYUv2 --scheduler

The reference NYUv2 script used weight decay 5e-5 and a x0.3 learning-rate decay; both
segmentation scripts here use 5e-4 and x0.1, the settings given for the experiment.
"""
import dataloader
import deeplab_experiment
from utils.runtime import cli

NYUV2 = deeplab_experiment.DataSet("nyuv2", num_classes=dataloader.num_classes("nyuv2"), test_batch_size=9, data_root="data/NYUv2",
                                   teacher_lr=0.05)


def get_args_parser():
    return deeplab_experiment.get_args_parser("DFAD NYUv2", NYUV2)


def networks(args):
    return deeplab_experiment.networks(args, NYUV2)


def main(argv=None):
    return deeplab_experiment.main(get_args_parser().parse_args(argv), NYUV2)


if __name__ == "__main__":
    cli.main_guard(main)
