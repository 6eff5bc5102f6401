"""Registries: backbone families by name, and named taggers (timm-style ``create_model``).

A *backbone* is a plain ``nn.Module`` family (``"crnn"``). A *model* is a named, fully configured
tagger preset: its :class:`~musictag.tagger.Tagger` subclass plus the keyword arguments of the
variant (``"samplecnn_se"`` = ``SampleCNNTagger(block="se")``), with its input length, sample rate,
paper and published figures as data.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from ..tagger import Tagger

__all__ = [
    "BACKBONES",
    "ModelEntry",
    "build_backbone",
    "create_model",
    "list_models",
    "model_entry",
    "register_backbone",
    "register_model",
]

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str, cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a backbone family under ``name`` (snake_case)."""
    if name in BACKBONES and BACKBONES[name] is not cls:
        raise ValueError(f"backbone {name!r} is already registered to {BACKBONES[name]}")
    BACKBONES[name] = cls
    return cls


def build_backbone(name: str, n_mels: int | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate a registered backbone.

    Args:
        name: Family name, a key of ``BACKBONES``.
        n_mels: Frequency bins of the frontend; passed on only to backbones that take ``n_mels``
            and were not given one explicitly.
        **kwargs: Backbone settings.
    """
    try:
        cls = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None
    if n_mels is not None and "n_mels" not in kwargs:
        if "n_mels" in inspect.signature(cls).parameters:
            kwargs["n_mels"] = n_mels
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelEntry:
    """A named model: which tagger class, with which arguments, and what is known about it.

    Attributes:
        name: Registry name (``snake_case``).
        tagger: The :class:`~musictag.tagger.Tagger` subclass.
        kwargs: Arguments of this variant, passed to ``tagger``.
        paper: Short citation.
        published: Published figures, e.g. ``{"mtat_roc_auc": 0.9005, "mtat_pr_auc": 0.4295}``.
        reference_params: Parameter count of the published implementation for 50 tags, if any.
    """

    name: str
    tagger: type[Tagger]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    published: Mapping[str, float] = field(default_factory=dict)
    reference_params: int | None = None

    def create(self, n_tags: int = 50, **overrides: Any) -> Tagger:
        """Instantiate this model with ``n_tags`` outputs and any overridden arguments."""
        return self.tagger(n_tags=n_tags, **{**self.kwargs, **overrides})


_MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a named model to the registry."""
    if entry.name in _MODELS and _MODELS[entry.name] != entry:
        raise ValueError(f"model {entry.name!r} is already registered")
    _MODELS[entry.name] = entry
    return entry


def _ensure_presets() -> None:
    # presets import the Lightning tagger; importing them lazily keeps backbones torch-only
    from .. import presets  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, sorted, optionally filtered by a glob (``"samplecnn*"``)."""
    _ensure_presets()
    names = sorted(_MODELS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` registered under ``name``."""
    _ensure_presets()
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(_MODELS)}") from None


def create_model(name: str, n_tags: int = 50, **kwargs: Any) -> Tagger:
    """Create a named tagger, e.g. ``create_model("crnn", n_tags=50, lr=1e-4)``.

    Args:
        name: A name from :func:`list_models`.
        n_tags: Number of output tags.
        **kwargs: Overrides of the variant's arguments (any argument of its tagger class).
    """
    return model_entry(name).create(n_tags=n_tags, **kwargs)
