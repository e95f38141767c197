"""StreamSegMetrics against hand-computed numbers, and FocalLoss."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.engine.losses import FocalLoss
from utils.metrics.segmentation import StreamSegMetrics

# 3 classes. Truth / prediction pairs, pixel by pixel (255 and 7 in truth are ignored):
TRUE = np.array([[0, 0, 0, 1, 1, 255],
                 [1, 2, 2, 2, 7, 255]])
PRED = np.array([[0, 0, 1, 1, 2, 0],
                 [1, 2, 0, 2, 1, 2]])
# Counted pixels: (0,0) (0,0) (0,1) (1,1) (1,2) (1,1) (2,2) (2,0) (2,2)
# Confusion (rows truth, cols pred): [[2,1,0],[0,2,1],[1,0,2]], 9 pixels, 6 correct.
# IoU: class 0: 2/(3+3-2)=1/2, class 1: 2/(3+3-2)=1/2, class 2: 2/(3+3-2)=1/2.


def test_hand_computed_confusion_matrix():
    m = StreamSegMetrics(3)
    m.update(TRUE, PRED)
    assert m.confusion_matrix.tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 2]]
    r = m.get_results()
    assert r["Overall Acc"] == pytest.approx(6 / 9)
    assert r["Mean Acc"] == pytest.approx(2 / 3)
    assert r["Mean IoU"] == pytest.approx(0.5)
    assert r["FreqW Acc"] == pytest.approx(0.5)
    assert r["Class IoU"] == pytest.approx({0: 0.5, 1: 0.5, 2: 0.5})


def test_uneven_classes_and_absent_class():
    # 4 classes; class 3 never appears in truth nor prediction, class 2 only predicted.
    true = torch.tensor([0, 0, 0, 0, 1, 1, 255, 255])
    pred = torch.tensor([0, 0, 0, 2, 1, 0, 3, 1])
    m = StreamSegMetrics(4)
    m.update(true, pred)
    # Confusion: row 0 = [3,0,1,0], row 1 = [1,1,0,0]; 6 pixels, 4 correct.
    # IoU 0: 3/(4+4-3)=3/5; IoU 1: 1/(2+1-1)=1/2; IoU 2: 0/(0+1-0)=0; IoU 3: 0/0 -> nan.
    r = m.get_results()
    assert r["Overall Acc"] == pytest.approx(4 / 6)
    assert r["Mean Acc"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert r["Mean IoU"] == pytest.approx((3 / 5 + 1 / 2 + 0) / 3)
    assert r["FreqW Acc"] == pytest.approx(4 / 6 * 3 / 5 + 2 / 6 * 1 / 2)
    assert math.isnan(r["Class IoU"][3]) and r["Class IoU"][2] == 0
    assert "Mean IoU" in m.to_str(r) and "class 3" in m.to_str(r)


def test_two_updates_equal_one():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, size=(4, 16, 16))
    true[rng.random(true.shape) < 0.1] = 255
    pred = rng.integers(0, 5, size=(4, 16, 16))
    once, twice = StreamSegMetrics(5), StreamSegMetrics(5)
    once.update(true, pred)
    twice.update(true[:1], pred[:1])
    twice.update(true[1:], pred[1:])
    assert np.array_equal(once.confusion_matrix, twice.confusion_matrix)
    assert once.get_results()["Mean IoU"] == twice.get_results()["Mean IoU"]
    twice.reset()
    assert twice.confusion_matrix.sum() == 0


def test_invalid_predictions_and_shapes_rejected():
    m = StreamSegMetrics(3)
    with pytest.raises(ValueError):
        m.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError):
        m.update(np.array([0, 1]), np.array([0, 1, 2]))


def test_focal_loss_gamma_0_is_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7)
    target = torch.randint(0, 5, (2, 6, 7))
    target[0, :2] = 255
    loss = FocalLoss(gamma=0)(logits, target)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, target, ignore_index=255).item(),
                                        rel=1e-6)


def test_focal_loss_ignores_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (1, 4, 4))
    target[0, 0] = 255
    loss = FocalLoss()(logits, target)
    keep = target != 255
    per_pixel_logits = logits.permute(0, 2, 3, 1)[keep]
    ce = F.cross_entropy(per_pixel_logits, target[keep], reduction="none")
    expected = ((1 - torch.exp(-ce)) ** 2 * ce).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[0, :, 0].abs().sum() == 0
    # Changing the logits of ignored pixels changes nothing.
    other = logits.detach().clone()
    other[0, :, 0] = 100 * torch.randn(3, 4)
    assert FocalLoss()(other, target).item() == pytest.approx(loss.item(), rel=1e-6)
    # Sum instead of mean, and nothing to learn when everything is ignored.
    assert FocalLoss(size_average=False)(logits, target).item() == pytest.approx(
        expected.item() * keep.sum().item(), rel=1e-5)
    assert FocalLoss()(logits, torch.full_like(target, 255)).item() == 0


def test_focal_loss_down_weights_confident_correct_pixels():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 0] = 4.0  # p_t close to 1
    ce = F.cross_entropy(logits, target).item()
    focal = FocalLoss(gamma=2)(logits, target).item()
    assert 0 < focal < ce
    p_t = math.exp(4) / (math.exp(4) + 2)
    assert focal == pytest.approx((1 - p_t) ** 2 * -math.log(p_t), rel=1e-5)
