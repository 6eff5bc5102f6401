"""What every preset shares: turning its own arguments into :class:`~musictag.tagger.Tagger` ones."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..models.registry import BACKBONES
from ..tagger import Tagger

__all__ = ["TAGGER_ARGS", "preset_args"]

TAGGER_ARGS = ("n_tags", "sample_rate", "crop_samples", "nonlocal_after")
"""Preset arguments that are :class:`~musictag.tagger.Tagger` options, not backbone settings."""


def _lists(value: Any) -> Any:
    # tuples become lists, as in a YAML config, so every model gets the same settings either way
    return [_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def preset_args(preset: type[Tagger], args: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~musictag.tagger.Tagger` arguments of a preset, from its ``__init__`` locals.

    ``TAGGER_ARGS`` and the preset's ``**kwargs`` go to the Tagger; ``n_mels`` and
    ``frontend_kwargs`` to the frontend (``preset.FRONTEND``); every other argument is a setting of
    the backbone ``preset.BACKBONE`` under the same name, so a preset never restates which
    argument goes where (``tests/models/test_zoo.py`` checks that presets expose every backbone
    setting with the backbone's default).

    Args:
        preset: The preset class (with ``BACKBONE`` and ``FRONTEND``).
        args: ``locals()`` at the top of the preset's ``__init__``.

    Raises:
        TypeError: if an argument is neither a Tagger option nor a backbone setting.
    """
    args = {k: v for k, v in args.items() if k not in ("self", "__class__")}
    out = dict(args.pop("kwargs", None) or {})
    frontend = dict(args.pop("frontend_kwargs", None) or {})
    if "n_mels" in args:
        frontend = {"n_mels": args.pop("n_mels"), **frontend}
    out.update({k: args.pop(k) for k in TAGGER_ARGS if k in args})
    params = inspect.signature(BACKBONES[preset.BACKBONE]).parameters
    unknown = sorted(k for k in args if k not in params)
    if unknown:
        raise TypeError(f"{preset.__name__}: {unknown} are not settings of {preset.BACKBONE!r}")
    backbone = {k: _lists(v) for k, v in args.items()}
    # a setting the backbone shares with the Tagger (HarmonicCNN's sample rate)
    backbone.update({k: out[k] for k in TAGGER_ARGS if k in out and k in params})
    return {
        **out,
        "backbone": preset.BACKBONE,
        "frontend": preset.FRONTEND,
        "frontend_kwargs": frontend,
        "backbone_kwargs": backbone,
    }
