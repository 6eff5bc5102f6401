"""CRNN specifics: the published layout and the two options the demo uses."""

from __future__ import annotations

import pytest
import torch

from musictag.models.crnn import CRNN


def test_published_layout_pools_frequency_to_one():
    m = CRNN(n_mels=96)
    x = torch.randn(2, 1, 96, 1813)  # 29 s at hop 256
    emb, stages = m.forward_intermediates(x)
    assert emb.shape == (2, 32)
    assert stages[3].shape == (2, 128, 1, 18)  # 96/2/3/4/4 = 1 band, 1813 -> 18 frames
    assert stages[4].shape == (2, 32, 18)  # GRU outputs, the last step is the embedding
    assert torch.equal(emb, stages[4][:, :, -1])


def test_flatten_and_mean_max_options():
    m = CRNN(
        n_mels=32,
        channels=(4, 8),
        pools=((2, 2), (4, 2)),
        gru_hidden=5,
        freq_reduce="flatten",
        readout="mean_max",
    )
    assert m.layer3.input_size == 8 * 4  # channels x remaining bands
    assert m.embed_dim == 10
    emb, stages = m.forward_intermediates(torch.randn(3, 1, 32, 40))
    seq = stages[-1]
    assert emb.shape == (3, 10)
    assert torch.allclose(emb, torch.cat([seq.mean(-1), seq.amax(-1)], dim=-1))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="pooled to zero"):
        CRNN(n_mels=16, pools=((2, 2), (3, 3), (4, 4), (4, 4)))
    with pytest.raises(ValueError, match="freq_reduce"):
        CRNN(freq_reduce="mean")
    with pytest.raises(ValueError, match="readout"):
        CRNN(readout="first")
