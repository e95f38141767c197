"""Networks of the DFAD experiments (torch and torchvision only: no data, no logging)."""
from . import gan, lenet, resnet_8x, segmentation

__all__ = ["gan", "lenet", "resnet_8x", "segmentation"]
