"""musictag: reusable PyTorch Lightning modules for music auto-tagging.

>>> from musictag import CRNNTagger, TagDataModule

Names are imported on first use, so that ``import musictag.data.shards`` (in shard-writing worker
processes, say) does not pay for importing torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Tagger": "musictag.tagger",
    "LogMelFrontend": "musictag.frontend",
    "WaveformFrontend": "musictag.frontend",
    "TagDataModule": "musictag.data.datamodule",
    "TagVocab": "musictag.data.vocab",
    "AudioItem": "musictag.data.shards",
    "write_shards": "musictag.data.shards",
    "create_model": "musictag.zoo",
    "list_models": "musictag.presets.registry",
    "list_pretrained": "musictag.pretrained",
    "model_entry": "musictag.presets.registry",
    "load_tagger": "musictag.checkpoints",
    "tag_file": "musictag.inference",
    "embed_file": "musictag.search",
    "Inference": "musictag.inference",
    "TrackIndex": "musictag.search",
    "EmbeddingSet": "musictag.search",
    "finetune_tagger": "musictag.finetune",
}


def _preset_names() -> list[str]:
    return list(importlib.import_module("musictag.presets").__all__)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name.endswith("Tagger") and name in _preset_names():
        value = getattr(importlib.import_module("musictag.presets"), name)
    else:
        raise AttributeError(f"module 'musictag' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_preset_names()])


__all__ = [*_EXPORTS, "__version__"]
