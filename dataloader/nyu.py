"""NYUv2 with 13 semantic classes, in the layout of the reference code.

- ``<root>/480_640/IMAGE/<k>.png``: the 1,449 labelled RGB images, numbered from 0;
- ``<root>/nyuv2-meta-data/splits.mat``: ``trainNdxs`` (795) and ``testNdxs`` (654),
  1-based indices into those 1,449 images;
- ``<root>/nyuv2-meta-data/{train,test}_labels_13/new_nyu_class13_<%04d>.png``: labels
  numbered by the same 1-based index; 0 is void (mapped to 255, ignored), class c is
  stored as c + 1.

So split entry ``idx`` pairs image ``IMAGE/<idx-1>.png`` with label
``new_nyu_class13_<idx:04d>.png``.
"""
import os

import numpy as np
import scipy.io
import torch

from utils.runtime.errors import UserError

from . import num_classes, seg_transforms
from .seg_transforms import IGNORE_INDEX, MEAN, STD  # noqa: F401  MEAN/STD: house convention

NUM_CLASSES = num_classes("nyuv2")
LAYOUT = ("480_640/IMAGE/<k>.png (images numbered from 0), nyuv2-meta-data/splits.mat "
          "(trainNdxs, testNdxs) and nyuv2-meta-data/{train,test}_labels_13/"
          "new_nyu_class13_<%04d>.png")
SOURCES = ("the images come from the NYU Depth v2 labelled set "
           "(https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html), the 13-class labels "
           "from https://github.com/ankurhanda/nyuv2-meta-data")

_LABEL_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_LABEL_LUT[1:NUM_CLASSES + 1] = np.arange(NUM_CLASSES)


def voc_colormap(n=256):
    """PASCAL-VOC colour map: the bits of the index are spread over R, G and B, from
    the most significant bit down."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - j)
            c >>= 3
        cmap[i] = rgb
    return cmap


def _missing(kind, paths, root):
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise UserError(
            f"NYUv2 {kind} file {absent[0]} is missing ({len(absent)} of {len(paths)} "
            f"{kind} files of this split are missing). {root} must contain {LAYOUT}; "
            f"{SOURCES}.")


class NYUv2(seg_transforms.LabelledImages):
    """``split`` is 'train' or 'test'; ``transform(image, label)`` is a joint transform
    such as ``seg_transforms.train_transform()``. Without one, items are a PIL image
    and an HxW uint8 label array."""

    label_lut = _LABEL_LUT
    cmap = voc_colormap()

    def __init__(self, root, split="train", transform=None):
        if split not in ("train", "test"):
            raise ValueError(f"unknown NYUv2 split {split!r}")
        super().__init__(transform)
        self.root, self.split = root, split
        meta = os.path.join(root, "nyuv2-meta-data")
        image_dir = os.path.join(root, "480_640", "IMAGE")
        label_dir = os.path.join(meta, f"{split}_labels_13")
        splits_file = os.path.join(meta, "splits.mat")
        for path, exists in ((image_dir, os.path.isdir), (label_dir, os.path.isdir),
                             (splits_file, os.path.isfile)):
            if not exists(path):
                raise UserError(
                    f"NYUv2 needs {path}, which does not exist. NYUv2 cannot be downloaded "
                    f"automatically: {root} (--data_root) must contain {LAYOUT}; {SOURCES}.")
        key = split + "Ndxs"
        try:
            idxs = scipy.io.loadmat(splits_file)[key].reshape(-1).astype(int)
        except Exception as e:
            raise UserError(f"Could not read {key} from {splits_file} ({type(e).__name__}: "
                            f"{e}). Use the splits.mat of the NYU Depth v2 labelled set, with "
                            f"trainNdxs and testNdxs.") from None
        if len(idxs) == 0:
            raise UserError(f"{key} in {splits_file} is empty; the NYUv2 {split} split has "
                            f"no images.")
        self.images = [os.path.join(image_dir, f"{i - 1}.png") for i in idxs]
        self.labels = [os.path.join(label_dir, f"new_nyu_class13_{i:04d}.png") for i in idxs]
        _missing("image", self.images, root)
        _missing("label", self.labels, root)

    @classmethod
    def decode_target(cls, label):
        """Class ids (any shape, 255 = void) -> uint8 RGB colours, shape (..., 3).

        Class c gets colour c + 1 (its value in the label files) and void colour 0
        (black), as in the reference."""
        label = torch.as_tensor(label).cpu().numpy().astype(np.int64)
        return cls.cmap[(label + 1) % 256]


def nyuv2(data_root, download=True, train=True, crop_size=128, resize=256):
    """The train (random crop and flip) or test set of NYUv2 in ``data_root``.
    ``download`` is ignored: NYUv2 has no automatic download."""
    if train:
        return NYUv2(data_root, "train", seg_transforms.train_transform(crop_size, resize))
    return NYUv2(data_root, "test", seg_transforms.test_transform(resize))
