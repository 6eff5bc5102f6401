"""The model registry: named, fully configured taggers (timm-style), and the tagger classes.

A *model* is a named tagger preset: its :class:`~musictag.tagger.Tagger` subclass plus the keyword
arguments of the variant (``"samplecnn_se"`` = ``SampleCNNTagger(block="rese", ...)``), with its
paper and published figures as data. A family's registry name is its class name in snake_case
without ``Tagger`` (``ShortChunkResNetTagger`` → ``short_chunk_resnet``), the same name as its
backbone. The names used before (``short_res``, ``hcnn`` ...) still work, with a
``DeprecationWarning``. :func:`musictag.create_model` builds a model, with or without weights.

Importing this module imports :mod:`musictag.presets` first (its package), which registers them all.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tagger import Tagger

__all__ = [
    "MODEL_ALIASES",
    "ModelEntry",
    "list_models",
    "model_entry",
    "register_model",
    "resolve_model_name",
    "tagger_classes",
]


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

MODEL_ALIASES: dict[str, str] = {
    "attention": "cnnsa",
    "hcnn": "harmonic_cnn",
    "short": "short_chunk_cnn",
    "short_res": "short_chunk_resnet",
    "short_res_nonlocal": "short_chunk_resnet_nonlocal",
}
"""Registry names used before musictag 0.2, kept as deprecated aliases of today's names."""


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a named model to the registry."""
    if entry.name in _MODELS and _MODELS[entry.name] != entry:
        raise ValueError(f"model {entry.name!r} is already registered")
    _MODELS[entry.name] = entry
    return entry


def resolve_model_name(name: str) -> str:
    """Today's registry name of ``name``; an old name warns (``DeprecationWarning``)."""
    if name in MODEL_ALIASES:
        new = MODEL_ALIASES[name]
        warnings.warn(
            f"model name {name!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3
        )
        return new
    return name


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, sorted, optionally filtered by a glob (``"samplecnn*"``)."""
    return [n for n in sorted(_MODELS) if pattern is None or fnmatch.fnmatch(n, pattern)]


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` registered under ``name`` (or a deprecated alias of it)."""
    try:
        return _MODELS[resolve_model_name(name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(_MODELS)}") from None


def tagger_classes() -> dict[str, type[Tagger]]:
    """Every known tagger class by name: ``Tagger`` and the registered presets."""
    return {"Tagger": Tagger, **{e.tagger.__name__: e.tagger for e in _MODELS.values()}}
