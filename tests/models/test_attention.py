"""CNN + self-attention: the [CLS] vector, token arithmetic, BERT names and counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musictag.models.attention import CNNSA, cls_vector

SMALL = dict(channels=(4, 4, 8, 8, 8, 8, 8), heads=2, intermediate=16)


def test_cls_vector_reproduces_the_published_values_without_touching_numpy_rng():
    np.random.seed(123)
    state = np.random.get_state()
    v = cls_vector(256)
    after = np.random.get_state()
    assert v.shape == (1, 256) and v.dtype == torch.float32
    np.testing.assert_allclose(v[0, :3].numpy(), [0.5488135, 0.7151894, 0.6027634], rtol=1e-6)
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2] == after[2]
    net = CNNSA(**SMALL)
    assert torch.equal(net.vec_cls, cls_vector(8)) and "vec_cls" in net.state_dict()


def test_token_arithmetic_on_the_published_input():
    net = CNNSA(**SMALL).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(2, 1, 128, 938))  # 240000 samples
    assert [tuple(s.shape[-2:]) for s in stages[:7]] == [
        (64, 469),
        (32, 235),
        (16, 118),
        (8, 118),
        (4, 118),
        (2, 118),
        (1, 118),
    ]
    assert [tuple(s.shape) for s in stages[7:]] == [(2, 8, 119), (2, 8, 119)]  # [CLS] + 118 frames
    assert emb.shape == (2, 8) and emb.abs().max() <= 1  # tanh pooler


def test_batches_larger_than_64_work():
    net = CNNSA(**SMALL).eval()
    with torch.no_grad():
        assert net(torch.randn(65, 1, 128, 16)).shape == (65, 8)


def test_bert_names_and_the_published_count():
    net = CNNSA()
    keys = [k for k in net.state_dict() if k.startswith(("encoder", "pooler"))]
    assert len(keys) == 2 * 16 + 2  # as listed for the published CNNSA
    assert "encoder.layer.1.attention.output.LayerNorm.weight" in keys
    assert "encoder.layer.0.intermediate.dense.weight" in keys and "pooler.dense.bias" in keys
    assert net.encoder.layer[0].output.LayerNorm.eps == 1e-12
    assert not any(k.startswith("embeddings") for k in net.state_dict())
    n = sum(p.numel() for p in net.parameters())
    # + spec_bn (2) + dense (256 * 50 + 50) = 10,521,652, the published CNNSA
    assert n + 2 + 256 * 50 + 50 == 10_521_652
    with_pos = CNNSA(position_embeddings=True)
    assert sum(p.numel() for p in with_pos.parameters()) - n == 700 * 256 + 2 * 256


def test_too_many_tokens_for_learned_positions():
    net = CNNSA(**SMALL, position_embeddings=True, max_positions=3).eval()
    with pytest.raises(ValueError, match="max_positions=3"):
        net(torch.randn(1, 1, 128, 32))  # 4 frame tokens + [CLS]
