"""MNIST (torchvision) and scikit-learn's handwritten digits, both as 1x32x32 tensors."""
import os
import re
from urllib.error import HTTPError, URLError

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import datasets, transforms

from utils.runtime.errors import UserError

from .checks import check_labels

MEAN, STD = (0.1307,), (0.3081,)
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def mnist_transform():
    return transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor(),
                               transforms.Normalize(MEAN, STD)])


def mnist(data_root, download=True, train=True):
    """The train or test set of MNIST under ``<data_root>/MNIST``.

    Downloads when the files are missing and the network allows; archives already in
    ``MNIST/raw`` are checked against their MD5s and extracted without a download.
    """
    raw = os.path.join(data_root, "MNIST", "raw")
    extracted = all(os.path.isfile(os.path.join(raw, name.removesuffix(".gz"))) for name in MNIST_FILES)
    try:
        dataset = datasets.MNIST(data_root, train=train, download=download, transform=mnist_transform())
    except (RuntimeError, OSError, AssertionError, ValueError, EOFError) as e:
        if extracted:  # torchvision read the files it had extracted, and they are damaged
            raise UserError(
                f"MNIST's files in {raw} are damaged ({type(e).__name__}: {first_line(e)}). Delete the "
                f"extracted files there (those without .gz), so that the archives are checked and "
                f"extracted again, or put the four original files there ({', '.join(MNIST_FILES)}).") from e
        if not isinstance(e, (RuntimeError, OSError)):
            raise
        raise UserError(
            f"MNIST was not found in {raw} and could not be downloaded ({download_failure(e)}). "
            f"Put the four original files there ({', '.join(MNIST_FILES)}), or "
            f"use --dataset digits, which needs no download.") from e
    name = "train-labels-idx1-ubyte" if train else "t10k-labels-idx1-ubyte"
    check_labels(dataset.targets, 10, os.path.join(dataset.raw_folder, name),
                 fix=f"Put the original {name}.gz into {dataset.raw_folder} and delete {name}, "
                     f"so it is extracted again.")
    return dataset


def first_line(error):
    lines = str(error).splitlines()
    return lines[0] if lines else ""


def download_failure(error):
    """Why a download failed, in one line. torchvision's message names the file on its
    first line and each mirror's error on later ones; a URLError carries its reason
    (no network, a refused connection, an HTTP status); either may also be chained."""
    lines = str(error).splitlines()
    reasons = [_reason(e) for e in _chain(error) if isinstance(e, URLError)]
    reasons += [_reason(line) for line in lines[1:] if not line.startswith("Tried ")]
    reasons = list(dict.fromkeys(r for r in reasons if r))
    head = type(error).__name__ if isinstance(error, URLError) or not lines else lines[0].rstrip(":")
    if not reasons:
        return f"{type(error).__name__}: {head}" if lines else head
    return f"{head}: {'; '.join(reasons)}"


def _chain(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _reason(error):
    """'<urlopen error [Errno -3] Temporary failure in name resolution>' and URLError(gaierror)
    alike read 'Temporary failure in name resolution'."""
    if isinstance(error, HTTPError):
        return str(error)
    if isinstance(error, URLError):
        error = error.reason if isinstance(error.reason, str) else (
            getattr(error.reason, "strerror", None) or str(error.reason))
    text = str(error).strip()
    text = re.sub(r"^<urlopen error (.*)>$", r"\1", text)
    return re.sub(r"^\[Errno -?\d+\] ", "", text)


class Digits(Dataset):
    """scikit-learn's 1,797 real 8x8 handwritten digits, upscaled to 32x32.

    A fixed, seeded, stratified 80/20 split (1,437 train / 360 test) makes results
    comparable across runs and machines. Images are normalised like MNIST.
    """

    SPLIT_SEED = 0

    def __init__(self, train=True):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        indices = np.arange(len(digits.target))
        train_idx, test_idx = train_test_split(indices, test_size=0.2, stratify=digits.target,
                                               random_state=self.SPLIT_SEED)
        idx = np.sort(train_idx if train else test_idx)
        images = torch.from_numpy(digits.images[idx]).float().unsqueeze(1) / 16.0  # ink in [0, 1]
        images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
        self.data = (images.clamp(0, 1) - MEAN[0]) / STD[0]
        self.targets = torch.from_numpy(digits.target[idx]).long()
        self.indices = idx

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.data[i], self.targets[i]


def mnist_contents(data_root):
    """SHA-256 of each of MNIST's four files as the loader reads them (extracted, else .gz)."""
    from utils.reporting.records import file_sha256
    raw = os.path.join(data_root, "MNIST", "raw")
    found = {}
    for name in MNIST_FILES:
        read = name.removesuffix(".gz") if os.path.isfile(os.path.join(raw, name.removesuffix(".gz"))) else name
        found[read] = file_sha256(os.path.join(raw, read))
    return found


def digits_contents(data_root=None):
    """SHA-256 of scikit-learn's digits arrays (images, then targets) as the loader reads them."""
    import hashlib
    from sklearn.datasets import load_digits
    digits = load_digits()
    return {"sklearn.datasets.load_digits": hashlib.sha256(
        np.ascontiguousarray(digits.images).tobytes() + np.ascontiguousarray(digits.target).tobytes()).hexdigest()}


def digits(data_root=None, download=False, train=True):
    return Digits(train=train)
