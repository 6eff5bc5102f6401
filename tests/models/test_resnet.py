"""Pre-activation ResNet with elongated pooling: shapes, shortcuts, pooling options."""

from __future__ import annotations

import pytest
import torch

from musictag.models.resnet import PreActBlock, ResNet


def test_elongated_pools_shrink_time_faster():
    net = ResNet(channels=(4, 4, 8, 8), blocks=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 128, 626))  # 160000 samples
    assert [tuple(s.shape[-2:]) for s in stages] == [(64, 156), (32, 39), (16, 9), (4, 4)]
    assert emb.shape == (2, 8) and net.embed_dim == 8


def test_preact_block_shortcuts():
    assert PreActBlock(4, 4).downsample is None
    block = PreActBlock(4, 8)
    assert block.downsample.kernel_size == (1, 1)
    assert block(torch.randn(1, 4, 5, 7)).shape == (1, 8, 5, 7)


@pytest.mark.parametrize("pooling", ["mean", "max", "meanmax"])
def test_global_pooling(pooling):
    net = ResNet(
        n_mels=16, channels=(4, 6), blocks=(1, 1), pools=((2, 2), (2, 2)), pooling=pooling
    ).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 16, 20))
    x = net.relu(net.bn(stages[-1]))
    expected = {
        "mean": x.mean(dim=(2, 3)),
        "max": x.amax(dim=(2, 3)),
        "meanmax": x.mean(2).mean(-1) + x.mean(2).amax(-1),
    }[pooling]
    torch.testing.assert_close(emb, expected)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="pooled to zero"):
        ResNet(n_mels=32, pools=((4, 2), (4, 2), (4, 2), (4, 2)))
    with pytest.raises(ValueError, match="one entry per stage"):
        ResNet(channels=(8, 8), blocks=(1,), pools=((2, 2), (2, 2)))
    with pytest.raises(ValueError, match="pooling"):
        ResNet(pooling="sum")
