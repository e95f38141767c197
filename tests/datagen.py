"""Tiny data sets written in the real on-disk formats of each data set, for the tests."""
import hashlib
import importlib.util
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from torchvision import datasets

ROOT = Path(__file__).resolve().parents[1]


# --- MNIST (IDX files, as torchvision extracts them) --------------------------------

def write_idx(path, array):
    """Write ``array`` in the IDX format of the original MNIST files."""
    magic = {1: 0x801, 3: 0x803}[array.ndim]
    with open(path, "wb") as f:
        f.write(struct.pack(">i", magic))
        f.write(struct.pack(f">{array.ndim}i", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root, n_train=30, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        data[prefix] = (images, labels)
    return data


# --- CIFAR (python pickle batches) ---------------------------------------------------

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


def accept_generated_cifar(monkeypatch, cls, checksums):
    """Let torchvision accept the generated files: their MD5s replace the official ones."""
    for name, value in checksums.items():
        monkeypatch.setattr(cls, name, value)


# --- Caltech101 (a tree of JPEGs) ---------------------------------------------------

def load_split_module():
    """data/split_caltech101.py, imported by path (data/ is not a package)."""
    spec = importlib.util.spec_from_file_location("split_caltech101", ROOT / "data" / "split_caltech101.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

CALTECH = {"BACKGROUND_Google": 6, "Faces": 11, "ant": 8, "zebra": 10}


def write_caltech(data_root):
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


# --- CamVid and NYUv2 (PNG images and label maps) -----------------------------------

H, W = 40, 60


def colour_of(label):
    """An RGB image encoding the label: red 20*l, green 2*l**2. A blend of different
    labels (from bilinear resizing) breaks the green = 2*(red/20)**2 relation."""
    label = np.asarray(label, dtype=np.int64)
    return np.stack([label * 20, 2 * label ** 2, np.full_like(label, 200)], -1).astype(np.uint8)


def random_label(rng, values):
    # Blocks of 4x4 pixels, so nearest resizing keeps each colour next to its label.
    small = rng.choice(values, size=(H // 4, W // 4)).astype(np.uint8)
    return np.kron(small, np.ones((4, 4), dtype=np.uint8))


def save(array, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def write_camvid(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for i in range(n):
            label = random_label(rng, np.arange(12))  # 0-10 classes, 11 void
            save(colour_of(label), str(tmp_path / split / f"0001TP_{i:06d}.png"))
            save(label, str(tmp_path / f"{split}annot" / f"0001TP_{i:06d}.png"))
    return tmp_path


N_IMAGES, TRAIN_IDX, TEST_IDX = 10, [1, 3, 4, 6, 7, 10], [2, 5, 8]


def write_nyu(tmp_path):
    """Image ``k`` has label values 1 + k % 13 (plus void stripes), so the pairing of
    image file to label file can be checked."""
    meta = tmp_path / "nyuv2-meta-data"
    meta.mkdir()
    scipy.io.savemat(str(meta / "splits.mat"),
                     {"trainNdxs": np.array(TRAIN_IDX)[:, None],
                      "testNdxs": np.array(TEST_IDX)[:, None]})
    for idx in range(1, N_IMAGES + 1):
        label = np.full((H, W), 1 + (idx - 1) % 13, dtype=np.uint8)
        label[:, :8] = 0  # void
        image = colour_of(label)
        save(image, str(tmp_path / "480_640" / "IMAGE" / f"{idx - 1}.png"))
        split = "train" if idx in TRAIN_IDX else "test"
        save(label, str(meta / f"{split}_labels_13" / f"new_nyu_class13_{idx:04d}.png"))
    return tmp_path


def both_splits(builder, *args, **kwargs):
    """(train set, test set) from a dataloader builder ``(data_root, ..., train=...)``."""
    return builder(*args, train=True, **kwargs), builder(*args, train=False, **kwargs)
