"""``musictag train``: the best tagger a time budget allows, from scratch or by transfer.

See ``docs/train.md`` for what it does and why, and the figures.
"""

from __future__ import annotations

from .api import TrainConfig, TrainResult, train_tagger

__all__ = ["TrainConfig", "TrainResult", "train_tagger"]
