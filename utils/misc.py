"""Seeding, device choice and small helpers that every script shares."""
import random

import numpy as np
import torch


def set_seed(seed):
    """Seed python, numpy and torch (every device) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def denormalize(images, mean, std):
    """Undo ``transforms.Normalize`` so images can be shown in [0, 1]."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0, 1)


class UserError(Exception):
    """A problem the user can fix (a missing file, a wrong flag).

    Scripts print its message as one paragraph and exit with status 2 instead of
    showing a traceback.
    """
