"""Reading audio files: any format soundfile reads, downmixed to mono, resampled once with soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

__all__ = ["AudioReadError", "load_audio", "to_mono_resampled"]


class AudioReadError(ValueError):
    """An audio file could not be used; the message names the file and the reason."""


def to_mono_resampled(x: np.ndarray, in_rate: int, sample_rate: int) -> np.ndarray:
    """Downmix ``[frames, channels]`` (or ``[frames]``) to mono and resample to ``sample_rate``.

    Args:
        x: Audio, ``[frames]`` or ``[frames, channels]``.
        in_rate: Sample rate of ``x``.
        sample_rate: Target sample rate.

    Returns:
        float32 ``[samples]``.

    Raises:
        ValueError: for empty or non-finite audio.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    if x.size == 0:
        raise ValueError("zero-length audio")
    if not np.isfinite(x).all():
        raise ValueError("non-finite samples (NaN or Inf)")
    if in_rate != sample_rate:
        x = soxr.resample(x, in_rate, sample_rate, quality="HQ")
        if x.size == 0:
            raise ValueError(f"too short to resample from {in_rate} Hz to {sample_rate} Hz")
    return np.ascontiguousarray(x, dtype=np.float32)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode an audio file (wav, flac, ogg, mp3, ...) to mono float32 at ``sample_rate``.

    Args:
        path: Audio file.
        sample_rate: Target sample rate in Hz.

    Returns:
        ``[samples]`` float32 in [-1, 1].

    Raises:
        AudioReadError: naming the file, when it is missing, unreadable, empty or non-finite.
    """
    path = Path(path)
    try:
        x, in_rate = sf.read(path, dtype="float32", always_2d=True)
        return to_mono_resampled(x, in_rate, sample_rate)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as e:
        raise AudioReadError(f"{path}: {e}") from e
