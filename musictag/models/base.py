"""The small surface every backbone exposes (timm-style), so the Tagger can treat them alike."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """A plain ``nn.Module`` mapping frontend features to a fixed-size embedding.

    Subclasses set ``embed_dim`` and implement :meth:`forward_intermediates`. The classifier head
    is not part of the backbone: the :class:`~musictag.tagger.Tagger` owns it, so every
    architecture gets the same head reset, fine-tuning and embedding extraction.

    Shape:
        input: frontend features, ``[batch, channels, freq, time]`` (spectrogram models) or
        ``[batch, 1, samples]`` (waveform models).
        output: ``[batch, embed_dim]``.
    """

    embed_dim: int

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the backbone and keep every stage's output.

        Args:
            x: Frontend features.

        Returns:
            ``(embedding [batch, embed_dim], [stage_1, ..., stage_n])`` where each stage output keeps
            its native shape (``[batch, channels, ...]``).
        """
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of ``x``: ``[batch, embed_dim]``."""
        return self.forward_intermediates(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
