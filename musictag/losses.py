"""Losses for multi-label tagging (BCE, weighted BCE, focal) and single-label genre classification."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FocalLoss", "SingleLabelCrossEntropy", "build_loss", "LOSSES"]


class FocalLoss(nn.Module):
    """Binary focal loss on logits (Lin et al. 2017), averaged over batch and tags.

    ``FL = -w · (1 - p_t)^gamma · log(p_t)`` where ``w`` is ``pos_weight`` on positive targets and
    1 on negatives. ``gamma = 0`` gives (weighted) BCE.

    Args:
        gamma: Focusing parameter.
        pos_weight: Optional weight of the positive term per tag, ``[n_tags]``.

    Shape:
        logits, target: ``[batch, n_tags]``; output: scalar.
    """

    def __init__(self, gamma: float = 2.0, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-bce)
        loss = (1 - p_t).pow(self.gamma) * bce
        if self.pos_weight is not None:
            loss = loss * (1 + (self.pos_weight - 1) * target)
        return loss.mean()


class SingleLabelCrossEntropy(nn.Module):
    """Cross-entropy for single-label data given one-hot (multi-hot with one positive) targets.

    Shape:
        logits, target: ``[batch, n_classes]``; output: scalar.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target.argmax(-1), label_smoothing=self.label_smoothing)


LOSSES = ("bce", "focal", "ce")


def build_loss(
    name: str = "bce",
    pos_weight: Sequence[float] | torch.Tensor | None = None,
    focal_gamma: float = 2.0,
) -> nn.Module:
    """Build a loss by name.

    Args:
        name: ``"bce"`` (BCE with logits), ``"focal"`` (binary focal) or ``"ce"`` (single-label).
        pos_weight: Per-tag weight of positives for ``bce``/``focal``, e.g. ``(N - n_pos) / n_pos``
            from a manifest's tag counts (``TagDataModule.pos_weight()``).
        focal_gamma: Focusing parameter of the focal loss.

    Returns:
        A module ``loss(logits [B, C], target [B, C]) -> scalar``.
    """
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
    if name == "bce":
        return nn.BCEWithLogitsLoss(pos_weight=pw)
    if name == "focal":
        return FocalLoss(focal_gamma, pw)
    if name == "ce":
        if pw is not None:
            raise ValueError("pos_weight applies to multi-label losses ('bce', 'focal'), not 'ce'")
        return SingleLabelCrossEntropy()
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
