"""Cutting tracks into windows and aggregating the windows' scores into track scores.

Two cuts: the ``k`` evenly spaced crops of the published protocol (Won et al. 2020: 16 crops, mean
of sigmoid scores), shared by validation, test, evaluation and file inference so that every path
scores a track the same way; and sliding windows over a stream of audio of any length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "eval_crop_starts",
    "extract_crops",
    "sliding_windows",
    "window_starts",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

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


def extract_crops(
    waveform: Array, crop_samples: int, k: int, num_samples: int | None = None
) -> Array:
    """Cut the ``k`` evenly spaced crops (:func:`eval_crop_starts`) of a track, zero-padded.

    Args:
        waveform: ``[samples]``, a numpy array or a tensor: the track, or (with ``num_samples``)
            its beginning, at least up to the end of the last crop.
        crop_samples: Crop length.
        k: Number of crops.
        num_samples: Length of the whole track; default: ``len(waveform)``.

    Returns:
        ``[k, crop_samples]``, of the type of ``waveform``.
    """
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono waveform [samples], got {tuple(waveform.shape)}")
    n = waveform.shape[0] if num_samples is None else num_samples
    index = np.asarray(eval_crop_starts(n, crop_samples, k))[:, None] + np.arange(crop_samples)
    short = max(0, int(index[-1, -1]) + 1 - waveform.shape[0])
    if isinstance(waveform, torch.Tensor):
        return F.pad(waveform, (0, short))[torch.from_numpy(index).to(waveform.device)]
    return np.pad(waveform, (0, short))[index]


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


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Starts of windows of length ``window`` every ``hop`` samples covering the whole signal.

    A final window is aligned with the end of the signal so nothing is left out; a signal shorter
    than one window gives a single window at 0 (zero-padded).
    """
    if hop < 1 or window < 1:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def sliding_windows(
    chunks: Iterable[np.ndarray], window: int, hop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of audio chunks into windows, as :func:`window_starts` cuts the whole signal.

    At most about ``window + hop`` samples plus one chunk are buffered.

    Args:
        chunks: Consecutive pieces of one mono signal, each ``[n]``.
        window: Window length in samples.
        hop: Hop between window starts in samples.

    Yields:
        ``(start, samples [window])``; the last window is aligned with the end of the signal, a
        signal shorter than ``window`` gives one zero-padded window at 0.

    Raises:
        ValueError: if the stream holds no samples.
    """
    if hop < 1 or window < 1:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    buf = np.zeros(0, np.float32)  # samples [buf_start, total)
    buf_start = total = next_start = 0
    last: int | None = None
    pending: list[np.ndarray] = []
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not chunk.size:
            continue
        pending.append(chunk)
        total += chunk.size
        if total < next_start + window:
            continue
        buf = np.concatenate([buf, *pending])
        pending = []
        while next_start + window <= total:
            i = next_start - buf_start
            yield next_start, buf[i : i + window].copy()
            last, next_start = next_start, next_start + hop
        # keep what the next window, or an end-aligned last window, may still need
        keep = min(next_start, total - window)
        if keep > buf_start:
            buf, buf_start = buf[keep - buf_start :], keep
    if pending:
        buf = np.concatenate([buf, *pending])
    if total == 0:
        raise ValueError("zero-length audio")
    if last is None:
        yield 0, np.pad(buf, (0, window - buf.size))
    elif last + window < total:
        i = total - window - buf_start
        yield total - window, buf[i : i + window].copy()
