"""DFAD on NYUv2 (13 classes): distil a DeepLabV3-ResNet50 teacher into a DeepLabV3-MobileNetV2 student.

    python DFAD_nyu_deeplab.py --ckpt checkpoint/teacher/nyuv2-deeplabv3_resnet50.pt \\
        --data_root ./data/NYUv2 --scheduler

The reference NYUv2 script used weight decay 5e-5 and a x0.3 learning-rate decay; both
segmentation scripts here use 5e-4 and x0.1, the settings given for the experiment.
"""
from utils import cli, segmentation

NUM_CLASSES = 13
TEACHER_COMMAND = ("python train_teacher_seg.py --model deeplabv3_resnet50 --dataset nyuv2 "
                   "--data_root ./data/NYUv2 --scheduler --lr 0.05 --num_classes 13")


def get_args_parser():
    return segmentation.dfad_parser("DFAD NYUv2", dataset="nyuv2", data_root="data/NYUv2",
                                    test_batch_size=9)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    return segmentation.run_dfad(args, NUM_CLASSES, TEACHER_COMMAND)


if __name__ == "__main__":
    cli.main_guard(main)
