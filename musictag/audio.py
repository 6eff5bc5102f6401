"""Reading audio files: any format soundfile reads, downmixed to mono, resampled once with soxr.

A file is decoded whole (:func:`load_audio`) or streamed block by block (:func:`stream_audio`,
for files of any length), through :class:`~musictag.audio_reader.AudioReader`, so that a bad
file is reported the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from .audio_reader import (
    AudioReader,
    AudioReadError,
    TruncatedAudioError,
    Truncation,
    describe_read_error,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_BLOCK_FRAMES",
    "AudioReadError",
    "AudioReader",
    "Truncation",
    "TruncatedAudioError",
    "describe_read_error",
    "load_audio",
    "read_audio",
    "stream_audio",
    "to_mono_resampled",
]

AUDIO_EXTENSIONS: tuple[str, ...] = ("wav", "flac", "ogg", "oga", "opus", "mp3", "aif", "aiff")
"""Extensions of the audio files collected from folders (matched case-insensitively)."""
DEFAULT_BLOCK_FRAMES = 1 << 17
"""Frames decoded per block when streaming (about 3 s at 44.1 kHz)."""


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


def read_audio(
    path: str | Path, sample_rate: int, strict: bool = False
) -> tuple[np.ndarray, Truncation | None]:
    """Decode a file to mono float32 at ``sample_rate``, with its truncation note.

    Args:
        path: Audio file.
        sample_rate: Target sample rate in Hz.
        strict: Refuse a truncated file (:class:`TruncatedAudioError`).

    Returns:
        ``([samples] float32, Truncation or None)``.

    Raises:
        AudioReadError: naming the file, when it is missing, unreadable, empty or non-finite.
    """
    with AudioReader(path, strict=strict) as reader:
        x = reader.read()
        try:
            return to_mono_resampled(x, reader.sample_rate, sample_rate), reader.truncation
        except ValueError as e:
            raise AudioReadError(f"{reader.path}: {e}") from e


def load_audio(path: str | Path, sample_rate: int, strict: bool = False) -> np.ndarray:
    """Decode an audio file (wav, flac, ogg, mp3, ...) to mono float32 at ``sample_rate``.

    A file that decodes to less than its header promises is returned as far as it decodes, with
    a logged warning (refused with ``strict``).

    Args:
        path: Audio file.
        sample_rate: Target sample rate in Hz.
        strict: Refuse a truncated file (:class:`TruncatedAudioError`).

    Returns:
        ``[samples]`` float32 in [-1, 1].

    Raises:
        AudioReadError: naming the file, when it is missing, unreadable, empty or non-finite.
    """
    return read_audio(path, sample_rate, strict)[0]


def stream_audio(
    path: str | Path,
    sample_rate: int,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    *,
    strict: bool = False,
    truncations: list[Truncation] | None = None,
) -> Iterator[np.ndarray]:
    """Decode an audio file block by block, as mono float32 at ``sample_rate``.

    Channels are averaged and the audio is resampled with ``soxr.ResampleStream`` (quality
    ``"HQ"``), so the concatenated blocks equal :func:`load_audio` exactly, while
    only one block is in memory at a time.

    Args:
        path: Any file soundfile reads (wav, flac, ogg, mp3, ...).
        sample_rate: Output rate in Hz.
        block_frames: Frames decoded per block, at the file's rate.
        strict: Refuse a file that decodes to less than its header promises.
        truncations: When given, a file that decodes to less than its header promises (and is
            used as far as it decodes) adds its :class:`~musictag.audio.Truncation` here.

    Yields:
        float32 ``[n]`` chunks (non-empty).

    Raises:
        AudioReadError: naming the file, when it is missing, unreadable, empty or non-finite
            (:class:`~musictag.audio.TruncatedAudioError` for a truncated file with ``strict``).
    """
    n_in = 0
    with AudioReader(path, strict=strict) as reader:
        in_rate = reader.sample_rate
        resampler = (
            soxr.ResampleStream(in_rate, sample_rate, 1, dtype="float32", quality="HQ")
            if in_rate != sample_rate
            else None
        )
        for block in reader.blocks(int(block_frames)):
            x = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if not np.isfinite(x).all():
                raise AudioReadError(f"{path}: non-finite samples (NaN or Inf)")
            n_in += x.shape[0]
            if resampler is not None:
                x = resampler.resample_chunk(x, last=False)
            if x.size:
                yield x
        if resampler is not None and n_in:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                yield tail
        if reader.truncation is not None and truncations is not None:
            truncations.append(reader.truncation)
    if n_in == 0:
        raise AudioReadError(f"{path}: zero-length audio")
