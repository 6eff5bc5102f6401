"""Tagging metrics against scikit-learn, and the loss options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from musictag.losses import FocalLoss, build_loss
from musictag.metrics import per_tag_ap, tagging_metrics


def _data(n=200, c=7, seed=0):
    rng = np.random.default_rng(seed)
    target = (rng.random((n, c)) < rng.uniform(0.1, 0.5, c)).astype(int)
    scores = np.clip(0.35 * target + rng.random((n, c)) * 0.8, 0, 1).astype(np.float32)
    return scores, target


def test_metrics_equal_sklearn_macro_and_micro():
    scores, target = _data()
    m = tagging_metrics(target.shape[1])
    # fed in uneven batches, as validation does
    for sl in (slice(0, 13), slice(13, 120), slice(120, 200)):
        m.update(torch.from_numpy(scores[sl]), torch.from_numpy(target[sl]))
    got = {k: float(v) for k, v in m.compute().items()}
    assert got["pr_auc_macro"] == pytest.approx(
        average_precision_score(target, scores, average="macro"), abs=1e-5
    )
    assert got["pr_auc_micro"] == pytest.approx(
        average_precision_score(target, scores, average="micro"), abs=1e-5
    )
    assert got["roc_auc_macro"] == pytest.approx(
        roc_auc_score(target, scores, average="macro"), abs=1e-5
    )
    assert got["roc_auc_micro"] == pytest.approx(
        roc_auc_score(target, scores, average="micro"), abs=1e-5
    )
    ap = per_tag_ap(target.shape[1])
    ap.update(torch.from_numpy(scores), torch.from_numpy(target))
    np.testing.assert_allclose(
        ap.compute().numpy(), average_precision_score(target, scores, average=None), atol=1e-5
    )


def test_single_label_accuracy():
    m = tagging_metrics(3, multi_label=False)
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    m.update(scores, target)
    assert float(m.compute()["accuracy"]) == pytest.approx(0.75)


def test_losses():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(build_loss("bce")(logits, target), bce)
    # gamma 0 focal loss is BCE; pos_weight scales the positive terms like BCEWithLogits does
    assert torch.allclose(FocalLoss(0.0)(logits, target), bce)
    pw = torch.tensor([3.0, 2.0])
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
    assert torch.allclose(FocalLoss(0.0, pw)(logits, target), ref)
    assert torch.allclose(build_loss("bce", [3.0, 2.0])(logits, target), ref)
    assert FocalLoss(2.0)(logits, target) < bce  # easy examples are down-weighted
    ce = build_loss("ce")(logits, target)
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("hinge")
