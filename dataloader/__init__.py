"""Data sets and loaders. ``get_dataloader(args) -> (train_loader, test_loader)``.

Each data set is a builder ``(data_root, download) -> (train_set, test_set)`` plus the
mean and std its images are normalised with (to show them de-normalised).
"""
from collections import namedtuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from utils.interrupt import ignore_stop_signals

from . import caltech as _caltech
from . import camvid as _camvid
from . import cifar as _cifar
from . import mnist as _mnist
from . import nyu as _nyu

DatasetInfo = namedtuple("DatasetInfo", "build mean std in_memory")

DATASETS = {
    "mnist": DatasetInfo(_mnist.mnist, _mnist.MEAN, _mnist.STD, in_memory=False),
    "digits": DatasetInfo(_mnist.digits, _mnist.MEAN, _mnist.STD, in_memory=True),
    "cifar10": DatasetInfo(_cifar.cifar10, _cifar.MEAN, _cifar.STD, in_memory=False),
    "cifar100": DatasetInfo(_cifar.cifar100, _cifar.MEAN, _cifar.STD, in_memory=False),
    "caltech101": DatasetInfo(_caltech.caltech101, _caltech.MEAN, _caltech.STD, in_memory=False),
    "camvid": DatasetInfo(_camvid.camvid, _camvid.MEAN, _camvid.STD, in_memory=False),
    "nyuv2": DatasetInfo(_nyu.nyuv2, _nyu.MEAN, _nyu.STD, in_memory=False),
}


def get_datasets(name, data_root="data", download=True):
    return DATASETS[name].build(data_root, download)


def normalization(name):
    """(mean, std) of data set ``name``'s inputs, to de-normalise them for display."""
    return DATASETS[name].mean, DATASETS[name].std


def get_dataloader(args):
    """Loaders over the real train and test sets (DFAD itself uses only the test set).

    Missing data is downloaded when the data set and the network allow it.
    """
    info = DATASETS[args.dataset]
    train_set, test_set = info.build(args.data_root, True)
    workers = 0 if info.in_memory else getattr(args, "num_workers", 2)
    use_cuda = torch.cuda.is_available() and not getattr(args, "no_cuda", False)
    common = dict(num_workers=workers, pin_memory=use_cuda, persistent_workers=workers > 0,
                  worker_init_fn=ignore_stop_signals if workers else None)
    seed = getattr(args, "seed", 1)
    if dist.is_initialized():  # torchrun: each process reads its own share of every epoch
        sampler = DistributedSampler(train_set, shuffle=True, seed=seed)
        train_loader = DataLoader(train_set, batch_size=args.batch_size // dist.get_world_size(),
                                  sampler=sampler, **common)
    else:  # a generator of its own makes the shuffle order resumable
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                  generator=torch.Generator().manual_seed(seed), **common)
    # A generator of its own: iterating a loader draws a seed from the global RNG otherwise,
    # and every evaluation would shift the noise the game draws next.
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size, shuffle=False,
                             generator=torch.Generator().manual_seed(seed), **common)
    return train_loader, test_loader
