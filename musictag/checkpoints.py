"""Loading any musictag checkpoint without knowing its class in advance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .lightning_compat import RANK_ZERO_LOGGER
from .presets.registry import tagger_classes
from .tagger import Tagger

__all__ = ["load_tagger", "save_tagger", "tagger_classes"]


def save_tagger(model: Tagger, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a tagger as a normal Lightning checkpoint that :func:`load_tagger` reads.

    The file holds ``state_dict``, ``hyper_parameters`` and the ``musictag`` entry (class name,
    version, and ``extra`` if given); it loads with ``torch.load(weights_only=True)``.

    Args:
        model: The tagger (any device; the weights are written as they are).
        path: Checkpoint to write; parent folders are created.
        extra: Plain values added to the ``musictag`` entry (e.g. where the weights came from).

    Returns:
        ``path``.
    """
    import logging

    import pytorch_lightning as pl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Lightning announces accelerators and logger tips at INFO on construction: not news here
    lightning_log = logging.getLogger(RANK_ZERO_LOGGER)
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=path.parent,
        )
    finally:
        lightning_log.setLevel(level)
    device = next(model.parameters()).device
    trainer.strategy.connect(model.cpu())
    trainer.save_checkpoint(path, weights_only=True)
    model.to(device)
    if extra:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        ckpt["musictag"].update(extra)
        torch.save(ckpt, path)
    return path


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
