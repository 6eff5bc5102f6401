"""Musicnn: filter shapes, dense residual back end, published state_dict names."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from musictag.models.musicnn import ConvH, ConvV, Musicnn, vertical_conv


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


def _conv2d_conv_v(block: ConvV, x: torch.Tensor) -> torch.Tensor:
    """The vertical filter as the published code computes it: a 2D convolution, max over bands."""
    return block.relu(block.bn(block.conv(x))).amax(dim=2)


@pytest.mark.parametrize("in_channels", [1, 2])
def test_vertical_conv_is_the_2d_convolution(in_channels):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, in_channels, 24, 17, generator=g, requires_grad=True)
    weight = torch.randn(5, in_channels, 9, 3, generator=g, requires_grad=True)
    bias = torch.randn(5, generator=g, requires_grad=True)
    want = F.conv2d(x, weight, bias, padding=(0, 1))  # [3, 5, 16 bands, 17]
    got = vertical_conv(x, weight, bias)  # [3 * 16, 5, 17]
    assert got.shape == (3 * 16, 5, 17)
    torch.testing.assert_close(got.view(3, 16, 5, 17).transpose(1, 2), want, rtol=1e-5, atol=1e-5)
    seed = torch.randn(want.shape, generator=g)
    grads = [torch.autograd.grad((y * seed).sum(), (x, weight, bias)) for y in (
        want, got.view(3, 16, 5, 17).transpose(1, 2))]  # fmt: skip
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_conv_v_equals_the_published_formulation():
    """Values in float32 (training and eval mode, running statistics) and gradients in float64,
    where no two bands tie by round-off (a tie sends the max's gradient to another band)."""
    torch.manual_seed(0)
    block = ConvV(1, 16, (67, 7))
    x = torch.randn(4, 1, 96, 40)
    reference = copy.deepcopy(block)
    for mode in (True, False):
        block.train(mode), reference.train(mode)
        torch.testing.assert_close(block(x), _conv2d_conv_v(reference, x), rtol=1e-5, atol=1e-5)
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(block.bn, name), getattr(reference.bn, name))

    block, reference = block.double().train(), reference.double().train()
    x = x.double().requires_grad_()
    seed = torch.randn(4, 16, 40, dtype=torch.float64)
    params = [x, block.conv.weight, block.conv.bias, block.bn.weight, block.bn.bias]
    ref_params = [
        x,
        reference.conv.weight,
        reference.conv.bias,
        reference.bn.weight,
        reference.bn.bias,
    ]
    got = torch.autograd.grad((block(x) * seed).sum(), params)
    want = torch.autograd.grad((_conv2d_conv_v(reference, x) * seed).sum(), ref_params)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)


def test_vertical_conv_under_bf16_autocast_keeps_a_float32_input_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 32, 20, generator=g, requires_grad=True)
    weight = torch.randn(6, 1, 20, 3, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = vertical_conv(x, weight, None)
    assert got.dtype == torch.bfloat16
    want = vertical_conv(x, weight, None)
    assert (got.float() - want).abs().max() <= 0.02 * want.abs().max()  # bf16 round-off
    got.float().sum().backward()
    assert x.grad.dtype == weight.grad.dtype == torch.float32
