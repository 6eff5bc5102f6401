"""Tagging audio files of any length: sliding windows, batched, aggregated per track."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio
from .tagger import Tagger
from .tta import aggregate

__all__ = ["TagResult", "tag_file", "tag_waveform", "window_starts"]


@dataclass
class TagResult:
    """Scores of one track.

    Attributes:
        scores: Track-level probabilities, ``[n_tags]``.
        window_scores: Per-window probabilities, ``[n_windows, n_tags]``.
        starts: Window start offsets in samples, ``[n_windows]``.
        tags: Tag names in score order.
        sample_rate: Sample rate of the offsets.
    """

    scores: np.ndarray
    window_scores: np.ndarray
    starts: np.ndarray
    tags: list[str]
    sample_rate: int

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring tags as ``(tag, score)``, best first."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return [(self.tags[i], float(self.scores[i])) for i in order]


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


def _batches(
    waveform: torch.Tensor, starts: list[int], window: int, batch_size: int
) -> Iterator[torch.Tensor]:
    for i in range(0, len(starts), batch_size):
        chunk = [waveform[s : s + window] for s in starts[i : i + batch_size]]
        chunk = [torch.nn.functional.pad(c, (0, window - c.shape[0])) for c in chunk]
        yield torch.stack(chunk)


@torch.no_grad()
def tag_waveform(
    model: Tagger,
    waveform: np.ndarray | torch.Tensor,
    hop: int | None = None,
    batch_size: int = 16,
    how: str = "mean",
) -> TagResult:
    """Tag one mono waveform at the model's sample rate with sliding windows.

    Args:
        model: A tagger (put in eval mode by this function).
        waveform: ``[samples]`` at ``model.sample_rate``.
        hop: Hop between windows in samples; default: the window length (no overlap).
        batch_size: Windows per forward pass.
        how: Aggregation of window scores, ``"mean"`` or ``"max"``.

    Returns:
        A :class:`TagResult`.
    """
    model.eval()
    window = model.crop_samples
    wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    if wave.dim() != 1:
        raise ValueError(f"expected a mono waveform [samples], got {tuple(wave.shape)}")
    starts = window_starts(wave.shape[0], window, hop or window)
    device = next(model.parameters()).device
    scores = [
        model.predict_proba(batch.to(device)).float().cpu()
        for batch in _batches(wave, starts, window, batch_size)
    ]
    per_window = torch.cat(scores)
    track = aggregate(per_window.unsqueeze(0), how)[0]
    return TagResult(
        scores=track.numpy(),
        window_scores=per_window.numpy(),
        starts=np.asarray(starts),
        tags=list(model.tags),
        sample_rate=model.sample_rate,
    )


def tag_file(
    model: Tagger, path: str | Path, hop: int | None = None, batch_size: int = 16, how: str = "mean"
) -> TagResult:
    """Tag an audio file of any length and format (decoded, downmixed, resampled to the model's rate).

    Args:
        model: A tagger.
        path: Audio file.
        hop: Hop between windows in samples at the model's rate; default: the window length.
        batch_size: Windows per forward pass.
        how: ``"mean"`` or ``"max"`` aggregation.
    """
    return tag_waveform(model, load_audio(path, model.sample_rate), hop, batch_size, how)
