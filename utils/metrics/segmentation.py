"""Segmentation metrics accumulated over a stream of batches in a confusion matrix."""
import functools

import numpy as np
import torch


def _numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _nanmean(x):
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


class StreamSegMetrics:
    """Pixel accuracy and IoU of ``n_classes`` classes.

    ``confusion_matrix[t, p]`` counts pixels of true class t predicted as p. Pixels
    whose truth is 255 (ignore) or otherwise outside [0, n_classes) are not counted.
    """

    def __init__(self, n_classes):
        self.n_classes = n_classes
        self.reset()

    def reset(self):
        self.confusion_matrix = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)

    def update(self, label_trues, label_preds):
        """Add a batch: integer arrays or tensors of the same shape (any shape)."""
        trues = _numpy(label_trues).astype(np.int64).ravel()
        preds = _numpy(label_preds).astype(np.int64).ravel()
        if trues.shape != preds.shape:
            raise ValueError(f"labels and predictions differ in size: "
                             f"{np.shape(label_trues)} vs {np.shape(label_preds)}")
        keep = (trues >= 0) & (trues < self.n_classes)
        trues, preds = trues[keep], preds[keep]
        if preds.size and (preds.min() < 0 or preds.max() >= self.n_classes):
            # Dropping these pixels would silently inflate the scores.
            raise ValueError(f"predictions must be class ids in [0, {self.n_classes}), "
                             f"got values in [{preds.min()}, {preds.max()}]")
        n = self.n_classes
        self.confusion_matrix += np.bincount(n * trues + preds, minlength=n * n).reshape(n, n)

    def get_results(self):
        """Overall/mean/frequency-weighted accuracy, mean IoU and per-class IoU.

        A class with no pixels in the truth is left out of "Mean Acc"; one absent from
        both truth and predictions has IoU nan and is left out of "Mean IoU".
        """
        hist = self.confusion_matrix.astype(np.float64)
        tp, true_count, pred_count = np.diag(hist), hist.sum(axis=1), hist.sum(axis=0)
        total = hist.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = tp.sum() / total if total else float("nan")
            acc_cls = tp / true_count
            iou = tp / (true_count + pred_count - tp)
        freq = true_count / total if total else true_count
        seen = freq > 0
        return {
            "Overall Acc": float(acc),
            "Mean Acc": _nanmean(acc_cls),
            "FreqW Acc": float((freq[seen] * iou[seen]).sum()) if total else float("nan"),
            "Mean IoU": _nanmean(iou),
            "Class IoU": {c: float(v) for c, v in enumerate(iou)},
        }

    @staticmethod
    def to_str(results):
        lines = [f"{k}: {v:.6f}" for k, v in results.items() if k != "Class IoU"]
        lines.append("Class IoU:")
        lines += [f"\tclass {c}: {v:.6f}" for c, v in results["Class IoU"].items()]
        return "\n".join(lines)


@torch.no_grad()
def evaluate_segmentation(model, loader, device, num_classes):
    """Mean IoU ("mIoU") and pixel accuracies over a whole loader (255 = ignored)."""
    model.eval()
    metrics = StreamSegMetrics(num_classes)
    for images, targets in loader:
        metrics.update(targets, model(images.to(device)).argmax(1))
    results = metrics.get_results()
    return {"mIoU": results["Mean IoU"],
            **{k: results[k] for k in ("Overall Acc", "Mean Acc", "FreqW Acc")}}


def segmentation_evaluator(num_classes):
    """``evaluate_segmentation`` with the engine's ``(model, loader, device)`` signature."""
    return functools.partial(evaluate_segmentation, num_classes=num_classes)
