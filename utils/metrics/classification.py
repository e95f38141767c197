"""Test-set metrics. Each evaluator returns a dict of named scores."""
import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate_classifier(model, loader, device):
    """Top-1 accuracy ("Acc") and mean cross-entropy ("Loss") over a whole loader."""
    model.eval()
    correct, total_loss, count = 0, 0.0, 0
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
        logits = model(images)
        total_loss += F.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(dim=1) == targets).sum().item()
        count += targets.numel()
    return {"Acc": correct / count, "Loss": total_loss / count}
