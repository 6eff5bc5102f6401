"""The tagging metrics: PR-AUC (average precision) and ROC-AUC, macro and micro, per track.

All metrics are torchmetrics ``Metric`` objects, exact (``thresholds=None``) and synchronised across
processes at ``compute()``, so they are correct under DDP as long as each track is seen by exactly
one process (which the data module guarantees for validation and test).
"""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MultilabelAUROC,
    MultilabelAveragePrecision,
)

__all__ = ["tagging_metrics", "per_tag_ap"]


def tagging_metrics(n_tags: int, multi_label: bool = True) -> MetricCollection:
    """The standard tagging ``MetricCollection``.

    Keys: ``pr_auc_macro``, ``pr_auc_micro``, ``roc_auc_macro``, ``roc_auc_micro``, and ``accuracy``
    for single-label data. Update with ``(scores [tracks, n_tags] in [0, 1], target [tracks, n_tags]
    int)``, where scores are the crop-averaged probabilities of each track.

    Args:
        n_tags: Number of tags.
        multi_label: ``False`` adds top-1 accuracy (targets are one-hot).
    """
    metrics = {
        "pr_auc_macro": MultilabelAveragePrecision(n_tags, average="macro"),
        "pr_auc_micro": MultilabelAveragePrecision(n_tags, average="micro"),
        "roc_auc_macro": MultilabelAUROC(n_tags, average="macro"),
        "roc_auc_micro": MultilabelAUROC(n_tags, average="micro"),
    }
    if not multi_label:
        metrics["accuracy"] = _OneHotAccuracy(n_tags)
    # all curve metrics keep the same (preds, target) state: compute groups share it
    return MetricCollection(metrics, compute_groups=True)


def per_tag_ap(n_tags: int) -> MultilabelAveragePrecision:
    """Average precision of each tag, ``compute() -> [n_tags]``."""
    return MultilabelAveragePrecision(n_tags, average=None)


class _OneHotAccuracy(MulticlassAccuracy):
    """Top-1 accuracy for one-hot targets."""

    def __init__(self, n_classes: int) -> None:
        super().__init__(num_classes=n_classes, average="micro")

    def update(self, preds, target) -> None:  # type: ignore[override]
        super().update(preds, target.argmax(-1))
