"""Per-tag decision thresholds: F1 at given thresholds, and thresholds chosen on held-out scores.

The maths only (numpy in, numpy out): :func:`f1_at_thresholds` scores binary decisions
``score >= threshold`` against multi-hot targets; :func:`best_f1_thresholds` and
:func:`precision_thresholds` choose one threshold per tag from validation scores;
:func:`calibrate` wraps the choice in a :class:`Calibration`, the record that checkpoints and model
cards store (see :mod:`musictag.calibrate` for checkpoints and shards, ``docs/deploy.md``).

A threshold chosen on a set of scores is the midpoint between the lowest score kept positive and
the next lower score, so it splits the calibration data as chosen while leaving a margin on both
sides for unseen tracks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD",
    "Calibration",
    "F1Scores",
    "best_f1_thresholds",
    "calibrate",
    "f1_at_thresholds",
    "precision_thresholds",
]

DEFAULT_THRESHOLD = 0.5
"""The threshold of a tag that calibration cannot choose (no positive track)."""


@dataclass
class F1Scores:
    """Precision, recall and F1 of the decisions ``score >= threshold``, per tag and overall.

    Attributes:
        thresholds: ``[n_tags]`` thresholds used.
        precision: ``[n_tags]``; 0 for a tag never predicted.
        recall: ``[n_tags]``; 0 for a tag without positives.
        f1: ``[n_tags]``; 0 when precision and recall are both 0.
        support: ``[n_tags]`` positive tracks per tag.
        f1_macro: Mean F1 over the tags with at least one positive track (tags absent from the
            data say nothing about the model); NaN if there are none.
        f1_micro: F1 of all (track, tag) decisions pooled.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    f1_macro: float
    f1_micro: float

    def to_dict(self, tags: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready figures: ``f1_macro``, ``f1_micro`` and, with ``tags``, ``per_tag``."""
        out: dict[str, Any] = {"f1_macro": self.f1_macro, "f1_micro": self.f1_micro}
        if tags is not None:
            out["per_tag"] = {
                t: {
                    "threshold": float(self.thresholds[i]),
                    "precision": float(self.precision[i]),
                    "recall": float(self.recall[i]),
                    "f1": float(self.f1[i]),
                    "support": int(self.support[i]),
                }
                for i, t in enumerate(tags)
            }
        return out


def _check(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(
            f"scores and targets must both be [tracks, n_tags], got {s.shape} and {y.shape}"
        )
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or Inf")
    return s, y > 0.5


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def f1_at_thresholds(
    scores: Any, targets: Any, thresholds: float | Sequence[float] | np.ndarray = DEFAULT_THRESHOLD
) -> F1Scores:
    """Precision, recall and F1 of ``score >= threshold`` per tag, with macro and micro F1.

    Args:
        scores: ``[tracks, n_tags]`` probabilities (track-level, e.g. crop-averaged).
        targets: ``[tracks, n_tags]`` multi-hot ground truth (0/1 or bool).
        thresholds: One threshold for every tag, or ``[n_tags]`` per-tag thresholds.

    Returns:
        An :class:`F1Scores`.
    """
    s, y = _check(scores, targets)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (s.shape[1],)).copy()
    pred = s >= thr
    tp = (pred & y).sum(0).astype(np.float64)
    n_pred = pred.sum(0).astype(np.float64)
    support = y.sum(0)
    precision = _ratio(tp, n_pred)
    recall = _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2 * tp, n_pred + support)
    present = support > 0
    macro = float(f1[present].mean()) if present.any() else float("nan")
    denom = n_pred.sum() + support.sum()
    micro = float(2 * tp.sum() / denom) if denom > 0 else 0.0
    return F1Scores(thr, precision, recall, f1, support.astype(np.int64), macro, micro)


def _ranked(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One tag's candidate cut points, best score first.

    Returns ``(cut, tp, n_pred, next_lower)``: for each distinct score ``cut[j]``, the true
    positives and predictions of ``score >= cut[j]``, and the next lower score (``-inf`` last).
    """
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    n_pred = np.arange(1, s.size + 1)
    last = np.r_[s[1:] != s[:-1], True]  # the last of each run of equal scores
    cut = s[last]
    return cut, tp[last], n_pred[last], np.r_[cut[1:], -np.inf]


def _between(cut: float, lower: float) -> float:
    # midpoint to the next lower score; below the lowest score, any value under it keeps all
    return float((cut + lower) / 2) if np.isfinite(lower) else float(np.nextafter(cut, -np.inf))


def best_f1_thresholds(scores: Any, targets: Any, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-tag thresholds that maximise each tag's F1 on these scores.

    Ties go to the highest threshold (fewest predictions). A tag without positive tracks keeps
    ``default``.

    Args:
        scores: ``[tracks, n_tags]`` probabilities.
        targets: ``[tracks, n_tags]`` multi-hot ground truth.
        default: Threshold of tags that cannot be calibrated.

    Returns:
        ``[n_tags]`` float64 thresholds.
    """
    s, y = _check(scores, targets)
    out = np.full(s.shape[1], float(default))
    for t in range(s.shape[1]):
        n_pos = int(y[:, t].sum())
        if n_pos == 0:
            continue
        cut, tp, n_pred, lower = _ranked(s[:, t], y[:, t])
        f1 = 2 * tp / (n_pred + n_pos)
        j = int(np.argmax(f1))  # first maximum = highest cut
        out[t] = _between(cut[j], lower[j])
    return out


def precision_thresholds(
    scores: Any, targets: Any, precision: float, default: float = DEFAULT_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag thresholds with the highest recall whose precision reaches ``precision``.

    A tag that reaches the target nowhere gets the threshold of its best precision (ties: the
    most recall) and is flagged; a tag without positive tracks keeps ``default``, also flagged.

    Args:
        scores: ``[tracks, n_tags]`` probabilities.
        targets: ``[tracks, n_tags]`` multi-hot ground truth.
        precision: Target precision in ``(0, 1]``.
        default: Threshold of tags without positives.

    Returns:
        ``(thresholds [n_tags], reached [n_tags] bool)``.
    """
    if not 0 < precision <= 1:
        raise ValueError(f"precision must be in (0, 1], got {precision}")
    s, y = _check(scores, targets)
    out = np.full(s.shape[1], float(default))
    reached = np.zeros(s.shape[1], dtype=bool)
    for t in range(s.shape[1]):
        if not y[:, t].any():
            continue
        cut, tp, n_pred, lower = _ranked(s[:, t], y[:, t])
        prec = tp / n_pred
        ok = np.flatnonzero(prec >= precision - 1e-12)
        if ok.size:
            j = int(ok[-1])  # lowest qualifying cut = most recall
            reached[t] = True
        else:
            j = int(np.flatnonzero(prec == prec.max())[-1])
        out[t] = _between(cut[j], lower[j])
    return out, reached


@dataclass
class Calibration:
    """Per-tag thresholds and how they were chosen: what checkpoints and model cards store.

    Attributes:
        tags: Tag names, in the model's output order.
        thresholds: ``[n_tags]`` thresholds (decide a tag when ``score >= threshold``).
        method: ``"f1"`` (best F1 per tag) or ``"precision"`` (highest recall at
            ``target_precision``).
        target_precision: The precision asked for (``method="precision"``), else ``None``.
        calibrated: ``[n_tags]`` whether the tag's threshold was chosen from data (``False``: no
            positive track, or target precision not reached).
        split: Name of the data the thresholds were chosen on (``"val"``).
        n_tracks: Tracks scored.
        scores_f1: F1 figures at the thresholds on the calibration data itself (optimistic).
        protocol: How track scores were made (crops, aggregation), for reproducing them.
    """

    tags: list[str]
    thresholds: np.ndarray
    method: str = "f1"
    target_precision: float | None = None
    calibrated: np.ndarray | None = None
    split: str | None = None
    n_tracks: int = 0
    scores_f1: dict[str, float] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tags = [str(t) for t in self.tags]
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64).reshape(-1)
        if self.thresholds.size != len(self.tags):
            raise ValueError(f"{self.thresholds.size} thresholds for {len(self.tags)} tags")
        if self.calibrated is None:
            self.calibrated = np.ones(len(self.tags), dtype=bool)
        self.calibrated = np.asarray(self.calibrated, dtype=bool).reshape(-1)

    def for_tags(self, tags: Sequence[str]) -> np.ndarray:
        """The thresholds in the order of ``tags`` (a model's), ``[n_tags]``.

        Raises:
            ValueError: if the calibration lacks some of ``tags`` (made for another model).
        """
        index = {t: i for i, t in enumerate(self.tags)}
        missing = [t for t in tags if t not in index]
        if missing:
            raise ValueError(f"the thresholds were calibrated for other tags; missing {missing}")
        return self.thresholds[[index[t] for t in tags]]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only (loads with ``torch.load(weights_only=True)`` and JSON)."""
        return {
            "method": self.method,
            "target_precision": self.target_precision,
            "split": self.split,
            "n_tracks": int(self.n_tracks),
            "thresholds": {t: float(v) for t, v in zip(self.tags, self.thresholds)},
            "uncalibrated": [t for t, ok in zip(self.tags, self.calibrated) if not ok],
            "scores_f1": {k: float(v) for k, v in self.scores_f1.items()},
            "protocol": dict(self.protocol),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        tags = list(d["thresholds"])
        bad = set(d.get("uncalibrated", []))
        return cls(
            tags=tags,
            thresholds=np.array([float(d["thresholds"][t]) for t in tags]),
            method=str(d.get("method", "f1")),
            target_precision=d.get("target_precision"),
            calibrated=np.array([t not in bad for t in tags]),
            split=d.get("split"),
            n_tracks=int(d.get("n_tracks", 0)),
            scores_f1=dict(d.get("scores_f1", {})),
            protocol=dict(d.get("protocol", {})),
        )


def calibrate(
    scores: Any,
    targets: Any,
    tags: Sequence[str],
    *,
    precision: float | None = None,
    split: str | None = None,
    default: float = DEFAULT_THRESHOLD,
) -> Calibration:
    """Choose per-tag thresholds on held-out scores: best F1, or a target precision.

    Args:
        scores: ``[tracks, n_tags]`` track probabilities of the validation split.
        targets: ``[tracks, n_tags]`` multi-hot ground truth.
        tags: Tag names in column order.
        precision: Target precision; ``None``: maximise F1.
        split: Name of the data, recorded.
        default: Threshold of tags that cannot be calibrated (no positive track).

    Returns:
        A :class:`Calibration` (its ``scores_f1`` are F1 figures at the thresholds on these
        same scores: optimistic, for reference).
    """
    s, y = _check(scores, targets)
    if s.shape[1] != len(tags):
        raise ValueError(f"scores have {s.shape[1]} columns for {len(tags)} tags")
    if precision is None:
        thr = best_f1_thresholds(s, y, default)
        calibrated = y.any(0)
        method = "f1"
    else:
        thr, calibrated = precision_thresholds(s, y, precision, default)
        method = "precision"
    f1 = f1_at_thresholds(s, y, thr)
    return Calibration(
        tags=list(tags),
        thresholds=thr,
        method=method,
        target_precision=precision,
        calibrated=calibrated,
        split=split,
        n_tracks=int(s.shape[0]),
        scores_f1={"f1_macro": f1.f1_macro, "f1_micro": f1.f1_micro},
    )
