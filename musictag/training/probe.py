"""Probes on frozen features: logistic regression or a small MLP, regularisation chosen on val.

Full-batch training in torch on standardised features: a few hundred tracks and a few thousand
features take seconds on a CPU, so a small grid of weight decays (and linear vs one hidden layer)
is tried and the best validation macro PR-AUC wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import tagging_metrics

__all__ = ["ProbeFit", "fit_probe", "macro_pr_auc", "select_probe"]

log = logging.getLogger(__name__)


def macro_pr_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro PR-AUC (average precision) over the tags that have a positive track."""
    keep = targets.sum(0) > 0
    if not keep.any():
        return float("nan")
    m = tagging_metrics(int(keep.sum()))["pr_auc_macro"]
    m.update(torch.as_tensor(scores[:, keep]).float(), torch.as_tensor(targets[:, keep]).int())
    return float(m.compute())


@dataclass
class ProbeFit:
    """A fitted probe.

    Attributes:
        hidden: Hidden units (0: logistic regression).
        weight_decay: L2 strength it was trained with.
        state: ``{"projection": state_dict or None, "head": state_dict}`` (head: ``fc.weight``,
            ``fc.bias`` as in :class:`~musictag.tagger.TagHead`).
        val_pr_auc: Its validation macro PR-AUC.
    """

    hidden: int
    weight_decay: float
    state: dict
    val_pr_auc: float


def fit_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    hidden: int = 0,
    weight_decay: float = 1e-3,
    epochs: int = 300,
    lr: float = 1e-2,
    dropout: float = 0.3,
    seed: int = 0,
) -> tuple[nn.Module | None, nn.Linear]:
    """Train a probe full-batch with AdamW on standardised features.

    Args:
        x: ``[tracks, dim]`` standardised features.
        y: ``[tracks, n_tags]`` 0/1 targets.
        hidden: Hidden ReLU units (0: logistic regression).
        weight_decay: L2 penalty on the weights (added to the loss, as in logistic regression).
        epochs: Full-batch steps.
        lr: Learning rate.
        dropout: Input dropout of the MLP (not used by the linear probe).
        seed: Seed of the initial weights.

    Returns:
        ``(projection or None, output layer)``.
    """
    torch.manual_seed(seed)
    dim = x.shape[1]
    proj = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) if hidden else None
    fc = nn.Linear(hidden or dim, y.shape[1])
    params = list(fc.parameters()) + (list(proj.parameters()) if proj else [])
    weights = [fc.weight] + ([proj[0].weight] if proj else [])
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(epochs):
        h = x
        if proj is not None:
            h = proj(F.dropout(x, dropout, training=True))
        loss = F.binary_cross_entropy_with_logits(fc(h), y)
        loss = loss + weight_decay * sum(w.square().sum() for w in weights) / x.shape[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return proj, fc


def _scores(proj: nn.Module | None, fc: nn.Linear, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(fc(proj(x) if proj is not None else x)).numpy()


def select_probe(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: np.ndarray,
    weight_decays: tuple[float, ...] = (3.0, 10.0, 1.0, 0.3),
    hidden: tuple[int, ...] = (0,),
    seed: int = 0,
    deadline: float | None = None,
) -> ProbeFit:
    """Fit probes over a grid of L2 strengths and sizes; keep the best validation macro PR-AUC.

    With a ``deadline`` (``time.monotonic()``), no further probe is started after it: the best of
    those fitted is returned (at least one is always fitted), so a busy machine cannot push
    ``musictag train`` past its budget here. The grid is in order of likelihood (the strengths
    chosen on the development sets first), so a cut-short search keeps a sensible one.

    The default is logistic regression only: on the development set a 256-unit MLP probe was no
    better on validation (0.920 against 0.927) and takes 20x longer to fit (``docs/train.md``).
    """
    threads = torch.get_num_threads()
    # small matrices: one thread is faster, and far faster on a busy machine (no OpenMP spinning)
    torch.set_num_threads(1)
    try:
        return _select(x_train, y_train, x_val, y_val, weight_decays, hidden, seed, deadline)
    finally:
        torch.set_num_threads(threads)


def _select(x_train, y_train, x_val, y_val, weight_decays, hidden, seed, deadline) -> ProbeFit:
    best: ProbeFit | None = None
    for h in hidden:
        for wd in weight_decays:
            if best is not None and deadline is not None and time.monotonic() > deadline:
                log.warning("time is up: the probe is chosen among those fitted so far")
                return best
            proj, fc = fit_probe(x_train, y_train, hidden=h, weight_decay=wd, seed=seed)
            score = macro_pr_auc(_scores(proj, fc, x_val), y_val)
            log.info("probe hidden=%d l2=%g: val pr_auc_macro %.4f", h, wd, score)
            if best is None or score > best.val_pr_auc:
                state = {
                    "projection": None if proj is None else proj.state_dict(),
                    "head": {"fc." + k: v for k, v in fc.state_dict().items()},
                }
                best = ProbeFit(h, wd, state, score)
    assert best is not None
    return best
