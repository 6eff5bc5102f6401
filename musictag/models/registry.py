"""The backbone registry: plain ``nn.Module`` families by name (``"crnn"``), pure torch.

Named, fully configured taggers (presets) are registered one layer up, in
:mod:`musictag.presets.registry`; :func:`musictag.create_model` builds them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["BACKBONES", "BACKBONE_ALIASES", "build_backbone", "register_backbone"]

BACKBONES: dict[str, Callable[..., nn.Module]] = {}

BACKBONE_ALIASES: dict[str, str] = {"mel_gru": "gru", "mel_transformer": "transformer"}
"""Backbone names used before musictag 0.2 (still in old checkpoints' hyperparameters)."""


def register_backbone(name: str, cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a backbone family under ``name`` (snake_case)."""
    if name in BACKBONES and BACKBONES[name] is not cls:
        raise ValueError(f"backbone {name!r} is already registered to {BACKBONES[name]}")
    BACKBONES[name] = cls
    return cls


def build_backbone(name: str, n_mels: int | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate a registered backbone.

    Args:
        name: Family name, a key of ``BACKBONES`` (or a deprecated alias of one).
        n_mels: Frequency bins of the frontend; passed on only to backbones that take ``n_mels``
            and were not given one explicitly.
        **kwargs: Backbone settings.
    """
    if name in BACKBONE_ALIASES:
        new = BACKBONE_ALIASES[name]
        warnings.warn(f"backbone {name!r} is deprecated; use {new!r}", DeprecationWarning, 2)
        name = new
    try:
        cls = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None
    if n_mels is not None and "n_mels" not in kwargs:
        if "n_mels" in inspect.signature(cls).parameters:
            kwargs["n_mels"] = n_mels
    return cls(**kwargs)
