"""CNN + self-attention tagger (Won et al. 2019, "Toward interpretable music tagging with
self-attention"; ``CNNSA`` in Won et al. 2020).

Seven residual blocks turn a 128-band log-mel into a sequence of 256-d frame vectors (frequency is
strided to 1, time by 8); a fixed [CLS] vector is prepended, a small BERT encoder (2 layers,
8 heads) relates the frames, and the BERT pooler (dense + tanh on the [CLS] output) gives the
embedding. With the defaults this is the published ``CNNSA`` (10,521,652 parameters with a 50-tag
head and the BatchNorm frontend). The BERT layers are written in plain torch with the
HuggingFace names (``encoder.layer.0.attention.self.query`` ...), so state_dicts map 1:1.

The published model uses ``BertEncoder`` and ``BertPooler`` only: no ``BertEmbeddings``, hence no
position embeddings (``max_position_embeddings=700`` is in its config but unused) and no input
LayerNorm; the order of the frames reaches the encoder only through the convolutional features.
``position_embeddings=True`` adds BERT's learned position embeddings + LayerNorm + dropout as an
option (+179,712 parameters for 700 positions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .base import Backbone
from .shortchunk import Res2d

__all__ = ["BertEncoder", "BertPooler", "CNNSA", "cls_vector"]

_STRIDES = ((2, 2), (2, 2), (2, 2), (2, 1), (2, 1), (2, 1), (2, 1))
_CHANNELS = (128, 128, 256, 256, 256, 256, 256)


def cls_vector(dim: int = 256, seed: int = 0) -> torch.Tensor:
    """The fixed [CLS] vector of the published model: ``np.random.seed(0); np.random.random((1, dim))``.

    Built from a private ``RandomState`` so numpy's global RNG is left untouched.

    Returns:
        float32 ``[1, dim]``; for ``dim=256`` it starts ``0.5488135, 0.7151894, 0.6027634``.
    """
    values = np.random.RandomState(seed).random_sample((1, dim))
    return torch.tensor(values, dtype=torch.float32)


class _BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of the {heads} heads")
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # [B, H, N, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        probs = self.dropout(scores.softmax(-1))
        out = probs @ v  # [B, H, N, d]
        return out.transpose(1, 2).flatten(2)


class _BertResidualOutput(nn.Module):
    """dense → dropout → LayerNorm(· + residual): BERT's ``SelfOutput`` and ``Output``."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _BertAttention(nn.Module):
    def __init__(
        self, hidden: int, heads: int, hidden_dropout: float, attn_dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.self = _BertSelfAttention(hidden, heads, attn_dropout)
        self.output = _BertResidualOutput(hidden, hidden, hidden_dropout, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class _BertIntermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)
        self.intermediate_act_fn = nn.GELU()  # exact (erf) GELU, as BERT's "gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(x))


class _BertLayer(nn.Module):
    def __init__(
        self,
        hidden: int,
        heads: int,
        intermediate: int,
        hidden_dropout: float,
        attn_dropout: float,
        eps: float,
    ) -> None:
        super().__init__()
        self.attention = _BertAttention(hidden, heads, hidden_dropout, attn_dropout, eps)
        self.intermediate = _BertIntermediate(hidden, intermediate)
        self.output = _BertResidualOutput(intermediate, hidden, hidden_dropout, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention(x)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    """A stack of post-LayerNorm BERT layers (no attention mask), with HuggingFace names.

    Args:
        hidden: Hidden size.
        layers: Number of layers.
        heads: Attention heads.
        intermediate: Feed-forward size.
        hidden_dropout: Dropout after the attention output and the feed-forward output.
        attention_dropout: Dropout on the attention probabilities.
        eps: LayerNorm epsilon (1e-12 as in BERT).

    Shape:
        ``[batch, tokens, hidden]`` → list of ``layers`` tensors ``[batch, tokens, hidden]``.
    """

    def __init__(
        self,
        hidden: int = 256,
        layers: int = 2,
        heads: int = 8,
        intermediate: int = 1024,
        hidden_dropout: float = 0.4,
        attention_dropout: float = 0.5,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            _BertLayer(hidden, heads, intermediate, hidden_dropout, attention_dropout, eps)
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layer:
            x = layer(x)
            outputs.append(x)
        return outputs


class BertPooler(nn.Module):
    """dense + tanh on the first token: ``[batch, tokens, hidden]`` → ``[batch, hidden]``."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.activation = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(x[:, 0]))


class _PositionEmbeddings(nn.Module):
    """BERT's learned position embeddings → LayerNorm → dropout (optional, not in the published model)."""

    def __init__(self, max_positions: int, hidden: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if n > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"{n} tokens exceed max_positions={self.position_embeddings.num_embeddings}; "
                "use shorter crops or a larger max_positions"
            )
        pos = self.position_embeddings.weight[:n].unsqueeze(0)
        return self.dropout(self.LayerNorm(x + pos))


class CNNSA(Backbone):
    """Residual CNN front, [CLS] + BERT encoder back, BERT pooler output as the embedding.

    Args:
        n_mels: Frequency bins of the input (128 in the paper). Whatever frequency is left after
            the strides is max-pooled away.
        channels: Output channels of the seven ``Res_2d`` blocks; the last is the hidden size.
        strides: Stride ``(freq, time)`` (or an int) of each block.
        heads: Attention heads.
        layers: Encoder layers.
        intermediate: Feed-forward size.
        hidden_dropout: BERT hidden dropout.
        attention_dropout: BERT attention-probability dropout.
        position_embeddings: Add learned position embeddings + LayerNorm before the encoder
            (not in the published model).
        max_positions: Number of learned positions (tokens including [CLS]).
        in_channels: Channels of the input features.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, channels[-1]]``.
        For the published input (128 × 938 frames from 240,000 samples) the CNN gives
        ``[batch, 256, 1, 118]``, i.e. 118 frame tokens + [CLS].
    """

    def __init__(
        self,
        n_mels: int = 128,
        channels: Sequence[int] = _CHANNELS,
        strides: Sequence[int | Sequence[int]] = _STRIDES,
        heads: int = 8,
        layers: int = 2,
        intermediate: int = 1024,
        hidden_dropout: float = 0.4,
        attention_dropout: float = 0.5,
        position_embeddings: bool = False,
        max_positions: int = 700,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        channels = list(channels)
        strides = [tuple(s) if isinstance(s, Sequence) else (s, s) for s in strides]
        if len(channels) != len(strides):
            raise ValueError(
                f"channels ({len(channels)}) and strides ({len(strides)}) differ in length"
            )
        self.n_blocks = len(channels)
        prev = in_channels
        for i, (c, s) in enumerate(zip(channels, strides, strict=True), start=1):
            setattr(self, f"layer{i}", Res2d(prev, c, 3, stride=s))
            prev = c
        hidden = prev
        self.embeddings = (
            _PositionEmbeddings(max_positions, hidden, hidden_dropout, 1e-12)
            if position_embeddings
            else None
        )
        self.encoder = BertEncoder(
            hidden, layers, heads, intermediate, hidden_dropout, attention_dropout, 1e-12
        )
        self.pooler = BertPooler(hidden)
        self.register_buffer("vec_cls", cls_vector(hidden))
        self.embed_dim = hidden

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        seq = x.amax(dim=2).transpose(1, 2)  # [B, T, C]; a squeeze when frequency is 1
        cls = self.vec_cls.to(seq.dtype).expand(seq.shape[0], 1, -1)
        seq = torch.cat([cls, seq], dim=1)
        if self.embeddings is not None:
            seq = self.embeddings(seq)
        outputs = self.encoder(seq)
        stages.extend(o.transpose(1, 2) for o in outputs)
        return self.pooler(outputs[-1]), stages
