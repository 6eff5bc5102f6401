"""Short-chunk CNN / ResNet: block arithmetic, published state_dict names, global pooling."""

from __future__ import annotations

import pytest
import torch

from musictag.models.shortchunk import Res2d, Res2dMP, ShortChunkCNN, ShortChunkResNet

SMALL = (4, 4, 8, 8, 8, 8, 8)


def _stage_shapes(backbone, x):
    backbone.eval()
    with torch.no_grad():
        emb, stages = backbone.forward_intermediates(x)
    return emb, [tuple(s.shape[-2:]) for s in stages]


def test_res2d_shortcut_only_when_shape_changes():
    assert Res2d(4, 4, stride=1).diff is False and not hasattr(Res2d(4, 4, stride=1), "conv_3")
    assert Res2d(4, 8, stride=1).diff is True
    assert Res2d(4, 4, stride=2).diff is True
    assert Res2d(4, 4, stride=(2, 1)).conv_3.stride == (2, 1)


def test_res2d_and_res2d_mp_shapes():
    x = torch.randn(1, 3, 128, 231)
    assert Res2d(3, 5, stride=2)(x).shape == (1, 5, 64, 116)  # ceil(n / 2)
    assert Res2d(3, 5, stride=(2, 1))(x).shape == (1, 5, 64, 231)
    assert Res2dMP(3, (2, 3))(x).shape == (1, 3, 64, 77)  # floor(n / pool)


def test_short_chunk_cnn_stage_arithmetic():
    emb, shapes = _stage_shapes(
        ShortChunkCNN(channels=SMALL, embed_dim=6), torch.randn(2, 1, 128, 231)
    )
    assert shapes == [(64, 115), (32, 57), (16, 28), (8, 14), (4, 7), (2, 3), (1, 1)]
    assert emb.shape == (2, 6)


def test_short_chunk_resnet_stage_arithmetic():
    emb, shapes = _stage_shapes(
        ShortChunkResNet(channels=SMALL, embed_dim=6), torch.randn(2, 1, 128, 231)
    )
    assert shapes == [(64, 116), (32, 58), (16, 29), (8, 15), (4, 8), (2, 4), (1, 2)]
    assert emb.shape == (2, 6)


def test_global_max_covers_leftover_frequency_and_time():
    net = ShortChunkResNet(n_mels=256, channels=SMALL, embed_dim=6).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 256, 300))
    assert stages[-1].shape[-2:] == (2, 3)
    manual = net.relu(net.bn(net.dense1(stages[-1].amax(dim=(2, 3)))))
    torch.testing.assert_close(emb, manual)


def test_too_few_mels_for_the_pools():
    with pytest.raises(ValueError, match="n_mels=64"):
        ShortChunkCNN(n_mels=64)


def test_state_dict_names_match_the_published_models():
    cnn = ShortChunkCNN(channels=SMALL, embed_dim=6)
    expected = {
        f"layer{i}.{m}.{p}" for i in range(1, 8) for m, p in [("conv", "weight"), ("conv", "bias")]
    }
    expected |= {
        f"layer{i}.bn.{p}"
        for i in range(1, 8)
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    expected |= {"dense1.weight", "dense1.bias"}
    expected |= {
        f"bn.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    assert set(cnn.state_dict()) == expected

    res = ShortChunkResNet(channels=SMALL, embed_dim=6)
    keys = set(res.state_dict())
    # every block strides by 2, so every block has the conv_3/bn_3 shortcut: 163 entries published,
    # minus the 7 frontend entries (window, fb, spec_bn) and the 2 of dense2 (the Tagger's head)
    assert len(keys) == 163 - 7 - 2
    assert {"layer1.conv_3.weight", "layer7.bn_3.running_var", "layer4.bn_1.weight"} <= keys


def test_deterministic_given_seed():
    torch.manual_seed(0)
    a = ShortChunkResNet(channels=SMALL)
    torch.manual_seed(0)
    b = ShortChunkResNet(channels=SMALL)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
