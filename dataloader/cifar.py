"""CIFAR-10 and CIFAR-100 through torchvision, as 3x32x32 tensors.

Files are always accepted only after torchvision's own MD5 check of the official
batches; there is no switch that turns it off. Tests that need a tiny generated set in
the real on-disk format write it and then register *its* MD5s in place of the official
ones, with pytest's ``monkeypatch`` on the torchvision class (``train_list``,
``test_list`` and ``meta`` hold the expected file names and MD5s). So the code path a
test runs is exactly the one a user runs, checksum verification included, and nothing
in this module can weaken it.
"""
import os

from torchvision import datasets, transforms

from utils.runtime.errors import UserError

from .checks import check_labels

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # CIFAR-10's; the reference's CIFAR-100 too
# CIFAR-100's own statistics: CMI's benchmark teachers were trained with them, so its
# networks read CIFAR-100 so normalised ("cmi" in dataloader.DATASETS, network/cifar_zoo.py)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


def train_transform(mean=MEAN, std=STD):
    return transforms.Compose([transforms.RandomCrop(32, padding=4),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                               transforms.Normalize(mean, std)])


def test_transform(mean=MEAN, std=STD):
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])


def _build(cls, name, data_root, download, train, statistics):
    try:
        dataset = cls(data_root, train=train, download=download,
                      transform=train_transform(*statistics) if train else test_transform(*statistics))
    except (RuntimeError, OSError) as e:  # missing or failing the MD5 check (RuntimeError), no network (URLError)
        folder = os.path.join(data_root, cls.base_folder)
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        raise UserError(
            f"{name} was not found in {folder}, or its files failed torchvision's MD5 "
            f"check, and it could not be downloaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Download {cls.filename} from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html and put it in {data_root} (it is "
            f"checked and extracted on the next run), or extract it there yourself so that "
            f"{folder} holds {', '.join(files)}.") from e
    from . import num_classes
    check_labels(dataset.targets, num_classes("cifar100" if cls is datasets.CIFAR100 else "cifar10"),
                 os.path.join(data_root, cls.base_folder),
                 fix=f"Extract {cls.filename} again.")
    return dataset


def cifar10(data_root, download=True, train=True, statistics=(MEAN, STD)):
    """The train or test set of CIFAR-10 under ``<data_root>/cifar-10-batches-py``."""
    return _build(datasets.CIFAR10, "CIFAR-10", data_root, download, train, statistics)


def cifar100(data_root, download=True, train=True, statistics=(MEAN, STD)):
    """The train or test set of CIFAR-100 under ``<data_root>/cifar-100-python``, normalised
    with ``statistics`` (mean, std): by default CIFAR-10's, as the reference does."""
    return _build(datasets.CIFAR100, "CIFAR-100", data_root, download, train, statistics)
