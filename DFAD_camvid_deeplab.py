"""DFAD on CamVid: distil a DeepLabV3-ResNet50 teacher into a DeepLabV3-MobileNetV2 student.

    python DFAD_camvid_deeplab.py --ckpt checkpoint/teacher/camvid-deeplabv3_resnet50.pt \\
        --data_root ./data/CamVid --scheduler
"""
import dataloader
import deeplab_experiment
from utils.runtime import cli

CAMVID = deeplab_experiment.DataSet("camvid", num_classes=dataloader.num_classes("camvid"), test_batch_size=16, data_root="data/CamVid",
                                    teacher_lr=0.1)


def get_args_parser():
    return deeplab_experiment.get_args_parser("DFAD CamVid", CAMVID)


def networks(args):
    return deeplab_experiment.networks(args, CAMVID)


def main(argv=None):
    return deeplab_experiment.main(get_args_parser().parse_args(argv), CAMVID)


if __name__ == "__main__":
    cli.main_guard(main)
