"""Scoring a trained tagger on a split of a shard set: per-track, crop-averaged tagging metrics.

:func:`score_split` runs the evaluation protocol of the recipes (``K`` evenly spaced crops per
track, probabilities averaged by :meth:`~musictag.tagger.Tagger.track_scores`) on every track of
one split; ``musictag evaluate`` (:func:`evaluate_shards`) computes the metrics of
:mod:`musictag.metrics` from its scores, overall and per tag, and ``musictag calibrate``
(:func:`musictag.calibrate.score_shards`) chooses thresholds on them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchmetrics.classification import MultilabelAUROC

from .data.vocab import TagVocab
from .metrics import per_tag_ap, tagging_metrics
from .tta import extract_crops

if TYPE_CHECKING:
    from .tagger import Tagger

__all__ = [
    "EvaluationReport",
    "ShardScores",
    "evaluate_scores",
    "evaluate_shards",
    "iter_split_tracks",
    "score_split",
    "track_score_batches",
]

log = logging.getLogger(__name__)

METRIC_KEYS = ("pr_auc_macro", "pr_auc_micro", "roc_auc_macro", "roc_auc_micro")


@dataclass
class EvaluationReport:
    """Metrics of one split.

    Attributes:
        split: The split scored.
        n_tracks: Tracks actually scored.
        metrics: ``pr_auc_macro``, ``pr_auc_micro``, ``roc_auc_macro``, ``roc_auc_micro``.
        per_tag: ``{tag: {"ap", "roc_auc", "n_positive"}}`` (``None`` where a tag has no positive
            or no negative track, so the figure is undefined).
        n_failed: Tracks that could not be read (damaged or undecodable), not scored.
        not_scored: What was wrong with each of them, naming shard and key.
    """

    split: str
    n_tracks: int
    metrics: dict[str, float]
    per_tag: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_failed: int = 0
    not_scored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``musictag evaluate --json``."""
        return {
            "split": self.split,
            "n_tracks": self.n_tracks,
            "n_not_scored": self.n_failed,
            "not_scored": self.not_scored,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "per_tag": self.per_tag,
        }


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def evaluate_scores(scores: torch.Tensor, target: torch.Tensor, tags: list[str]) -> dict:
    """Overall and per-tag metrics of crop-averaged track scores.

    Args:
        scores: ``[tracks, n_tags]`` probabilities.
        target: ``[tracks, n_tags]`` 0/1.
        tags: Tag names in column order.

    Returns:
        ``{"metrics": {...}, "per_tag": {tag: {"ap", "roc_auc", "n_positive"}}}``.
    """
    n_tags = len(tags)
    target = target.int()
    overall = tagging_metrics(n_tags)
    overall.update(scores, target)
    metrics = {k: float(v) for k, v in overall.compute().items()}
    ap_metric, roc_metric = per_tag_ap(n_tags), MultilabelAUROC(n_tags, average=None)
    ap_metric.update(scores, target)
    roc_metric.update(scores, target)
    ap, roc = ap_metric.compute().tolist(), roc_metric.compute().tolist()
    positives = target.sum(0).tolist()
    n = int(target.shape[0])
    per_tag = {}
    for i, tag in enumerate(tags):
        defined = 0 < positives[i] < n
        per_tag[tag] = {
            "ap": _finite(ap[i]) if positives[i] > 0 else None,
            "roc_auc": _finite(roc[i]) if defined else None,
            "n_positive": int(positives[i]),
        }
    return {"metrics": metrics, "per_tag": per_tag}


def track_score_batches(
    model: Tagger,
    tracks: Iterable[tuple[Any, np.ndarray]],
    crops: int | None = None,
    batch_crops: int = 64,
) -> Iterator[tuple[list[Any], torch.Tensor]]:
    """Crop-averaged scores of tracks, in batches.

    A track no longer than one crop is scored once (its ``K`` crops would all be the same).

    Args:
        model: A tagger in eval mode.
        tracks: ``(key, waveform [samples] at model.sample_rate)`` pairs.
        crops: ``K`` evenly spaced crops per track; default: the model's ``eval_crops``.
        batch_crops: Crops per forward pass (about).

    Yields:
        ``(keys, scores [tracks, n_tags])``.
    """
    k = int(crops or model.hparams.get("eval_crops", 16))
    crop = model.crop_samples
    device = next(model.parameters()).device
    pending: dict[int, tuple[list[Any], list[torch.Tensor]]] = {}

    def flush(kk: int) -> tuple[list[Any], torch.Tensor]:
        keys, stacks = pending.pop(kk)
        with torch.inference_mode():
            return keys, model.track_scores(torch.stack(stacks).to(device)).float().cpu()

    for key, wave in tracks:
        kk = 1 if len(wave) <= crop else k
        crops_t = extract_crops(torch.from_numpy(np.ascontiguousarray(wave)), crop, kk)
        keys, stacks = pending.setdefault(kk, ([], []))
        keys.append(key)
        stacks.append(crops_t)
        if len(stacks) * kk >= batch_crops:
            yield flush(kk)
    for kk in list(pending):
        yield flush(kk)


def iter_split_tracks(
    shard_dir: str | Path, split: str, skipped: list[Exception] | None = None
) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """``(info, waveform)`` of every readable track of one split (see
    :func:`musictag.data.shards.iter_shard_tracks`): a damaged or undecodable track, or a missing
    shard, is logged once with its shard and key, appended to ``skipped`` and passed over."""
    from .data.shards import iter_shard_tracks

    for info, wave, _rate in iter_shard_tracks(shard_dir, [split], skipped=skipped):
        yield info, wave


