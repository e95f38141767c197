"""Knowledge distillation on real images (``--transfer_set``), the paper's "KD with
original data" (KD-ORI) and KD on other images; the labels are never read.

Five student steps a round on batches of the transfer set, no generator step (its loss
is reported as 0): the generator never plays, so it is neither saved nor drawn.
"""
import argparse
import os

import torch
from torch.utils.data import Dataset

from dataloader import DATASETS

from ...reporting import records
from ...runtime.errors import UserError
from ...runtime.signals import Loader
from ..game import STUDENT_STEPS, Method
from .dfad import student_step

PROBE_IMAGES = 1024        # the fixed probe: enough that agreement does not saturate at 1.0
LARGE_IMAGE = 3 * 64 * 64  # above this many values an image, 16 of them are probe enough


def transfer_tag(transfer):
    """A transfer set's name in labels and folder names (no slash): a data set's name, or for
    a folder its base name and a short hash of its path, the same for the path and for the
    form a run record keeps of it (:func:`records.portable`)."""
    if transfer in DATASETS:
        return transfer
    kept = records.portable(os.path.abspath(transfer)) if os.path.isabs(transfer) else transfer
    if kept.startswith(records.OUTSIDE + "/"):
        return kept[len(records.OUTSIDE) + 1:]
    return records.path_tag(kept)


def transfer_set_value(datasets):
    """--transfer_set: one of the script's data sets, or a folder holding images."""
    def parse(text):
        if text in datasets or os.path.isdir(text):
            return text
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a data set of this script ({', '.join(datasets)}) nor a folder; "
            f"name one of those data sets or an existing folder of images")
    return parse


class ImagesOnly(Dataset):
    """A data set's images without its labels (which are never read, not even collated)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i][0]


def probe_subset(images, seed):
    """A fixed, seeded sample of the transfer set, the same every epoch: kd's probe images."""
    count = PROBE_IMAGES if images[0].numel() <= LARGE_IMAGE else 16
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return torch.stack([images[int(i)] for i in order[:count]])


class KD(Method):
    name = "kd"
    summary = "distillation on real images of --transfer_set, labels never read"
    uses_generator = False
    trains_generator = False

    @classmethod
    def row_label(cls, args):
        """KD-ORI on the teacher's own training set, KD-<set> on another."""
        transfer = args.get("transfer_set")
        return "KD-ORI" if transfer in (None, args.get("dataset")) else f"KD-{transfer_tag(transfer)}"

    @staticmethod
    def add_args(group, datasets):
        group.add_argument("--transfer_set", type=transfer_set_value(datasets), default=None,
                           help=f"--method kd: the images to distil on: the training split of "
                                f"{', '.join(datasets)}, or a folder of images (searched recursively, "
                                f"resized to the teacher's input) (default: --dataset's, KD-ORI)")

    @staticmethod
    def defaults(dataset):
        return {"temperature": 4.0}  # Hinton's KD, with --student_loss kl

    def __init__(self, args, experiment, batch_size):
        transfer = experiment.transfer_set() if callable(experiment.transfer_set) else experiment.transfer_set
        if transfer is None:
            raise UserError("--method kd needs real images, and this experiment declares no transfer set.")
        images = ImagesOnly(transfer)
        if len(images) < batch_size:
            raise UserError(f"The transfer set holds {len(images)} images, fewer than one batch "
                            f"({batch_size}); lower --batch_size or pick a larger --transfer_set.")
        workers = args.num_workers
        self.loader = Loader(images, batch_size=batch_size, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(args.seed), num_workers=workers,
                             persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
        self.batches = iter(self.loader)
        self.fixed_images = probe_subset(images, args.seed)

    def next_images(self, device):
        try:
            x = next(self.batches)
        except StopIteration:  # a new pass over the transfer set
            self.batches = iter(self.loader)
            x = next(self.batches)
        return x.to(device, non_blocking=True)

    def play_round(self, p, batch_size):
        for _ in range(STUDENT_STEPS):
            loss_S = student_step(p, self.next_images(p.device))
        return loss_S, torch.zeros((), device=loss_S.device)

    def probe_images(self, samples):
        """One fixed batch of the transfer set (the generator plays no part)."""
        return self.fixed_images.to(samples.device)
