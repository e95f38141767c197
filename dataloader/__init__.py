"""Data sets and loaders: ``get_test_loader(args)`` (all a DFAD run reads) and
``get_train_loader(args, batch_size)`` (teacher training only).

Each data set is a builder ``(data_root, download, train) -> dataset`` plus the mean
and std its images are normalised with (to show them de-normalised).
"""
from collections import namedtuple

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from utils.runtime.workers import Loader

from . import caltech as _caltech
from . import camvid as _camvid
from . import cifar as _cifar
from .folder import ImageFolderTransferSet
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


def get_dataset(name, data_root="data", train=True, download=True):
    """One split of data set ``name``; missing data is downloaded where the data set allows."""
    return DATASETS[name].build(data_root, download, train)


def normalization(name):
    """(mean, std) of data set ``name``'s inputs, to de-normalise them for display."""
    return DATASETS[name].mean, DATASETS[name].std


def _loader_options(args):
    workers = 0 if DATASETS[args.dataset].in_memory else args.num_workers
    use_cuda = torch.cuda.is_available() and not args.no_cuda
    return dict(num_workers=workers, pin_memory=use_cuda, persistent_workers=workers > 0)


def get_train_loader(args, batch_size):
    """Shuffled batches of this process's ``batch_size`` from the real training set."""
    train_set = get_dataset(args.dataset, args.data_root, train=True)
    if dist.is_initialized():  # torchrun: each process reads its own share of every epoch
        sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)
        return Loader(train_set, batch_size=batch_size, sampler=sampler, **_loader_options(args))
    # A generator of its own makes the shuffle order resumable.
    return Loader(train_set, batch_size=batch_size, shuffle=True,
                  generator=torch.Generator().manual_seed(args.seed), **_loader_options(args))


def get_transfer_set(args):
    """--method kd: the training split of --transfer_set (default: --dataset's, KD-ORI), or
    the images of a folder, shaped and normalised like --dataset's test images."""
    name = args.transfer_set or args.dataset
    if name in DATASETS:
        return get_dataset(name, args.data_root, train=True)
    image = get_dataset(args.dataset, args.data_root, train=False)[0][0]
    info = DATASETS[args.dataset]
    return ImageFolderTransferSet(name, image.shape[0], image.shape[1:], info.mean, info.std)


def get_test_loader(args):
    """The real test set in order, ``args.test_batch_size`` at a time."""
    test_set = get_dataset(args.dataset, args.data_root, train=False)
    # A generator of its own: iterating a loader draws a seed from the global RNG otherwise,
    # and every evaluation would shift the noise the game draws next.
    return Loader(test_set, batch_size=args.test_batch_size, shuffle=False,
                  generator=torch.Generator().manual_seed(args.seed), **_loader_options(args))


def experiment_data(args):
    """What a DFAD experiment reads of its data set: the test loader, the transfer set of
    --method kd (loaded only if it is used) and the normalisation, to show images."""
    mean, std = normalization(args.dataset)
    return dict(test_loader=get_test_loader(args), transfer_set=lambda: get_transfer_set(args), mean=mean, std=std)