@dataclass
class ShardScores:
    """Crop-averaged track scores of one shard split, with their ground truth.

    Attributes:
        keys: Track ids, ``[tracks]``.
        scores: ``[tracks, n_tags]`` aggregated probabilities.
        targets: ``[tracks, n_tags]`` multi-hot ground truth in the model's tag order.
        n_failed: Tracks (or shards) that could not be read, passed over.
        not_scored: What was wrong with each of them, naming shard and key.
    """

    keys: list[str]
    scores: np.ndarray
    targets: np.ndarray
    n_failed: int = 0
    not_scored: list[str] = field(default_factory=list)


def score_split(
    model: Tagger,
    shard_dir: str | Path,
    split: str = "test",
    crops: int | None = None,
    batch_crops: int = 64,
    merge: dict[str, str] | None = None,
) -> ShardScores:
    """Score every track of one split with the evaluation protocol: the one scoring path of
    ``musictag evaluate`` and ``musictag calibrate``.

    Each track is cut into ``K`` evenly spaced crops (one when it is no longer than a crop), the
    crop probabilities are aggregated as the model's ``tta`` says
    (:meth:`~musictag.tagger.Tagger.track_scores`). Tracks stored at another rate are resampled
    to the model's. Track tags are mapped onto the model's tags by name, through ``merge``; tags
    the model does not know are ignored. A damaged or undecodable track is logged, counted and
    passed over.

    Args:
        model: A tagger (put in eval mode here).
        shard_dir: Shard folder (``manifest.json``).
        split: Split to score (its exact name).
        crops: Crops per track; default: the model's ``eval_crops``.
        batch_crops: Crops per forward pass (about).
        merge: Tag synonyms ``{source: target}`` of the training data (see
            :class:`~musictag.data.vocab.TagVocab`).

    Returns:
        A :class:`ShardScores` (``scores`` and ``targets`` as float32 / multi-hot arrays).

    Raises:
        ValueError: if the split is missing or holds no readable track.
    """
    from .audio import to_mono_resampled
    from .data.shards import iter_shard_tracks, load_manifest

    manifest = load_manifest(shard_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"{shard_dir}: no split {split!r}; it has {sorted(manifest['splits'])}")
    model.eval()
    vocab = TagVocab(model.tags, merge)
    targets: dict[str, np.ndarray] = {}
    skipped: list[Exception] = []

    def tracks() -> Iterator[tuple[str, np.ndarray]]:
        for info, wave, rate in iter_shard_tracks(shard_dir, [split], skipped=skipped):
            key = f"{split}/{info['key']}"
            targets[key] = vocab.encode(info["tags"])
            if int(rate) != model.sample_rate:
                wave = to_mono_resampled(wave, int(rate), model.sample_rate)
            yield key, wave

    keys, scores = [], []
    for batch_keys, batch_scores in track_score_batches(model, tracks(), crops, batch_crops):
        keys.extend(batch_keys)
        scores.append(batch_scores)
    if not keys:
        raise ValueError(f"{shard_dir}: no readable track in split {split!r}")
    return ShardScores(
        keys,
        torch.cat(scores).numpy(),
        np.stack([targets[k] for k in keys]),
        len(skipped),
        [str(e) for e in skipped],
    )


def evaluate_shards(
    model: Tagger,
    shard_dir: str | Path,
    split: str = "test",
    crops: int | None = None,
    batch_crops: int = 64,
    thresholds: float | np.ndarray | None = None,
) -> EvaluationReport:
    """Score every track of one split of a shard set with the tagger's evaluation protocol.

    Track tags are mapped onto the model's tags by name (tags the model does not know are
    ignored). A damaged or undecodable track is logged, counted (``n_failed``) and not scored;
    the others are.

    Args:
        model: A tagger (put in eval mode here).
        shard_dir: Shard folder (``manifest.json``).
        split: Split to score.
        crops: Crops per track; default: the model's ``eval_crops``.
        batch_crops: Crops per forward pass.
        thresholds: With a threshold (one, or ``[n_tags]`` calibrated ones), also F1 of the
            decisions ``score >= threshold``: ``f1_macro``/``f1_micro`` in ``metrics``, ``f1``
            and ``threshold`` per tag.

    Returns:
        An :class:`EvaluationReport`; ``n_tracks`` counts the tracks scored, ``n_failed`` (and
        ``not_scored``) the damaged or undecodable ones passed over.

    Raises:
        ValueError: if the split is missing or holds no readable track.
    """
    data = score_split(model, shard_dir, split, crops, batch_crops)
    track_scores, target = torch.from_numpy(data.scores), torch.from_numpy(data.targets)
    result = evaluate_scores(track_scores, target, list(model.tags))
    report = EvaluationReport(
        split, len(data.keys), result["metrics"], result["per_tag"], data.n_failed,
        not_scored=data.not_scored,
    )  # fmt: skip
    if thresholds is not None:
        from .calibration import f1_at_thresholds

        f1 = f1_at_thresholds(data.scores, data.targets, thresholds)
        report.metrics["f1_macro"], report.metrics["f1_micro"] = f1.f1_macro, f1.f1_micro
        for i, tag in enumerate(model.tags):
            report.per_tag[tag]["f1"] = float(f1.f1[i])
            report.per_tag[tag]["threshold"] = float(f1.thresholds[i])
    return report
