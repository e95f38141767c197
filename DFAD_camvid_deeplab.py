"""DFAD on CamVid: distil a DeepLabV3-ResNet50 teacher into a DeepLabV3-MobileNetV2 student.

    python DFAD_camvid_deeplab.py --ckpt checkpoint/teacher/camvid-deeplabv3_resnet50.pt \\
        --data_root ./data/CamVid --scheduler
"""
from utils import cli, segmentation

NUM_CLASSES = 11
TEACHER_COMMAND = ("python train_teacher_seg.py --model deeplabv3_resnet50 --dataset camvid "
                   "--data_root ./data/CamVid --scheduler --lr 0.1 --num_classes 11")


def get_args_parser():
    return segmentation.dfad_parser("DFAD CamVid", dataset="camvid", data_root="data/CamVid",
                                    test_batch_size=16)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    return segmentation.run_dfad(args, NUM_CLASSES, TEACHER_COMMAND)


if __name__ == "__main__":
    cli.main_guard(main)
