"""GRU and Transformer taggers on mel frames: parameter budget, pooling, positions."""

from __future__ import annotations

import math

import pytest
import torch

from musictag import GRUTagger, TransformerTagger
from musictag.models.sequence import MelGRU, MelTransformer, sinusoidal_positions


def _count(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("cls", "expected"), [(GRUTagger, 726_309), (TransformerTagger, 696_357)])
def test_about_700k_parameters_for_163_genres(cls, expected):
    n = _count(cls(n_tags=163))
    assert 650_000 <= n <= 750_000
    assert n == expected  # the figure stated in the docstrings


def test_sinusoidal_positions():
    pe = sinusoidal_positions(5, 6)
    assert pe.shape == (5, 6)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(pe[3, 0], torch.tensor(math.sin(3.0)))
    torch.testing.assert_close(pe[3, 3], torch.tensor(math.cos(3.0 / 10000 ** (2 / 6))))
    assert sinusoidal_positions(4, 5).shape == (4, 5)  # odd widths work


@pytest.mark.parametrize("pooling", ["mean", "max", "attention", "cls"])
def test_transformer_poolings(pooling):
    net = MelTransformer(
        n_mels=16, d_model=8, heads=2, layers=2, dim_feedforward=16, pooling=pooling, mlp_dim=12
    )
    emb, stages = net.eval().forward_intermediates(torch.randn(3, 1, 16, 10))
    assert emb.shape == (3, 12)
    assert [s.shape for s in stages] == [(3, 8, 10 + (pooling == "cls"))] * 2


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_gru_poolings(pooling):
    net = MelGRU(n_mels=16, d_model=8, hidden=5, layers=3, pooling=pooling, mlp_dim=None)
    emb, stages = net.eval().forward_intermediates(torch.randn(3, 1, 16, 10))
    assert emb.shape == (3, 10) and net.embed_dim == 10
    assert [s.shape for s in stages] == [(3, 10, 10)] * 3
    with pytest.raises(ValueError, match="pooling"):
        MelGRU(pooling="cls")


def test_positions_make_the_transformer_order_aware():
    torch.manual_seed(0)
    kw = dict(n_mels=16, d_model=8, heads=2, layers=1, dim_feedforward=16)
    x = torch.randn(2, 1, 16, 10)
    flipped = x.flip(-1)
    with torch.no_grad():
        bag = MelTransformer(positional="none", **kw).eval()
        torch.testing.assert_close(bag(x), bag(flipped))
        ordered = MelTransformer(positional="sinusoidal", **kw).eval()
        assert not torch.allclose(ordered(x), ordered(flipped))


def test_learned_positions_have_a_length_limit():
    net = MelTransformer(
        n_mels=16, d_model=8, heads=2, layers=1, dim_feedforward=16, positional="learned", max_len=6
    )
    assert net(torch.randn(1, 1, 16, 6)).shape == (1, 512)
    with pytest.raises(ValueError, match="max_len=6"):
        net(torch.randn(1, 1, 16, 7))
