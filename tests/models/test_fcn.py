"""FCN: pooling arithmetic at 96 and 128 mel bands, published state_dict names."""

from __future__ import annotations

import pytest
import torch

from musictag.models.fcn import FCN

SMALL = (4, 8, 8, 8, 4)


@pytest.mark.parametrize(("n_mels", "freqs"), [(96, [48, 24, 12, 4, 1]), (128, [64, 32, 16, 5, 1])])
def test_pools_reach_one_cell_at_the_published_length(n_mels, freqs):
    net = FCN(n_mels=n_mels, channels=SMALL).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(1, 1, n_mels, 1813))  # 464000 samples
    assert [s.shape[2] for s in stages] == freqs
    assert [s.shape[3] for s in stages] == [453, 113, 28, 5, 1]
    assert emb.shape == (1, 4)
    torch.testing.assert_close(emb, stages[-1].flatten(1))  # the published view(B, -1)


def test_leftover_cells_are_max_pooled():
    net = FCN(channels=SMALL).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 96, 3626))
    assert stages[-1].shape[-1] == 2
    torch.testing.assert_close(emb, stages[-1].amax(dim=(2, 3)))


def test_too_few_mels_for_the_pools():
    with pytest.raises(ValueError, match="n_mels=32"):
        FCN(n_mels=32)


def test_state_dict_names_follow_the_published_fcn():
    keys = set(FCN().state_dict())
    expected = {
        f"layer{i}.{m}.{p}"
        for i in range(1, 6)
        for m, params in (
            ("conv", ("weight", "bias")),
            ("bn", ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
        )
        for p in params
    }
    assert keys == expected
