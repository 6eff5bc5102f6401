"""Calibrated tags for a checkpoint: score a shard split, choose per-tag thresholds, store them.

``musictag calibrate CKPT SHARDS [--precision P]`` calls :func:`calibrate_checkpoint`: every
track of the validation split is scored with the evaluation protocol (K evenly spaced crops,
aggregated as the model does), thresholds are chosen with :func:`musictag.calibration.calibrate`,
and the checkpoint is rewritten (or written anew with ``output``) with the thresholds under
``checkpoint["musictag"]["thresholds"]``. :func:`load_calibration` reads them back for
``musictag predict --threshold auto`` and ``musictag export``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .calibration import Calibration, calibrate
from .evaluation import ShardScores, score_split

if TYPE_CHECKING:
    from .tagger import Tagger

__all__ = [
    "ShardScores",
    "calibrate_checkpoint",
    "load_calibration",
    "read_checkpoint",
    "score_shards",
    "thresholds_summary",
]

log = logging.getLogger(__name__)

_VAL_NAMES = ("val", "valid", "validation")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file as a dict, loaded safely (``weights_only=True``) on the CPU.

    Raises:
        FileNotFoundError: if it does not exist.
        ValueError: if it is not a musictag checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a loadable PyTorch checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or "musictag" not in ckpt:
        raise ValueError(f"{path}: not a musictag checkpoint (no 'musictag' entry)")
    return ckpt


def load_calibration(path: str | Path) -> Calibration | None:
    """The thresholds stored in a checkpoint by :func:`calibrate_checkpoint`, or ``None``."""
    stored = read_checkpoint(path)["musictag"].get("thresholds")
    return Calibration.from_dict(stored) if stored else None


def _split_name(manifest: dict[str, Any], split: str) -> str:
    splits = manifest["splits"]
    if split in splits:
        return split
    if split in _VAL_NAMES:
        for name in _VAL_NAMES:
            if name in splits:
                return name
    raise ValueError(
        f"{manifest['_dir']}: no split {split!r} in the manifest; it has {sorted(splits)}"
    )


def score_shards(
    model: Tagger,
    shards: str | Path,
    split: str = "val",
    *,
    crops: int | None = None,
    batch_size: int = 16,
    merge: dict[str, str] | None = None,
) -> ShardScores:
    """Score every track of a shard split with the evaluation protocol
    (:func:`musictag.evaluation.score_split`, as ``musictag evaluate`` does).

    Each track is cut into ``K`` evenly spaced crops (``K = crops`` or the model's
    ``eval_crops``) whose probabilities are aggregated as the model's ``tta`` says, as in
    validation. Tracks that cannot be decoded are skipped, counted and logged.

    Args:
        model: A tagger.
        shards: Shard folder (``manifest.json``).
        split: Split to score; ``"val"`` also finds ``valid``/``validation``.
        crops: Crops per track; default: the model's ``eval_crops``.
        batch_size: Crops per forward pass.
        merge: Tag synonyms ``{source: target}`` of the training data (see
            :class:`~musictag.data.vocab.TagVocab`); the track tags are encoded in the model's
            tag order with them, and tags the model does not know are ignored.

    Returns:
        A :class:`~musictag.evaluation.ShardScores`.

    Raises:
        ValueError: if the split is missing or holds no readable track.
    """
    from .data.shards import load_manifest

    name = _split_name(load_manifest(shards), split)
    return score_split(model, shards, name, crops, batch_crops=batch_size, merge=merge)


def calibrate_checkpoint(
    checkpoint: str | Path,
    shards: str | Path,
    *,
    split: str = "val",
    precision: float | None = None,
    crops: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    output: str | Path | None = None,
) -> tuple[Calibration, Path]:
    """Choose per-tag thresholds for a checkpoint on a shard split and store them in it.

    Args:
        checkpoint: A musictag checkpoint.
        shards: Shard folder holding ``split``.
        split: Held-out split to calibrate on (never the test split, if you report on it).
        precision: Target precision per tag; ``None``: best F1 per tag.
        crops: Crops per track; default: the model's ``eval_crops``.
        batch_size: Crops per forward pass.
        device: Device to score on; default: CPU.
        output: Checkpoint to write; default: rewrite ``checkpoint`` in place.

    Returns:
        ``(calibration, path written)``.
    """
    from .checkpoints import load_tagger

    ckpt = read_checkpoint(checkpoint)
    model = load_tagger(checkpoint)
    if device:
        model.to(device)
    merge = (ckpt.get("datamodule_hyper_parameters") or {}).get("merge")
    data = score_shards(
        model, shards, split, crops=crops, batch_size=batch_size, merge=merge or None
    )
    cal = calibrate(data.scores, data.targets, model.tags, precision=precision, split=split)
    cal.protocol = {
        "crops": crops or int(model.hparams.get("eval_crops", 16)),
        "aggregation": str(model.hparams.get("tta", "mean")),
        "shards": str(Path(shards).resolve()),
        "n_failed": data.n_failed,
    }
    ckpt["musictag"]["thresholds"] = cal.to_dict()
    out = Path(output) if output else Path(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, out)  # a crash never leaves half a checkpoint
    return cal, out


def thresholds_summary(cal: Calibration, top: int = 10) -> Sequence[str]:
    """Lines describing a calibration, for the command line."""
    how = "best F1" if cal.method == "f1" else f"precision >= {cal.target_precision}"
    lines = [
        f"thresholds for {len(cal.tags)} tags ({how}) on {cal.n_tracks} {cal.split} tracks; "
        f"F1 there: macro {cal.scores_f1.get('f1_macro', float('nan')):.4f}, "
        f"micro {cal.scores_f1.get('f1_micro', float('nan')):.4f}"
    ]
    for t, v in list(zip(cal.tags, cal.thresholds))[:top]:
        lines.append(f"  {t:24s} {v:.4f}")
    if len(cal.tags) > top:
        lines.append(f"  ... ({len(cal.tags) - top} more)")
    skipped = [t for t, ok in zip(cal.tags, cal.calibrated) if not ok]
    if skipped:
        lines.append(f"not calibrated (no positive track or target not reached): {skipped}")
    return lines
