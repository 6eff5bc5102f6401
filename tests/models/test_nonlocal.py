"""Non-local blocks: identity at initialisation, shapes, gradient flow, insertion into backbones."""

from __future__ import annotations

import pytest
import torch

from musictag import ShortChunkResNetTagger
from musictag.models.nonlocal_block import NonLocal2d, insert_nonlocal, output_channels
from musictag.models.shortchunk import ShortChunkCNN, ShortChunkResNet

SMALL = (4, 4, 8, 8, 8, 8, 8)


@pytest.mark.parametrize("shape", [(2, 8, 6, 10), (2, 8, 5, 7), (2, 8, 1, 9)])
@pytest.mark.parametrize("sub_sample", [True, False])
def test_shape_and_identity_at_init(shape, sub_sample):
    block = NonLocal2d(8, sub_sample=sub_sample)
    x = torch.randn(*shape)
    for mode in (block.train, block.eval):
        mode()
        out = block(x)
        assert out.shape == x.shape
        assert torch.equal(out, x)


def test_embedded_gaussian_attention():
    torch.manual_seed(0)
    block = NonLocal2d(6, inter_channels=3, sub_sample=False).eval()
    block.W[1].weight.data.fill_(1.0)
    x = torch.randn(1, 6, 3, 4)
    flat = lambda conv: conv(x).flatten(2)[0]  # noqa: E731  [C', N]
    attn = torch.softmax(flat(block.theta).T @ flat(block.phi), dim=-1)
    y = (attn @ flat(block.g).T).T.reshape(1, 3, 3, 4)
    torch.testing.assert_close(block(x), x + block.W(y))


def test_gradient_flow():
    torch.manual_seed(0)
    block = NonLocal2d(8)
    x = torch.randn(2, 8, 6, 10, requires_grad=True)
    block(x).square().sum().backward()
    # at init only the zeroed BatchNorm receives gradient; the input gets the identity path
    assert block.W[1].weight.grad.abs().sum() > 0
    assert torch.equal(block.theta.weight.grad, torch.zeros_like(block.theta.weight))
    torch.testing.assert_close(x.grad, 2 * x)
    # once the output scale moves off zero, every projection learns
    block.zero_grad()
    block.W[1].weight.data.fill_(0.1)
    block(x).square().sum().backward()
    for name in ("theta", "phi", "g"):
        assert getattr(block, name).weight.grad.abs().sum() > 0, name


def test_insert_keeps_backbone_outputs_at_init():
    torch.manual_seed(0)
    net = ShortChunkResNet(channels=SMALL, embed_dim=6).eval()
    x = torch.randn(2, 1, 128, 64)
    with torch.no_grad():
        before = net(x)
        insert_nonlocal(net, ["layer2", "layer3"])
        after = net(x)
    assert torch.equal(before, after)
    assert isinstance(net.layer2[1], NonLocal2d) and net.layer2[1].channels == 4
    assert net.layer3[1].channels == 8
    assert "layer2.0.conv_1.weight" in net.state_dict()


def test_channel_inference_and_errors():
    cnn = ShortChunkCNN(channels=SMALL)
    assert output_channels(cnn.layer3) == 8
    with pytest.raises(ValueError, match="no submodule 'layer9'"):
        insert_nonlocal(cnn, ["layer9"])
    insert_nonlocal(cnn, ["layer1"], channels={"layer1": 4})
    with pytest.raises(ValueError, match="already"):
        insert_nonlocal(cnn, ["layer1"])
    with pytest.raises(ValueError, match="cannot infer"):
        output_channels(torch.nn.ReLU())


def test_preset_option_is_recorded_and_identity():
    torch.manual_seed(0)
    plain = ShortChunkResNetTagger(n_tags=3, channels=SMALL, embed_dim=6).eval()
    torch.manual_seed(0)
    wrapped = ShortChunkResNetTagger(
        n_tags=3, channels=SMALL, embed_dim=6, nonlocal_after=["layer3"]
    ).eval()
    assert list(wrapped.hparams.nonlocal_after) == ["layer3"]
    x = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), wrapped(x))  # same seed, identity block
