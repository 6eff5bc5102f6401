"""Musicnn: filter shapes, dense residual back end, published state_dict names."""

from __future__ import annotations

import pytest
import torch

from musictag.models.musicnn import ConvH, ConvV, Musicnn


def test_conv_v_and_conv_h_keep_the_frames():
    x = torch.randn(2, 1, 96, 188)
    assert ConvV(1, 5, (67, 7))(x).shape == (2, 5, 188)
    assert ConvH(1, 3, 129)(x).shape == (2, 3, 188)


@pytest.mark.parametrize(("n_mels", "heights"), [(96, (67, 38)), (128, (89, 51))])
def test_vertical_heights_follow_n_mels(n_mels, heights):
    net = Musicnn(n_mels=n_mels)
    assert tuple(layer.conv.kernel_size[0] for layer in net.layers[:2]) == heights
    assert [layer.conv.kernel_size for layer in net.layers[2:]] == [(129,), (65,), (33,)]


def test_stages_and_embedding():
    net = Musicnn(backend_channels=8, embed_dim=6).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 96, 188))
    assert [tuple(s.shape) for s in stages] == [
        (2, 561, 188),
        (2, 8, 188),
        (2, 8, 188),
        (2, 8, 188),
    ]
    assert emb.shape == (2, 6) and (emb >= 0).all()  # after ReLU
    assert net.dense1.in_features == 2 * (561 + 3 * 8)


def test_msd_size_shapes():
    sd = Musicnn(backend_channels=512, embed_dim=500).state_dict()
    assert sd["layer1.conv.weight"].shape == (512, 561, 7)
    assert sd["dense1.weight"].shape == (500, 4194)


def test_state_dict_names_follow_the_published_musicnn():
    keys = set(Musicnn().state_dict())
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    blocks = [f"layers.{i}" for i in range(5)] + ["layer1", "layer2", "layer3"]
    expected = {f"{b}.conv.{p}" for b in blocks for p in ("weight", "bias")}
    expected |= {f"{b}.bn.{p}" for b in blocks for p in bn}
    expected |= {"dense1.weight", "dense1.bias"} | {f"bn.{p}" for p in bn}
    assert keys == expected
