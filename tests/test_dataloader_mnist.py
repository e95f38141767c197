"""MNIST (torchvision, files in its real on-disk layout), digits, and the loader factory."""
import os
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision

import dataloader
import train_teacher
from dataloader import mnist as mnist_module
from utils.runtime.errors import UserError

from datagen import both_splits, write_mnist

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST"


@pytest.fixture
def no_download(monkeypatch):
    """Fail any download at once, as an offline machine would."""
    def refuse(*args, **kwargs):
        raise URLError("offline (test)")
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", refuse)


def test_mnist_reads_idx_files_without_network(tmp_path, no_download):
    written = write_mnist(tmp_path)
    train, test = both_splits(mnist_module.mnist, str(tmp_path), download=True)
    assert (len(train), len(test)) == (30, 12)
    image, label = test[3]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert label == written["t10k"][1][3]
    # the transform is Resize(32) + ToTensor + Normalize(0.1307, 0.3081)
    expected = torchvision.transforms.functional.resize(
        torch.from_numpy(written["t10k"][0][3]).float()[None] / 255, [32, 32], antialias=True)
    torch.testing.assert_close(image * 0.3081 + 0.1307, expected, atol=0.01, rtol=0)


def test_missing_mnist_names_the_folder_and_files(tmp_path, no_download):
    with pytest.raises(UserError) as error:
        mnist_module.mnist(str(tmp_path), download=True)
    message = str(error.value)
    assert os.path.join(str(tmp_path), "MNIST", "raw") in message
    for name in mnist_module.MNIST_FILES:
        assert name in message
    assert "--dataset digits" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_mnist_files_are_named_as_damaged_not_missing(tmp_path, no_download, damage):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes({"truncated": data[:1000], "garbage": b"garbage" * 10, "empty": b""}[damage])
    with pytest.raises(UserError) as error:
        mnist_module.mnist(str(tmp_path), download=True, train=False)
    assert "are damaged" in str(error.value) and "not found" not in str(error.value)
    assert error.value.__cause__ is not None  # the cause is kept for whoever debugs it


def test_a_bug_in_loading_mnist_is_not_called_a_missing_data_set(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise TypeError("a bug, not a user's file")
    monkeypatch.setattr(torchvision.datasets, "MNIST", bug)
    with pytest.raises(TypeError, match="a bug"):
        mnist_module.mnist(str(tmp_path), download=True)


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = (dataloader.get_dataset("digits", train=split) for split in (True, False))
    assert (len(train), len(test)) == (1437, 360)
    assert set(train.indices).isdisjoint(test.indices)
    assert len(set(train.indices) | set(test.indices)) == 1797
    counts = torch.bincount(test.targets, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # about 20% of every class
    again = dataloader.get_dataset("digits", train=False)
    assert np.array_equal(again.indices, test.indices) and torch.equal(again.data, test.data)
    image, _ = train[0]
    assert image.shape == (1, 32, 32)
    assert torch.isclose(image.min(), torch.tensor(-0.1307 / 0.3081), atol=1e-5)  # black = 0


def test_loaders_batch_as_asked():
    args = train_teacher.get_args_parser().parse_args(["--dataset", "digits", "--test_batch_size", "100"])
    train_loader, test_loader = dataloader.get_train_loader(args, 32), dataloader.get_test_loader(args)
    images, labels = next(iter(train_loader))
    assert images.shape == (32, 1, 32, 32) and labels.shape == (32,)
    assert sum(len(y) for _, y in test_loader) == 360


@pytest.mark.real_mnist
@pytest.mark.skipif(not (SHARED_MNIST / "raw").is_dir(), reason="real MNIST not available here")
def test_real_mnist(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (SHARED_MNIST / "raw").iterdir():
        os.symlink(f, raw / f.name)
    train, test = (mnist_module.mnist(str(tmp_path), download=True, train=split)  # verified, extracted,
                   for split in (True, False))                                 # no network
    assert (len(train), len(test)) == (60000, 10000)
    assert torch.bincount(train.targets).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(test.targets).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
