"""Split Caltech101 into train and test folders, following the DFAD reference.

Copies ``<root>/101_ObjectCategories/<class>/*`` into
``<root>/101_ObjectCategories_split/{train,test}/<class>/``. Per class, of its ``n``
files ``max(int(test_ratio * n), min_test)`` go to test, picked by
``sample(range(n), k)`` from one ``random`` generator seeded once with ``seed`` and
shared by all classes in turn, exactly as the reference did. Every folder is split,
BACKGROUND_Google included (the reference did too; the data loader ignores it).

One deliberate difference: the reference visited classes and files in ``os.listdir``
order, which depends on the file system, so its split was not reproducible across
machines. Here both are sorted by name: the same seed gives the same split everywhere
(it need not be the one the authors got on their disk).

Usage, from inside ``data/``: ``python split_caltech101.py`` (root defaults to the
``caltech101`` folder next to this script), or from anywhere
``python data/split_caltech101.py --root <data_root>/caltech101``.
"""
import argparse
import os
import random
import shutil

SOURCE, SPLIT = "101_ObjectCategories", "101_ObjectCategories_split"
DEFAULT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "caltech101")


def split(root, test_ratio=0.2, min_test=2, seed=1):
    """Split ``<root>/101_ObjectCategories``; returns ``{"train"|"test": {class: [files]}}``.

    An existing ``<root>/101_ObjectCategories_split`` is replaced: files left from a
    split with other settings would otherwise end up in both halves.
    """
    src, dst = os.path.join(root, SOURCE), os.path.join(root, SPLIT)
    if not os.path.isdir(src):
        raise FileNotFoundError(
            f"{src} does not exist. Download Caltech101 "
            f"(https://data.caltech.edu/records/mzrjq-6wc02), extract its {SOURCE} folder "
            f"into {root}, or pass --root <folder that holds {SOURCE}>.")
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    rng = random.Random(seed)
    result = {"train": {}, "test": {}}
    for cls in sorted(e.name for e in os.scandir(src) if e.is_dir()):
        files = sorted(e.name for e in os.scandir(os.path.join(src, cls)) if e.is_file())
        k = max(int(test_ratio * len(files)), min_test)
        if k > len(files):
            raise ValueError(f"class {cls} has {len(files)} files, fewer than the "
                             f"{k} test images asked for")
        test_idx = set(rng.sample(range(len(files)), k))
        for i, name in enumerate(files):
            part = "test" if i in test_idx else "train"
            os.makedirs(os.path.join(dst, part, cls), exist_ok=True)
            shutil.copy2(os.path.join(src, cls, name), os.path.join(dst, part, cls, name))
            result[part].setdefault(cls, []).append(name)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Split Caltech101 into train/test folders (per class 20% test, "
                    "at least 2), as the DFAD reference did.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root", default=DEFAULT_ROOT,
                        help=f"folder that holds {SOURCE}; the split goes into <root>/{SPLIT}")
    parser.add_argument("--test_ratio", type=float, default=0.2,
                        help="fraction of each class that goes to the test set")
    parser.add_argument("--min_test", type=int, default=2,
                        help="least number of test images per class")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    args = parser.parse_args(argv)
    try:
        result = split(args.root, args.test_ratio, args.min_test, args.seed)
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    count = {part: sum(map(len, classes.values())) for part, classes in result.items()}
    classes = set(result["train"]) | set(result["test"])
    print(f"{len(classes)} classes: {count['train']} train and {count['test']} "
          f"test images in {os.path.join(args.root, SPLIT)}")


if __name__ == "__main__":
    main()
