"""Joint image/label transforms for segmentation, built on torchvision.transforms.v2.

A transform is called as ``transform(image, label)``: ``image`` a PIL image (or a
uint8 CHW tensor), ``label`` a PIL image or an HxW integer array of class ids (255 =
ignore). It returns a float32 image tensor (3, H, W) normalised with MEAN/STD and an
int64 label tensor (H, W). v2 resizes masks with NEAREST interpolation by itself.
"""
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .checks import open_image

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IGNORE_INDEX = 255


def _to_tv_tensors(image, label):
    if not isinstance(image, torch.Tensor):
        image = TF.pil_to_tensor(image.convert("RGB"))
    label = torch.as_tensor(np.asarray(label))
    # Class ids stay < 256, so uint8 masks lose nothing and resize/pad support them.
    return tv_tensors.Image(image), tv_tensors.Mask(label.to(torch.uint8))


def _to_plain_tensors(image, label):
    return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)


def _compose(*geometric):
    return v2.Compose([
        _to_tv_tensors,
        *geometric,
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(MEAN, STD),  # v2 leaves masks untouched
        _to_plain_tensors,
    ])


def train_transform(crop_size=128, resize=256):
    """Shorter side to ``resize``, random ``crop_size`` crop (padded where the image is
    smaller: image with 0, label with 255), random horizontal flip, normalise."""
    return _compose(
        v2.Resize(resize),
        v2.RandomCrop(crop_size, pad_if_needed=True,
                      fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
        v2.RandomHorizontalFlip(),
    )


def test_transform(resize=256):
    """Shorter side to ``resize``, normalise."""
    return _compose(v2.Resize(resize))


class LabelledImages(torch.utils.data.Dataset):
    """Pairs of image and label-map files; ``label_lut`` maps stored label values to
    class ids (255 = ignored). Subclasses fill ``images`` and ``labels``."""

    label_lut = np.arange(256, dtype=np.uint8)

    def __init__(self, transform=None):
        self.transform = transform
        self.images, self.labels = [], []

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = open_image(self.images[i], "RGB")
        label = self.label_lut[np.minimum(np.asarray(open_image(self.labels[i])), 255)]
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label
