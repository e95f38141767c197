"""Focal loss for segmentation (Lin et al., 2017), used to train segmentation teachers."""
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """``(1 - p_t) ** gamma * CE`` per pixel, from logits (N, C, H, W) and class ids
    (N, H, W). Pixels labelled ``ignore_index`` are left out; ``size_average`` gives
    the mean over the remaining pixels, otherwise their sum. gamma=0 is cross-entropy.
    """

    def __init__(self, gamma=2, ignore_index=255, size_average=True):
        super().__init__()
        self.gamma, self.ignore_index, self.size_average = gamma, ignore_index, size_average

    def forward(self, logits, targets):
        keep = targets != self.ignore_index
        ce = F.cross_entropy(logits, targets, reduction="none",
                             ignore_index=self.ignore_index)[keep]
        loss = (1 - (-ce).exp()) ** self.gamma * ce
        if not self.size_average:
            return loss.sum()
        # With every pixel ignored there is nothing to learn: a zero that keeps the graph.
        return loss.mean() if loss.numel() else loss.sum()
