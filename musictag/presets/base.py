"""What every preset shares: sorting its own arguments into Tagger and backbone settings."""

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


def preset_args(
    preset: type[Tagger], args: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tagger_args, backbone_kwargs)`` of a preset, from its ``__init__`` locals.

    ``TAGGER_ARGS`` go to the Tagger, ``n_mels`` and ``frontend_kwargs`` into its
    ``frontend_kwargs``; every other argument is a setting of the backbone ``preset.BACKBONE``
    under the same name, so a preset never restates where each argument goes
    (``tests/models/test_zoo.py`` checks that presets expose every backbone setting with the
    backbone's default). The preset passes ``backbone``, ``frontend`` and ``backbone_kwargs`` by
    name, so that LightningCLI sees which Tagger arguments it fills.

    Args:
        preset: The preset class (with ``BACKBONE``).
        args: ``locals()`` at the top of the preset's ``__init__`` (``**kwargs`` is left out).

    Raises:
        TypeError: if an argument is neither a Tagger option nor a backbone setting.
    """
    args = {k: v for k, v in args.items() if k not in ("self", "__class__", "kwargs")}
    frontend = dict(args.pop("frontend_kwargs", None) or {})
    if "n_mels" in args:
        frontend = {"n_mels": args.pop("n_mels"), **frontend}
    tagger = {k: args.pop(k) for k in TAGGER_ARGS if k in args}
    params = inspect.signature(BACKBONES[preset.BACKBONE]).parameters
    unknown = sorted(k for k in args if k not in params)
    if unknown:
        raise TypeError(f"{preset.__name__}: {unknown} are not settings of {preset.BACKBONE!r}")
    backbone = {k: _lists(v) for k, v in args.items()}
    # a setting the backbone shares with the Tagger (HarmonicCNN's sample rate)
    backbone.update({k: v for k, v in tagger.items() if k in params})
    return {**tagger, "frontend_kwargs": frontend}, backbone
