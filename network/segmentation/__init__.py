"""Segmentation networks of the DFAD experiments (DeepLabV3 teacher and student)."""
from . import deeplabv3
from .deeplabv3 import PretrainedWeightsUnavailable, deeplabv3_mobilenet, deeplabv3_resnet50

__all__ = ["deeplabv3", "deeplabv3_mobilenet", "deeplabv3_resnet50", "PretrainedWeightsUnavailable"]
