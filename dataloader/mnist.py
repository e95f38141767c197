"""MNIST (torchvision) and scikit-learn's handwritten digits, both as 1x32x32 tensors."""
import importlib.util
import os
import re
from urllib.error import HTTPError, URLError

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from utils.runtime.errors import UserError

from .checks import check_labels

MEAN, STD = (0.1307,), (0.3081,)
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def mnist_transform():
    from torchvision import (
        transforms,  # imported where used: digits runs need no torchvision
    )
    return transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor(),
                               transforms.Normalize(MEAN, STD)])


def mnist(data_root, download=True, train=True):
    """The train or test set of MNIST under ``<data_root>/MNIST``.

    Downloads when the files are missing and the network allows; archives already in
    ``MNIST/raw`` are checked against their MD5s and extracted without a download.
    """
    raw = os.path.join(data_root, "MNIST", "raw")
    extracted = all(os.path.isfile(os.path.join(raw, name.removesuffix(".gz"))) for name in MNIST_FILES)
    from torchvision import datasets
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


# Which of the 1,797 digits are the test set: the split train_test_split(test_size=0.2,
# stratify=targets, random_state=0) of scikit-learn 1.9 gives, as a bit mask (one bit a digit,
# in file order). Stored rather than recomputed: importing scikit-learn (and scipy.stats with
# it) costs about 3 s of every digits run's start, and a stored split cannot move with a
# future scikit-learn. tests/test_dataloader_cls.py checks it against train_test_split.
DIGITS_TEST_MASK = (
    "000004883524104000064100934205001a00080100240028062c12001000940a009019120420f8a0028110a000080a882044"
    "1524494240a00a0000004004d80000818020004805c400104008a0100005404800301000020ec409000224840083a8013c20"
    "a6980a0000000b08400804a0184802024041c1008004404684376a810216004480004042a0a4180a5000840b8561c6081080"
    "08004c80c02004068e00010882008100380803c008190000100e01008410a0210033282904c044c080680e01028300820088"
    "22a6402c24042108a860809081a00c02820242120138a41500")


def digits_arrays():
    """scikit-learn's digits as ``load_digits`` returns them (images (1797, 8, 8) float64,
    targets int64), read from the file it reads, without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise UserError("The digits data set is scikit-learn's, and scikit-learn is not installed. "
                        "Install the project's requirements: pip install -r requirements.txt")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def digits_test_mask(count):
    return np.unpackbits(np.frombuffer(bytes.fromhex(DIGITS_TEST_MASK), np.uint8))[:count].astype(bool)


class Digits(Dataset):
    """scikit-learn's 1,797 real 8x8 handwritten digits, upscaled to 32x32.

    A fixed, seeded, stratified 80/20 split (1,437 train / 360 test, ``DIGITS_TEST_MASK``)
    makes results comparable across runs and machines. Images are normalised like MNIST.
    """

    def __init__(self, train=True):
        images, targets = digits_arrays()
        test = digits_test_mask(len(targets))
        idx = np.flatnonzero(~test if train else test)
        images = torch.from_numpy(images[idx]).float().unsqueeze(1) / 16.0  # ink in [0, 1]
        images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
        self.data = (images.clamp(0, 1) - MEAN[0]) / STD[0]
        self.targets = torch.from_numpy(targets[idx]).long()
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
    images, targets = digits_arrays()
    return {"sklearn.datasets.load_digits": hashlib.sha256(
        np.ascontiguousarray(images).tobytes() + np.ascontiguousarray(targets).tobytes()).hexdigest()}


def digits(data_root=None, download=False, train=True):
    return Digits(train=train)
