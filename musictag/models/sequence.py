"""Sequence taggers on mel frames: a bidirectional GRU and a Transformer encoder.

Each log-mel frame is a token: a linear projection maps its ``n_mels`` values to ``d_model``, a
recurrent or self-attention encoder relates the frames, and the sequence is pooled over time
(mean, max, attention or a [CLS] token) into a fixed-size vector; an optional ``Linear → ReLU``
gives the embedding. The defaults follow the GRU / Transformer comparison of
CVxTz/music_genre_classification (FMA-large, 163 genres, ~700k parameters each, 128-band mel
frames): about 700k parameters with a 163-tag head (``MelGRU`` 726,309, ``MelTransformer``
696,357, counting the head and the frontend BatchNorm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Backbone

__all__ = ["AttentionPool", "MelGRU", "MelTransformer", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal position encodings of Vaswani et al. (2017): ``[length, dim]``.

    Even columns are ``sin(pos / 10000^(2i/dim))``, odd columns the matching ``cos``.
    """
    pos = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim)
    )
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe.to(dtype) if dtype is not None else pe


class AttentionPool(nn.Module):
    """Attention pooling over time: softmax of a learned score per token, then a weighted sum.

    Shape:
        ``[batch, tokens, dim]`` → ``[batch, dim]``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.score(x).softmax(dim=1)  # [B, T, 1]
        return (weights * x).sum(dim=1)


def _frames_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[batch, channels, n_mels, frames]`` → ``[batch, frames, channels · n_mels]``."""
    if x.dim() != 4:
        raise ValueError(
            f"expected features [batch, channels, n_mels, frames], got {tuple(x.shape)}"
        )
    return x.flatten(1, 2).transpose(1, 2)


class _SequenceBase(Backbone):
    """Shared pooling + embedding MLP."""

    _POOLINGS: tuple[str, ...] = ("mean", "max", "attention")

    def _build_pool_and_mlp(self, pooling: str, dim: int, mlp_dim: int | None) -> None:
        if pooling not in self._POOLINGS:
            raise ValueError(f"pooling must be one of {self._POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.attn_pool = AttentionPool(dim) if pooling == "attention" else None
        if mlp_dim:
            self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU())
            self.embed_dim = mlp_dim
        else:
            self.mlp = None
            self.embed_dim = dim

    def _pool(self, seq: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            pooled = seq.mean(dim=1)
        elif self.pooling == "max":
            pooled = seq.amax(dim=1)
        elif self.pooling == "cls":
            pooled = seq[:, 0]
        else:
            pooled = self.attn_pool(seq)
        return self.mlp(pooled) if self.mlp is not None else pooled


class MelGRU(_SequenceBase):
    """Frame projection → stacked (bidirectional) GRU → pooling over time → Linear + ReLU.

    Args:
        n_mels: Mel bands per frame.
        d_model: Size of the projected frame tokens.
        hidden: GRU hidden size per direction.
        layers: Stacked GRU layers (``layer1``, ``layer2`` ... one ``nn.GRU`` each, so every
            layer's output is a stage for multi-layer embeddings).
        bidirectional: Run each layer in both directions (output ``2 · hidden``).
        dropout: Dropout on the projected tokens and between GRU layers.
        pooling: ``"mean"``, ``"max"`` or ``"attention"`` over time.
        mlp_dim: Size of the ``Linear → ReLU`` embedding layer; ``None`` or 0 uses the pooled
            GRU output as the embedding.
        in_channels: Channels of the input features (flattened with the mel axis).

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, embed_dim]``.
    """

    def __init__(
        self,
        n_mels: int = 128,
        d_model: int = 128,
        hidden: int = 128,
        layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.1,
        pooling: str = "mean",
        mlp_dim: int | None = 512,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels * n_mels, d_model)
        self.dropout = nn.Dropout(dropout)
        self.n_layers = layers
        out = 2 * hidden if bidirectional else hidden
        prev = d_model
        for i in range(1, layers + 1):
            setattr(
                self,
                f"layer{i}",
                nn.GRU(prev, hidden, batch_first=True, bidirectional=bidirectional),
            )
            prev = out
        self._build_pool_and_mlp(pooling, out, mlp_dim)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        seq = self.dropout(self.proj(_frames_to_tokens(x)))
        stages = []
        for i in range(1, self.n_layers + 1):
            if i > 1:
                seq = self.dropout(seq)
            seq, _ = getattr(self, f"layer{i}")(seq)
            stages.append(seq.transpose(1, 2))
        return self._pool(seq), stages


class MelTransformer(_SequenceBase):
    """Frame projection + positions → pre-LayerNorm Transformer encoder → pooling → Linear + ReLU.

    Args:
        n_mels: Mel bands per frame.
        d_model: Token size.
        heads: Attention heads.
        layers: Encoder layers.
        dim_feedforward: Feed-forward size.
        dropout: Dropout in the encoder layers and on the input tokens.
        positional: ``"sinusoidal"`` (fixed, any length), ``"learned"`` (``max_len`` positions)
            or ``"none"``.
        max_len: Number of learned positions (tokens, [CLS] included).
        pooling: ``"mean"``, ``"max"``, ``"attention"`` or ``"cls"`` (a learned [CLS] token is
            prepended and its output is used).
        mlp_dim: Size of the ``Linear → ReLU`` embedding layer; ``None`` or 0 uses the pooled
            encoder output as the embedding.
        in_channels: Channels of the input features (flattened with the mel axis).

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, embed_dim]``.
    """

    _POOLINGS = ("mean", "max", "attention", "cls")

    def __init__(
        self,
        n_mels: int = 128,
        d_model: int = 128,
        heads: int = 8,
        layers: int = 4,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        positional: str = "sinusoidal",
        max_len: int = 2048,
        pooling: str = "mean",
        mlp_dim: int | None = 512,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if positional not in ("sinusoidal", "learned", "none"):
            raise ValueError(
                f"positional must be 'sinusoidal', 'learned' or 'none', got {positional!r}"
            )
        self.d_model = d_model
        self.positional = positional
        self.proj = nn.Linear(in_channels * n_mels, d_model)
        self.pos_embedding = (
            nn.Parameter(torch.randn(max_len, d_model) * 0.02) if positional == "learned" else None
        )
        self.cls_token = (
            nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if pooling == "cls" else None
        )
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model,
                heads,
                dim_feedforward,
                dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self._build_pool_and_mlp(pooling, d_model, mlp_dim)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        seq = self.proj(_frames_to_tokens(x))
        if self.cls_token is not None:
            seq = torch.cat([self.cls_token.expand(seq.shape[0], -1, -1), seq], dim=1)
        n = seq.shape[1]
        if self.positional == "sinusoidal":
            seq = seq + sinusoidal_positions(n, self.d_model, seq.device, seq.dtype)
        elif self.positional == "learned":
            if n > self.pos_embedding.shape[0]:
                raise ValueError(
                    f"{n} tokens exceed max_len={self.pos_embedding.shape[0]} learned positions; "
                    "use shorter crops, a larger max_len or positional='sinusoidal'"
                )
            seq = seq + self.pos_embedding[:n]
        seq = self.dropout(seq)
        stages = []
        for layer in self.layers:
            seq = layer(seq)
            stages.append(seq.transpose(1, 2))
        return self._pool(self.norm(seq)), stages
