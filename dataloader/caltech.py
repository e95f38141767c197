"""Caltech101, split by ``data/split_caltech101.py``, as 3x128x128 tensors."""
import os

from torchvision import datasets, transforms

from utils.runtime.errors import UserError

from .checks import open_rgb

MEAN, STD = (0.5,) * 3, (0.5,) * 3
ORIGINAL, SPLIT = "101_ObjectCategories", "101_ObjectCategories_split"
BACKGROUND = "BACKGROUND_Google"  # clutter, not an object class


def train_transform():
    return transforms.Compose([transforms.Resize(128), transforms.RandomCrop(128),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                               transforms.Normalize(MEAN, STD)])


def test_transform():
    return transforms.Compose([transforms.Resize(128), transforms.CenterCrop(128),
                               transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


class Caltech101(datasets.ImageFolder):
    """``<data_root>/caltech101/101_ObjectCategories_split/{train,test}/<class>/*.jpg``.

    The split script copies BACKGROUND_Google like any folder, but, as in the reference,
    it is not a class here: the 101 object classes are numbered in sorted name order.
    Images are read as RGB (some Caltech images are greyscale).
    """

    def __init__(self, data_root, train=True, transform=None):
        base = os.path.join(data_root, "caltech101")
        folder = os.path.join(base, SPLIT, "train" if train else "test")
        if not os.path.isdir(folder):
            if os.path.isdir(os.path.join(base, ORIGINAL)):
                raise UserError(
                    f"Caltech101 has not been split into train and test sets yet: {folder} "
                    f"is missing. Run `cd data && python split_caltech101.py` (or "
                    f"`python data/split_caltech101.py --root {base}`), which copies "
                    f"{os.path.join(base, ORIGINAL)} into {os.path.join(base, SPLIT)}.")
            raise UserError(
                f"Caltech101 was not found: {os.path.join(base, ORIGINAL)} is missing. "
                f"Download Caltech101 (https://data.caltech.edu/records/mzrjq-6wc02), "
                f"extract its 101_ObjectCategories folder there, then run "
                f"`python data/split_caltech101.py --root {base}`.")
        try:
            super().__init__(folder, transform=transform, loader=open_rgb)
        except FileNotFoundError as e:  # no class folders, or a class without images
            raise UserError(
                f"The Caltech101 split in {folder} is empty or incomplete ({e}). Run "
                f"`python data/split_caltech101.py --root {base}` again to rebuild it.") from None

    def find_classes(self, directory):
        classes = sorted(e.name for e in os.scandir(directory)
                         if e.is_dir() and e.name != BACKGROUND)
        if not classes:
            raise FileNotFoundError(f"no class folders in {directory}")
        return classes, {c: i for i, c in enumerate(classes)}


def caltech101(data_root, download=True, train=True):
    """The train or test set of Caltech101. ``download`` is accepted for the common
    builder signature, but the images must be put in place by hand (see the errors)."""
    return Caltech101(data_root, train=train, transform=train_transform() if train else test_transform())
