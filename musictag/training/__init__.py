"""``musictag train``: the best tagger a time budget allows, from scratch or by transfer.

See ``docs/train.md`` for what it does and why, and the figures.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "TrainResult", "train_tagger"]


def __getattr__(name: str) -> Any:
    # lazy: `musictag --help` builds the train sub-parser without importing torch
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
