"""Data sets and loaders: ``get_test_loader(args)`` (all a DFAD run reads) and
``get_train_loader(args, batch_size)`` (teacher training only).

Each data set is a builder ``(data_root, download, train) -> dataset`` plus the mean
and std its images are normalised with (to show them de-normalised). A data set may be
normalised otherwise for teachers trained so: ``normalized_as="cmi"`` (CMI's benchmark
networks, network/cifar_zoo.py) reads CIFAR-100 with its own statistics, where the
reference's networks read it with CIFAR-10's.
"""
import importlib
import os
from collections import namedtuple

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from utils.runtime.signals import Loader

# module: the submodule holding the data set (imported when the data set is used); build
# and contents: names of its functions (contents(data_root): {file: sha256} of a data set
# small enough to hash on every run, for its records); classes: its class count, which
# scripts, teacher training and loaders read here; others: {normalisation: names of its
# (mean, std)} beside the module's MEAN and STD.
DatasetInfo = namedtuple("DatasetInfo", "module build classes in_memory others contents", defaults=[{}, None])

DATASETS = {
    "mnist": DatasetInfo("mnist", "mnist", 10, in_memory=False, contents="mnist_contents"),
    "digits": DatasetInfo("mnist", "digits", 10, in_memory=True, contents="digits_contents"),
    "cifar10": DatasetInfo("cifar", "cifar10", 10, in_memory=False),
    "cifar100": DatasetInfo("cifar", "cifar100", 100, in_memory=False,
                            others={"cmi": ("CIFAR100_MEAN", "CIFAR100_STD")}),
    "caltech101": DatasetInfo("caltech", "caltech101", 101, in_memory=False),
    "camvid": DatasetInfo("camvid", "camvid", 11, in_memory=False),
    "nyuv2": DatasetInfo("nyu", "nyuv2", 13, in_memory=False),
}


def num_classes(name):
    """How many classes data set ``name`` has."""
    return DATASETS[name].classes


def _part(info, value):
    """A function of the data set's module named ``value`` (``value`` itself if it is one)."""
    if value is None or callable(value):
        return value
    return getattr(importlib.import_module(f".{info.module}", __name__), value)


def get_dataset(name, data_root="data", train=True, download=True, normalized_as="reference"):
    """One split of data set ``name``; missing data is downloaded where the data set allows."""
    info = DATASETS[name]
    build = _part(info, info.build)
    if normalized_as in info.others:
        return build(data_root, download, train, statistics=normalization(name, normalized_as))
    return build(data_root, download, train)


def normalization(name, normalized_as="reference"):
    """(mean, std) of data set ``name``'s inputs, to de-normalise them for display."""
    info = DATASETS[name]
    module = importlib.import_module(f".{info.module}", __name__)
    mean, std = info.others.get(normalized_as, ("MEAN", "STD"))
    return getattr(module, mean), getattr(module, std)


def data_record(name, data_root):
    """What a run read, for its record: the data set, its folder (relative to the project,
    see ``records.portable``) and a SHA-256 per file where the data set is small (None: too
    large to hash on every run)."""
    from utils.reporting.records import portable
    info = DATASETS.get(name)
    contents = _part(info, info.contents)(data_root) if info and info.contents else None
    folder = None if name == "digits" else portable(os.path.abspath(data_root) if name in DATASETS else name)
    return {"dataset": name, "folder": folder, "sha256": contents}


def _loader_options(args):
    workers = 0 if DATASETS[args.dataset].in_memory else args.num_workers
    use_cuda = torch.cuda.is_available() and not args.no_cuda
    return dict(num_workers=workers, pin_memory=use_cuda, persistent_workers=workers > 0)


def get_train_loader(args, batch_size, normalized_as="reference"):
    """Shuffled batches of this process's ``batch_size`` from the real training set."""
    train_set = get_dataset(args.dataset, args.data_root, train=True, normalized_as=normalized_as)
    if dist.is_initialized():  # torchrun: each process reads its own share of every epoch
        sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)
        return Loader(train_set, batch_size=batch_size, sampler=sampler, **_loader_options(args))
    # A generator of its own makes the shuffle order resumable.
    return Loader(train_set, batch_size=batch_size, shuffle=True,
                  generator=torch.Generator().manual_seed(args.seed), **_loader_options(args))


def get_transfer_set(args, normalized_as="reference"):
    """--method kd: the training split of --transfer_set (default: --dataset's, KD-ORI), or
    the images of a folder, shaped and normalised like --dataset's test images."""
    name = args.transfer_set or args.dataset
    if name in DATASETS:
        return get_dataset(name, args.data_root, train=True, normalized_as=normalized_as)
    from .folder import ImageFolderTransferSet
    image = get_dataset(args.dataset, args.data_root, train=False)[0][0]
    return ImageFolderTransferSet(name, image.shape[0], image.shape[1:], *normalization(args.dataset, normalized_as))


def get_test_loader(args, normalized_as="reference"):
    """The real test set in order, ``args.test_batch_size`` at a time."""
    test_set = get_dataset(args.dataset, args.data_root, train=False, normalized_as=normalized_as)
    # A generator of its own: iterating a loader draws a seed from the global RNG otherwise,
    # and every evaluation would shift the noise the game draws next.
    return Loader(test_set, batch_size=args.test_batch_size, shuffle=False,
                  generator=torch.Generator().manual_seed(args.seed), **_loader_options(args))


def experiment_data(args, normalized_as="reference"):
    """What a DFAD experiment reads of its data set: the test loader, the transfer set of
    --method kd (loaded only if it is used) and the normalization, to show images; all
    normalised as the teacher was trained (``normalized_as``)."""
    mean, std = normalization(args.dataset, normalized_as)
    return dict(test_loader=get_test_loader(args, normalized_as),
                transfer_set=lambda: get_transfer_set(args, normalized_as), mean=mean, std=std)
