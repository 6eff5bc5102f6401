"""One preparer per collection: read it as distributed, clean labels, split, write shards.

Every preparer is a function ``prepare_<name>(*, root, out, ...) -> ShardWriteReport`` with typed,
documented keyword arguments; ``musictag prepare <name> --help`` is generated from it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["PREPARERS", "get_preparer"]

# collection name -> "module:function", imported on demand
PREPARERS: dict[str, str] = {
    "synth": "musictag.data.sources.synth:prepare_synth",
    "fma": "musictag.data.sources.fma:prepare_fma",
    "mtt": "musictag.data.sources.mtt:prepare_mtt",
    "gtzan": "musictag.data.sources.gtzan:prepare_gtzan",
    "msd": "musictag.data.sources.msd_lastfm:prepare_msd",
    "jamendo": "musictag.data.sources.jamendo:prepare_jamendo",
    "folder": "musictag.data.sources.folder:prepare_folder",
}


def get_preparer(name: str) -> Callable[..., Any]:
    """The ``prepare_<name>`` function of a collection."""
    try:
        module, func = PREPARERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown collection {name!r}; known: {sorted(PREPARERS)}") from None
    return getattr(importlib.import_module(module), func)
