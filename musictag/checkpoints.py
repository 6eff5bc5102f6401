"""Loading any musictag checkpoint without knowing its class in advance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .tagger import Tagger

__all__ = ["load_tagger", "tagger_classes"]


def tagger_classes() -> dict[str, type[Tagger]]:
    """Every known tagger class by name: ``Tagger`` and the registered presets."""
    from .models.registry import _MODELS, _ensure_presets

    _ensure_presets()
    classes: dict[str, type[Tagger]] = {"Tagger": Tagger}
    for entry in _MODELS.values():
        classes[entry.tagger.__name__] = entry.tagger
    return classes


def load_tagger(path: str | Path, map_location: Any = "cpu") -> Tagger:
    """Load a tagger from a musictag checkpoint, whatever its preset class, in eval mode.

    The class is read from the checkpoint's ``musictag.tagger_class`` entry and looked up among
    the known classes (nothing is imported by name from the file). Loading uses
    ``torch.load(weights_only=True)``.

    Args:
        path: Checkpoint file written by Lightning from a musictag tagger.
        map_location: Device to load the tensors on.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a musictag checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a loadable PyTorch checkpoint ({e})") from e
    meta = ckpt.get("musictag") if isinstance(ckpt, dict) else None
    if not meta or "tagger_class" not in meta:
        raise ValueError(
            f"{path}: not a musictag checkpoint (no 'musictag' entry); published weights are "
            "converted first with `musictag convert-sota`"
        )
    name = meta["tagger_class"]
    classes = tagger_classes()
    if name not in classes:
        raise ValueError(f"{path}: unknown tagger class {name!r}; known: {sorted(classes)}")
    model = classes[name].load_from_checkpoint(path, map_location=map_location, weights_only=True)
    model.eval()
    return model
