"""Several pretrained backbones as one: multi-layer transfer features (Choi et al. 2017).

:class:`TransferBackbone` runs one or more backbones (each behind its own input standardisation,
the ``BatchNorm2d(1)`` its frontend had) on the same log-mel features, pools every stage of every
backbone over frequency and time, concatenates the pooled stages and embeddings, and standardises
them with stored statistics. A tagger with this backbone and a linear head is the logistic-
regression probe of Choi et al. (2017); with ``hidden > 0`` it is a one-hidden-layer MLP probe.
A member with ``role="embedding"`` (a model trained on the collection itself, such as the compact
CNN of ``musictag train``) contributes only its embedding, appended after the probe features: a
linear head over both is a logit-level ensemble of the probe and that model.
Everything needed to rebuild it is in its constructor arguments, so a checkpoint of such a tagger
is self-describing and loads like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .base import Backbone
from .registry import build_backbone

__all__ = ["POOLINGS", "TransferBackbone", "pool_stage_stats"]

POOLINGS = ("mean", "meanmax")


def pool_stage_stats(x: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """Pool a stage output over every axis after the channels.

    Args:
        x: ``[batch, channels, ...]`` (or ``[batch, channels]``, returned as is).
        pool: ``"mean"``: the mean per channel; ``"meanmax"``: mean and max, concatenated.

    Returns:
        ``[batch, channels]`` or ``[batch, 2 * channels]``.
    """
    if x.dim() == 2:
        return x
    flat = x.flatten(2)
    if pool == "mean":
        return flat.mean(-1)
    if pool == "meanmax":
        return torch.cat([flat.mean(-1), flat.amax(-1)], dim=-1)
    raise ValueError(f"unknown pooling {pool!r}; choose one of {POOLINGS}")


class TransferBackbone(Backbone):
    """Standardised multi-layer features of one or several backbones on shared log-mel features.

    Args:
        members: One entry per backbone: ``{"backbone": name, "backbone_kwargs": {...},
            "input_bn": bool, "role": "features" | "embedding"}``; ``input_bn`` adds the
            ``BatchNorm2d(1)`` that the member's own frontend applied to the dB spectrogram (its
            statistics are loaded with the weights); ``role`` (default ``"features"``) says
            whether its pooled stages and embedding are probe features (standardised, then
            projected) or its embedding is appended as is after them. With only embedding
            members the backbone is a plain ensemble of models trained on the collection.
        n_mels: Mel bands of the shared features.
        pool: Stage pooling, ``"mean"`` (Choi et al.) or ``"meanmax"``.
        hidden: Units of a ReLU hidden layer after the standardisation (0: none, a linear probe).
        probe_frames: Frames of the dummy input used to size the features at construction.

    Shape:
        input: ``[batch, 1, n_mels, frames]``; output: ``[batch, embed_dim]``.
    """

    def __init__(
        self,
        members: Sequence[Mapping[str, Any]],
        n_mels: int = 96,
        pool: str = "mean",
        hidden: int = 0,
        probe_frames: int = 313,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("TransferBackbone needs at least one member backbone")
        if pool not in POOLINGS:
            raise ValueError(f"unknown pooling {pool!r}; choose one of {POOLINGS}")
        self.pool = pool
        roles = [m.get("role", "features") for m in members]
        if not set(roles) <= {"features", "embedding"}:
            raise ValueError(f"member roles must be 'features' or 'embedding', got {roles}")
        self.roles = roles
        self.input_bns = nn.ModuleList(
            nn.BatchNorm2d(1) if m.get("input_bn", True) else nn.Identity() for m in members
        )
        self.members = nn.ModuleList(
            build_backbone(m["backbone"], n_mels=n_mels, **dict(m.get("backbone_kwargs") or {}))
            for m in members
        )
        dim = 0
        if "features" in roles:
            with torch.no_grad():
                was = self.training
                self.eval()
                dim = self.raw_features(torch.zeros(1, 1, n_mels, probe_frames)).shape[-1]
                self.train(was)
        self.feature_dim = int(dim)
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        self.projection = (
            nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) if hidden and dim else None
        )
        extra = sum(int(m.embed_dim) for m, r in zip(self.members, roles) if r == "embedding")
        self.embed_dim = int(hidden if self.projection is not None else dim) + extra

    def raw_features(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Pooled stages and embedding of every feature member (or of one), before standardisation.

        Args:
            x: ``[batch, 1, n_mels, frames]``.
            member: Index of one member; default: every ``role="features"`` member, concatenated
                in order.

        Returns:
            ``[batch, feature_dim]`` (all feature members) or that member's part of it.
        """
        if member is not None:
            return torch.cat(self._one_member(x, member)[0], dim=-1)
        return torch.cat(self._member_outputs(x)[0], dim=-1)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the standardisation statistics (``[feature_dim]`` each; std is floored)."""
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(std.to(self.feature_std).clamp_min(1e-5))

    def _one_member(self, x: torch.Tensor, i: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        emb, stages = self.members[i].forward_intermediates(self.input_bns[i](x))
        return [*(pool_stage_stats(s, self.pool) for s in stages), emb], stages

    def _member_outputs(
        self, x: torch.Tensor, role: str = "features"
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pooled, stages = [], []
        for i, r in enumerate(self.roles):
            if r != role:
                continue
            if role == "embedding":
                emb, st = self.members[i].forward_intermediates(self.input_bns[i](x))
                p = [emb]
            else:
                p, st = self._one_member(x, i)
            pooled.extend(p)
            stages.extend(st)
        return pooled, stages

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        pooled, stages = self._member_outputs(x)
        parts = []
        if pooled:
            z = (torch.cat(pooled, dim=-1) - self.feature_mean) / self.feature_std
            parts.append(self.projection(z) if self.projection is not None else z)
        if "embedding" in self.roles:
            embs, more = self._member_outputs(x, "embedding")
            parts, stages = parts + embs, stages + more
        return torch.cat(parts, dim=-1), stages
