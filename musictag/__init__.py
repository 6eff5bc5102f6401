"""musictag: reusable PyTorch Lightning modules for music auto-tagging.

>>> from musictag import CRNNTagger, TagDataModule
"""

from __future__ import annotations

__version__ = "0.1.0"

from .checkpoints import load_tagger  # noqa: E402
from .frontend import LogMelFrontend, WaveformFrontend  # noqa: E402
from .models.registry import create_model, list_models, model_entry  # noqa: E402
from .presets import *  # noqa: E402,F403
from .presets import __all__ as _presets
from .tagger import Tagger  # noqa: E402

__all__ = [
    "LogMelFrontend",
    "Tagger",
    "WaveformFrontend",
    "create_model",
    "list_models",
    "load_tagger",
    "model_entry",
    *_presets,
]
