"""CIFAR-10/100 and Caltech101 loaders on tiny generated data sets in the real formats."""
import hashlib
import importlib.util
import os
import pickle
import sys
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dataloader import caltech, cifar  # noqa: E402
from utils.misc import UserError  # noqa: E402


# --- CIFAR ------------------------------------------------------------------------

def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root, cls, n_train=20, n_test=10, seed=0):
    """Write a tiny set in ``cls``'s on-disk format (the pickles torchvision reads).

    Returns the images (N, 3, 32, 32) and labels of the train and test sets, and the
    (file name, MD5) lists of the written files, shaped like ``cls``'s own.
    """
    rng = np.random.RandomState(seed)
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    is_100 = cls is datasets.CIFAR100
    num_classes = 100 if is_100 else 10
    written = {}
    for part, files, n in (("train", cls.train_list, n_train), ("test", cls.test_list, n_test)):
        images = rng.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
        labels = rng.randint(0, num_classes, n).tolist()
        written[part] = (images, labels)
        chunks = np.array_split(np.arange(n), len(files))
        for (name, _), idx in zip(files, chunks):
            entry = {"data": images[idx].reshape(len(idx), -1),
                     "filenames": [f"img_{i}.png" for i in idx]}
            if is_100:
                entry.update(fine_labels=[labels[i] for i in idx],
                             coarse_labels=[labels[i] // 5 for i in idx])
            else:
                entry.update(labels=[labels[i] for i in idx], batch_label=name)
            with open(folder / name, "wb") as f:
                pickle.dump(entry, f)
    with open(folder / cls.meta["filename"], "wb") as f:
        pickle.dump({cls.meta["key"]: [f"class_{i}" for i in range(num_classes)]}, f)
    checksums = dict(
        train_list=[[name, md5(folder / name)] for name, _ in cls.train_list],
        test_list=[[name, md5(folder / name)] for name, _ in cls.test_list],
        meta={**cls.meta, "md5": md5(folder / cls.meta["filename"])})
    return written, checksums


@pytest.fixture
def no_network(monkeypatch):
    """Make torchvision's download fail at once, as it does offline; records the calls."""
    calls = []

    def fail(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(datasets.cifar, "download_and_extract_archive", fail)
    return calls


CIFARS = [(cifar.cifar10, datasets.CIFAR10, 10), (cifar.cifar100, datasets.CIFAR100, 100)]


@pytest.mark.parametrize("build, cls, num_classes", CIFARS)
def test_cifar_reads_generated_set(tmp_path, monkeypatch, no_network, build, cls, num_classes):
    written, checksums = write_cifar(tmp_path, cls)
    for name, value in checksums.items():  # accept our files' MD5s in place of the official
        monkeypatch.setattr(cls, name, value)
    train_set, test_set = build(str(tmp_path))
    assert not no_network  # the files passed the check, so nothing was downloaded
    assert (len(train_set), len(test_set)) == (20, 10)
    assert len(train_set.classes) == num_classes
    for ds, part in ((train_set, "train"), (test_set, "test")):
        images, labels = written[part]
        assert ds.targets == labels
        assert all(0 <= y < num_classes for y in ds.targets)
        x, y = ds[3]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == labels[3]
    mean, std = torch.tensor(cifar.MEAN).view(3, 1, 1), torch.tensor(cifar.STD).view(3, 1, 1)
    for i in range(len(test_set)):
        pixels = (test_set[i][0] * std + mean) * 255
        assert torch.equal(pixels.round().to(torch.uint8), torch.from_numpy(written["test"][0][i]))


@pytest.mark.parametrize("build, cls, num_classes", CIFARS)
def test_cifar_rejects_files_that_fail_md5(tmp_path, no_network, build, cls, num_classes):
    write_cifar(tmp_path, cls)  # right format, but not the official files' MD5s
    with pytest.raises(UserError, match="MD5") as err:
        build(str(tmp_path))
    assert no_network == [cls.url]  # it tried to download the real set instead
    message = str(err.value)
    assert os.path.join(str(tmp_path), cls.base_folder) in message
    assert cls.filename in message
    with pytest.raises(UserError):
        build(str(tmp_path), download=False)


def test_cifar_missing_offline(tmp_path, no_network):
    with pytest.raises(UserError, match="cifar-10-batches-py") as err:
        cifar.cifar10(str(tmp_path))
    assert "cifar-10-python.tar.gz" in str(err.value) and "URLError" in str(err.value)


# --- Caltech101 -------------------------------------------------------------------

split_spec = importlib.util.spec_from_file_location(
    "split_caltech101", os.path.join(ROOT, "data", "split_caltech101.py"))
split_caltech101 = importlib.util.module_from_spec(split_spec)
split_spec.loader.exec_module(split_caltech101)

CALTECH = {"BACKGROUND_Google": 6, "Faces": 11, "ant": 8, "zebra": 10}


def make_caltech(data_root):
    rng = np.random.RandomState(0)
    for cls, n in CALTECH.items():
        folder = data_root / "caltech101" / "101_ObjectCategories" / cls
        folder.mkdir(parents=True)
        for i in range(n):
            h, w = rng.randint(20, 60, size=2)
            if i % 3 == 0:  # some Caltech images are greyscale
                img = Image.fromarray(rng.randint(0, 256, (h, w)).astype(np.uint8), "L")
            else:
                img = Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8), "RGB")
            img.save(folder / f"image_{i + 1:04d}.jpg")


def test_caltech_split_and_load(tmp_path):
    make_caltech(tmp_path)
    split_caltech101.split(tmp_path / "caltech101")
    train_set, test_set = caltech.caltech101(str(tmp_path))
    assert train_set.classes == test_set.classes == ["Faces", "ant", "zebra"]  # no background
    n = sum(v for k, v in CALTECH.items() if k != "BACKGROUND_Google")
    assert len(test_set) == 2 + 2 + 2 and len(train_set) + len(test_set) == n
    for ds in (train_set, test_set):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 128, 128) and 0 <= y < 3
            assert -1 <= x.min() and x.max() <= 1
    # the loop above read greyscale files too, as 3-channel tensors
    assert any(Image.open(path).mode == "L" for path, _ in train_set.samples + test_set.samples)


def test_caltech_not_split(tmp_path):
    make_caltech(tmp_path)
    with pytest.raises(UserError, match="split_caltech101.py"):
        caltech.caltech101(str(tmp_path))


def test_caltech_missing(tmp_path):
    with pytest.raises(UserError, match="101_ObjectCategories is missing") as err:
        caltech.caltech101(str(tmp_path))
    assert os.path.join(str(tmp_path), "caltech101", "101_ObjectCategories") in str(err.value)


def test_caltech_empty_split(tmp_path):
    (tmp_path / "caltech101" / "101_ObjectCategories_split" / "train").mkdir(parents=True)
    (tmp_path / "caltech101" / "101_ObjectCategories_split" / "test" / "ant").mkdir(parents=True)
    with pytest.raises(UserError, match="empty or incomplete"):
        caltech.Caltech101(str(tmp_path), train=True)
    with pytest.raises(UserError, match="empty or incomplete"):
        caltech.Caltech101(str(tmp_path), train=False)
