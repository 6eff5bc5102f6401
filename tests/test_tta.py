"""Crop extraction, window cutting and aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musictag.presets import CRNNTagger
from musictag.tta import (
    aggregate,
    eval_crop_starts,
    extract_crops,
    sliding_windows,
    window_starts,
)


def test_crop_starts_follow_the_published_protocol():
    # hop = (len - crop) // k, starts i * hop: first at 0, last short of the end
    assert eval_crop_starts(100, 20, 4) == [0, 20, 40, 60]
    assert eval_crop_starts(103, 20, 16) == [i * 5 for i in range(16)]
    assert eval_crop_starts(10, 20, 3) == [0, 0, 0]


def test_extract_crops_pads_short_tracks():
    w = torch.arange(1, 11, dtype=torch.float32)
    crops = extract_crops(w, 4, 3)
    assert torch.equal(crops[1], w[2:6])
    short = extract_crops(w[:3], 5, 2)
    assert short.shape == (2, 5) and torch.equal(short[0], torch.tensor([1.0, 2, 3, 0, 0]))


def test_extract_crops_of_arrays_and_of_a_track_beginning():
    w = np.arange(1, 104, dtype=np.float32)
    crops = extract_crops(w, 20, 16)
    assert isinstance(crops, np.ndarray) and crops.shape == (16, 20) and crops.dtype == np.float32
    assert np.array_equal(crops, extract_crops(torch.from_numpy(w), 20, 16).numpy())
    # the data module decodes a track only up to the end of its last crop
    assert np.array_equal(extract_crops(w[:95], 20, 16, num_samples=103), crops)
    assert np.array_equal(extract_crops(w[:3], 5, 2, num_samples=3)[1], [1, 2, 3, 0, 0])


def test_aggregate_mean_and_max():
    s = torch.rand(3, 5, 4)
    assert torch.allclose(aggregate(s), s.mean(1))
    assert torch.equal(aggregate(s, "max"), s.amax(1))
    with pytest.raises(ValueError):
        aggregate(s, "median")


def test_track_scores_are_the_mean_of_per_crop_outputs():
    torch.manual_seed(0)
    model = CRNNTagger(
        n_tags=5,
        n_mels=32,
        pools=((2, 2), (2, 2), (2, 2), (4, 2)),
        crop_samples=8000,
        eval_chunk_size=3,
    ).eval()
    crops = torch.randn(2, 4, 8000) * 0.1
    with torch.no_grad():
        per_crop = torch.stack([torch.sigmoid(model(crops[:, i])) for i in range(4)], dim=1)
        track = model.track_scores(crops)
    assert torch.allclose(track, per_crop.mean(1), atol=1e-6)


@pytest.mark.parametrize("window,hop", [(100, 100), (100, 30), (100, 170)])
def test_streamed_windows_are_those_of_the_whole_signal(window, hop):
    rng = np.random.default_rng(0)
    for n in (1, 99, 100, 101, 250, 1037):
        x = rng.standard_normal(n).astype(np.float32)
        for chunk in (1, 7, 64, 5000):
            got = list(sliding_windows([x[i : i + chunk] for i in range(0, n, chunk)], window, hop))
            assert [s for s, _ in got] == window_starts(n, window, hop)
            for s, w in got:
                ref = x[s : s + window]
                assert np.array_equal(w, np.pad(ref, (0, window - ref.size)))
    with pytest.raises(ValueError, match="zero-length"):
        list(sliding_windows([np.zeros(0)], window, hop))
