"""What tagging a track gives: its scores, the selected tags, its windows and embeddings (numpy
records shared by inference, the catalogue database, the web service and the plots)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TagResult", "WindowScores", "select_tags"]


def select_tags(
    scores: np.ndarray,
    tags: Sequence[str],
    top_k: int | None = None,
    threshold: float | Sequence[float] | np.ndarray | None = None,
) -> list[tuple[str, float]]:
    """Tags by score, best first: those scoring at least ``threshold``, at most ``top_k`` of them.

    Args:
        scores: ``[n_tags]`` probabilities.
        tags: Tag names in score order.
        top_k: Keep at most this many; ``None``: no limit.
        threshold: Keep only scores ``>= threshold``: one value, or ``[n_tags]`` per-tag
            thresholds (calibrated, :mod:`musictag.calibration`); ``None``: no limit.

    Returns:
        ``[(tag, score), ...]``, sorted by decreasing score (ties in tag order).
    """
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    if threshold is not None:
        keep = scores >= np.broadcast_to(np.asarray(threshold, dtype=np.float64), scores.shape)
        order = order[keep[order]]
    out = [(tags[i], float(scores[i])) for i in order]
    return out if top_k is None else out[: max(0, int(top_k))]


@dataclass
class TagResult:
    """Scores (and optionally embeddings) of one track.

    Attributes:
        scores: Track-level probabilities, ``[n_tags]`` (windows aggregated by ``aggregation``).
        window_scores: Per-window probabilities, ``[n_windows, n_tags]``.
        starts: Window start offsets in samples at ``sample_rate``, ``[n_windows]``.
        tags: Tag names in score order.
        sample_rate: Sample rate of the offsets (the model's).
        window: Window length in samples.
        labels: The selected tags, ``[(tag, score), ...]`` best first (``top_k``/``threshold`` of
            the call that made the result; every tag when neither was given).
        embedding: Track embedding, the mean of ``window_embeddings``, ``[dim]``; ``None`` unless
            embeddings were asked for.
        window_embeddings: Per-window embeddings, ``[n_windows, dim]``, or ``None``.
        source: The file (or name) that was tagged.
        aggregation: ``"mean"`` or ``"max"``.
    """

    scores: np.ndarray
    window_scores: np.ndarray
    starts: np.ndarray
    tags: list[str]
    sample_rate: int
    window: int = 0
    labels: list[tuple[str, float]] = field(default_factory=list)
    embedding: np.ndarray | None = None
    window_embeddings: np.ndarray | None = None
    source: str | None = None
    aggregation: str = "mean"

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring tags as ``(tag, score)``, best first."""
        return select_tags(self.scores, self.tags, top_k=k)

    def select(
        self, top_k: int | None = None, threshold: float | None = None
    ) -> list[tuple[str, float]]:
        """Tags scoring at least ``threshold``, at most ``top_k``, best first (``select_tags``)."""
        return select_tags(self.scores, self.tags, top_k, threshold)

    @property
    def times(self) -> np.ndarray:
        """Window start times in seconds, ``[n_windows]``."""
        return self.starts / float(self.sample_rate)

    def to_dict(self, windows: bool = False, all_scores: bool = False) -> dict[str, Any]:
        """A JSON-ready summary.

        Args:
            windows: Include the window start times and per-window scores of every tag.
            all_scores: Include the track score of every tag (not only ``labels``).
        """
        out: dict[str, Any] = {
            "file": self.source,
            "tags": [{"tag": t, "score": round(s, 6)} for t, s in self.labels],
        }
        if all_scores:
            out["scores"] = {t: round(float(s), 6) for t, s in zip(self.tags, self.scores)}
        if windows:
            out["windows"] = {
                "start_s": [round(float(t), 4) for t in self.times],
                "length_s": round(self.window / float(self.sample_rate), 4),
                "tags": list(self.tags),
                "scores": np.round(self.window_scores, 6).tolist(),
            }
        return out


@dataclass
class WindowScores:
    """Scores of consecutive windows of one track (:meth:`musictag.inference.Inference.stream`).

    Attributes:
        starts: Window start offsets in samples at the model's rate, ``[n]``.
        scores: Per-window probabilities, ``[n, n_tags]``.
    """

    starts: np.ndarray
    scores: np.ndarray
