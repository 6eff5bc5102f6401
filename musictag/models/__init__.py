"""Pure ``torch.nn`` backbones, one file per family, plus the model registry.

Backbones are registered by family name in ``BACKBONES``; named, configured taggers (presets with
default input length, sample rate and frontend) are registered in :mod:`musictag.models.registry`.
"""

from __future__ import annotations

from .base import Backbone
from .crnn import CRNN
from .registry import (
    BACKBONES,
    ModelEntry,
    build_backbone,
    create_model,
    list_models,
    model_entry,
    register_backbone,
    register_model,
)

register_backbone("crnn", CRNN)

__all__ = [
    "BACKBONES",
    "Backbone",
    "CRNN",
    "ModelEntry",
    "build_backbone",
    "create_model",
    "list_models",
    "model_entry",
    "register_backbone",
    "register_model",
]
