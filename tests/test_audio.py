"""Decoding audio files: streamed decoding equals one-shot decoding in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np

from musictag.audio import load_audio, stream_audio
from musictag.tta import sliding_windows, window_starts

from .test_inference import CROP, SR, noise_file


def test_stream_audio_equals_load_audio_and_memory_stays_bounded(tmp_path):
    # stereo 11.025 kHz, 4 minutes: downmix + streaming resampler == one-shot load_audio
    path = noise_file(tmp_path / "long.wav", 240, rate=11025, channels=2)
    chunks = list(stream_audio(path, SR, block_frames=30000))
    assert len(chunks) > 50
    assert np.array_equal(np.concatenate(chunks), load_audio(path, SR))
    del chunks
    # windowing the stream holds a few windows, not the 7.7 MB signal
    tracemalloc.start()
    n = sum(1 for _ in sliding_windows(stream_audio(path, SR, 30000), CROP, CROP // 2))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == len(window_starts(240 * SR, CROP, CROP // 2))
    assert peak < 1_000_000, peak
