"""data/split_caltech101.py on a generated Caltech101-like tree."""
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from datagen import load_split_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "data", "split_caltech101.py")
SIZES = {"BACKGROUND_Google": 9, "accordion": 12, "ant": 7, "yin_yang": 23}


split_caltech101 = load_split_module()


def make_tree(root, sizes=SIZES):
    for cls, n in sizes.items():
        folder = root / "101_ObjectCategories" / cls
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 6), (i, 0, 0)).save(folder / f"image_{i + 1:04d}.jpg")
    return root


def listing(root):
    """{part: {class: sorted file names}} of the split on disk."""
    base = root / "101_ObjectCategories_split"
    return {part: {cls: sorted(os.listdir(base / part / cls))
                   for cls in sorted(os.listdir(base / part))} for part in ("train", "test")}


def test_counts_and_partition(tmp_path):
    root = make_tree(tmp_path)
    result = split_caltech101.split(root)
    on_disk = listing(root)
    assert {p: {c: sorted(f) for c, f in d.items()} for p, d in result.items()} == on_disk
    for cls, n in SIZES.items():
        train, test = set(on_disk["train"][cls]), set(on_disk["test"][cls])
        assert len(test) == max(int(0.2 * n), 2)
        assert not train & test
        assert train | test == set(os.listdir(root / "101_ObjectCategories" / cls))
    assert os.listdir(root / "101_ObjectCategories" / "ant")  # copied, not moved


def test_deterministic_and_seed_dependent(tmp_path):
    a, b = make_tree(tmp_path / "a"), make_tree(tmp_path / "b")
    split_caltech101.split(a)
    split_caltech101.split(b)
    assert listing(a) == listing(b)
    split_caltech101.split(a)  # a re-run replaces the old split
    assert listing(a) == listing(b)
    split_caltech101.split(b, seed=2)
    assert listing(a) != listing(b)


def test_same_rng_calls_as_reference(tmp_path):
    """One generator seeded once, one sample(range(n), k) per class in (sorted) order."""
    import random

    root = make_tree(tmp_path)
    result = split_caltech101.split(root)
    random.seed(1)
    for cls in sorted(SIZES):
        n = SIZES[cls]
        test_idx = random.sample(list(range(n)), k=max(int(0.2 * n), 2))
        assert sorted(result["test"][cls]) == sorted(f"image_{i + 1:04d}.jpg" for i in test_idx)


def test_options(tmp_path):
    root = make_tree(tmp_path)
    result = split_caltech101.split(root, test_ratio=0.5, min_test=4)
    assert {c: len(f) for c, f in result["test"].items()} == {
        "BACKGROUND_Google": 4, "accordion": 6, "ant": 4, "yin_yang": 11}


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="101_ObjectCategories"):
        split_caltech101.split(tmp_path)
    run = subprocess.run([sys.executable, SCRIPT, "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "101_ObjectCategories does not exist" in run.stderr


def test_script_from_inside_data_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SCRIPT, data)
    make_tree(data / "caltech101")
    # default root: the caltech101 folder next to the script, whatever the CWD
    run = subprocess.run([sys.executable, "split_caltech101.py"], cwd=data,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    default = listing(data / "caltech101")

    other = make_tree(tmp_path / "elsewhere" / "caltech101")
    run = subprocess.run([sys.executable, "split_caltech101.py", "--root", str(other)],
                         cwd=data, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "4 classes: 41 train and 10 test images" in run.stdout
    assert listing(other) == default
