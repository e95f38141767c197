"""CIFAR-10/100 and Caltech101 loaders on tiny generated data sets in the real formats."""
import os
import urllib.error

import pytest
import torch
from datagen import (
    CALTECH,
    accept_generated_cifar,
    both_splits,
    load_split_module,
    write_caltech,
    write_cifar,
)
from PIL import Image
from torchvision import datasets

from dataloader import caltech, cifar
from utils.runtime.errors import UserError

# --- CIFAR ------------------------------------------------------------------------

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
    accept_generated_cifar(monkeypatch, cls, checksums)
    train_set, test_set = both_splits(build, str(tmp_path))
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


def test_cifar100_is_normalised_as_the_teacher_was_trained(tmp_path, monkeypatch, no_network):
    """The reference's networks read CIFAR-100 with CIFAR-10's statistics, CMI's with its own."""
    import dataloader
    import DFAD_cifar
    from network import cifar_zoo
    written, checksums = write_cifar(tmp_path, datasets.CIFAR100)
    accept_generated_cifar(monkeypatch, datasets.CIFAR100, checksums)
    pixels = torch.from_numpy(written["test"][0][0]).float() / 255
    for teacher, (mean, std) in (("resnet34_8x", (cifar.MEAN, cifar.STD)),
                                 ("wrn40_2", (cifar.CIFAR100_MEAN, cifar.CIFAR100_STD))):
        args = DFAD_cifar.get_args_parser().parse_args(["--dataset", "cifar100", "--teacher", teacher,
                                                        "--data_root", str(tmp_path), "--num_workers", "0"])
        data = dataloader.experiment_data(args, cifar_zoo.NORMALIZATION[args.teacher])
        expected = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        torch.testing.assert_close(data["test_loader"].dataset[0][0], expected)
        assert (data["mean"], data["std"]) == (mean, std)


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

split_caltech101 = load_split_module()


def test_caltech_split_and_load(tmp_path):
    write_caltech(tmp_path)
    split_caltech101.split(tmp_path / "caltech101")
    train_set, test_set = both_splits(caltech.caltech101, str(tmp_path))
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
    write_caltech(tmp_path)
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


def test_digits_are_scikit_learns_with_its_seeded_stratified_split():
    """The digits reader skips scikit-learn's import: its arrays and its stored split are
    load_digits' and train_test_split's (80/20, stratified, seed 0)."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from dataloader import mnist
    reference = load_digits()
    images, targets = mnist.digits_arrays()
    assert images.dtype == reference.images.dtype and targets.dtype == reference.target.dtype
    assert np.array_equal(images, reference.images) and np.array_equal(targets, reference.target)
    train, test = train_test_split(np.arange(len(targets)), test_size=0.2, stratify=targets, random_state=0)
    assert np.array_equal(mnist.Digits(train=False).indices, np.sort(test))
    assert np.array_equal(mnist.Digits(train=True).indices, np.sort(train))
    assert len(mnist.Digits(train=False)) == 360 and len(mnist.Digits(train=True)) == 1437
