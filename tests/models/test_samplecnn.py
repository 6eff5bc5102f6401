"""SampleCNN: block types, pooling to one frame, multi-level aggregation, published names."""

from __future__ import annotations

import pytest
import torch

from musictag import model_entry
from musictag.models.samplecnn import ResBlock1d, SampleCNN, SEBlock1d

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
SMALL = (4, 4, 8, 8, 8, 8, 8, 8, 16)


def _keys(prefix, names, params):
    return {f"{prefix}.{n}.{p}" for n in names for p in params}


def test_nine_blocks_pool_3_to_the_10_down_to_one_frame():
    net = SampleCNN(channels=SMALL, stem_channels=4).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 59049))
    assert [s.shape[-1] for s in stages] == [3**k for k in range(9, -1, -1)] + [1]
    assert emb.shape == (2, 16) and net.receptive_samples == 59049


@pytest.mark.parametrize("block", ["basic", "se", "res", "rese"])
def test_block_types_run_and_multi_level_concatenates_the_last_three(block):
    net = SampleCNN(
        block=block, channels=SMALL, stem_channels=4, multi_level=True, final_conv=False, fc=True
    )
    net.eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 59049))
    assert len(stages) == 10 and net.embed_dim == 8 + 8 + 16 == emb.shape[1]
    pooled = torch.cat([s.amax(-1) for s in stages[-3:]], 1)
    torch.testing.assert_close(emb, net.relu(net.bn(net.dense1(pooled))))


def test_se_amplifying_ratio_and_shortcut():
    assert SEBlock1d(4, 8, amplifying_ratio=16).se.dense1.out_features == 128
    assert ResBlock1d(8, 8, amplifying_ratio=1).dense1.out_features == 8
    assert not ResBlock1d(8, 8).diff and ResBlock1d(8, 16).diff and ResBlock1d(8, 8, stride=3).diff
    assert not hasattr(ResBlock1d(8, 8, se=False), "dense1")
    with pytest.raises(ValueError, match="unknown block"):
        SampleCNN(block="dense")


def test_state_dict_names_follow_the_published_samplecnn():
    model = model_entry("samplecnn").create()
    keys = {k.removeprefix("backbone.").replace("head.fc.", "dense.") for k in model.state_dict()}
    layers = [f"layer{i}" for i in range(1, 12)]
    expected = {f"{n}.conv.{p}" for n in layers for p in ("weight", "bias")}
    expected |= {f"{n}.bn.{p}" for n in layers for p in BN} | {"dense.weight", "dense.bias"}
    assert keys == expected and len(keys) == 79


def test_state_dict_names_follow_the_published_samplecnn_se():
    model = model_entry("samplecnn_se").create()
    sd = model.state_dict()
    keys = {k.removeprefix("backbone.").replace("head.fc.", "dense2.") for k in sd}
    expected = {"dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias"} | _keys(
        "", ["bn"], BN
    )
    expected = {k.lstrip(".") for k in expected}
    for i in range(1, 12):
        expected |= _keys(f"layer{i}", ["conv_1", "conv_2", "dense1", "dense2"], ("weight", "bias"))
        expected |= _keys(f"layer{i}", ["bn_1", "bn_2"], BN)
        if i in (1, 4, 10):  # stride or width changes: conv_3/bn_3 shortcut
            expected |= _keys(f"layer{i}", ["conv_3"], ("weight", "bias")) | _keys(
                f"layer{i}", ["bn_3"], BN
            )
    assert keys == expected and len(keys) == 228
    assert sd["backbone.layer11.conv_1.weight"].shape == (512, 512, 1)
    assert sd["backbone.layer1.conv_3.weight"].shape == (128, 1, 3)
