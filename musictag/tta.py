"""Test-time crop averaging: cut a track into evenly spaced crops and aggregate per-crop scores.

Shared by validation, test and file inference, so every path evaluates tracks the same way as the
published protocol (Won et al. 2020: 16 evenly spaced crops, mean of sigmoid scores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["AGGREGATIONS", "aggregate", "eval_crop_starts", "extract_crops"]

AGGREGATIONS = ("mean", "max")


def eval_crop_starts(num_samples: int, crop_samples: int, k: int) -> list[int]:
    """Start samples of the ``k`` evenly spaced evaluation crops of a track.

    As in the published protocol (Won et al. 2020, ``eval.py``): ``hop = (len - crop) // k`` and
    crop ``i`` starts at ``i * hop``, so the first crop starts at 0 and the last one usually
    stops short of the end. A track shorter than a crop gives ``k`` starts at 0 (the crop is
    zero-padded at the end).

    Args:
        num_samples: Track length in samples.
        crop_samples: Crop length in samples.
        k: Number of crops.

    Returns:
        ``k`` start indices, non-decreasing.
    """
    if k < 1 or crop_samples < 1 or num_samples < 0:
        raise ValueError(
            f"need k >= 1, crop_samples >= 1, num_samples >= 0; "
            f"got k={k}, crop_samples={crop_samples}, num_samples={num_samples}"
        )
    hop = max(0, (num_samples - crop_samples) // k)
    return [i * hop for i in range(k)]


def extract_crops(waveform: torch.Tensor, crop_samples: int, k: int) -> torch.Tensor:
    """Cut ``k`` evenly spaced crops from one track, zero-padding a short track.

    Args:
        waveform: ``[samples]``.
        crop_samples: Crop length.
        k: Number of crops.

    Returns:
        ``[k, crop_samples]``.
    """
    if waveform.dim() != 1:
        raise ValueError(f"expected a mono waveform [samples], got {tuple(waveform.shape)}")
    if waveform.shape[0] < crop_samples:
        waveform = F.pad(waveform, (0, crop_samples - waveform.shape[0]))
    starts = eval_crop_starts(waveform.shape[0], crop_samples, k)
    return torch.stack([waveform[s : s + crop_samples] for s in starts])


def aggregate(scores: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Aggregate per-crop scores into per-track scores.

    Args:
        scores: ``[tracks, crops, n_tags]`` probabilities (or any per-crop score).
        how: ``"mean"`` (the published protocol) or ``"max"``.

    Returns:
        ``[tracks, n_tags]``.
    """
    if how == "mean":
        return scores.mean(dim=1)
    if how == "max":
        return scores.amax(dim=1)
    raise ValueError(f"unknown aggregation {how!r}; choose one of {AGGREGATIONS}")
