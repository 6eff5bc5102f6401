"""``create_model``: the one way to get a named tagger, freshly initialised or with weights.

timm-style: :func:`~musictag.presets.registry.list_models` names the architectures,
:func:`~musictag.pretrained.list_pretrained` the published weights, and
``create_model(name, pretrained=..., n_tags=...)`` builds either. Weights are read from local files
only (nothing is downloaded): a musictag checkpoint, or the published ``best_model.pth`` files in a
copy of the upstream ``models/`` folder (``weights_dir``, or the ``MUSICTAG_PRETRAINED`` variable).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoints import load_tagger
from .presets.registry import ModelEntry, model_entry
from .pretrained import SOTA_CONFIGS, convert_sota
from .tagger import Tagger

__all__ = ["create_model"]


def _load_weights(entry: ModelEntry, pretrained: bool | str | Path, weights_dir: Any) -> Tagger:
    if isinstance(pretrained, Path) or str(pretrained).endswith(".ckpt"):
        model = load_tagger(pretrained)
        if type(model) is not entry.tagger:
            raise ValueError(
                f"{pretrained}: holds a {type(model).__name__}, not a {entry.name!r} model"
            )
        return model
    mine = [c for c in SOTA_CONFIGS.values() if c.model == entry.name]
    found = [
        c
        for c in mine
        if pretrained is True and len(mine) == 1 or pretrained in (c.name, c.dataset)
    ]
    if len(found) != 1:
        raise ValueError(
            f"pretrained={pretrained!r}: published {entry.name!r} weights are "
            f"{sorted(c.name for c in mine)} (or pass the path of a musictag .ckpt)"
        )
    cfg = found[0]
    root = weights_dir or os.environ.get("MUSICTAG_PRETRAINED")
    if not root:
        raise ValueError(
            f"where are the {cfg.name!r} weights? Pass weights_dir= (or set MUSICTAG_PRETRAINED "
            f"to) a copy of the upstream models/ folder holding {cfg.file}; nothing is downloaded"
        )
    return convert_sota(Path(root) / cfg.file, cfg.arch, cfg.dataset)


def create_model(
    name: str,
    pretrained: bool | str | Path = False,
    n_tags: int | None = None,
    *,
    weights_dir: str | Path | None = None,
    **kwargs: Any,
) -> Tagger:
    """Create a named tagger, e.g. ``create_model("crnn", n_tags=50, lr=1e-4)``.

    Args:
        name: A name from :func:`~musictag.presets.registry.list_models` (``"fcn"``), or from
            :func:`~musictag.pretrained.list_pretrained` (``"mtat_fcn"``, implies weights).
        pretrained: ``False``: freshly initialised. ``True`` (with a published ``name``), a
            published name (``"mtat_fcn"``) or a dataset (``"mtat"``): the published weights,
            converted from ``weights_dir``. A path ending in ``.ckpt``: a musictag checkpoint of
            this model (:func:`~musictag.checkpoints.load_tagger`).
        n_tags: Number of output tags; default 50, or the weights' tags. With weights for other
            tags, the head is replaced by a fresh one (``reset_head``; ``tags=`` names the new
            tags) and the frontend and backbone are kept, as for fine-tuning.
        weights_dir: Copy of the upstream ``models/`` folder of the published weights; default
            the ``MUSICTAG_PRETRAINED`` environment variable.
        **kwargs: Overrides of the variant's arguments (any argument of its tagger class); with
            weights, only ``tags``.

    Returns:
        The tagger; with weights, in eval mode.

    Raises:
        ValueError: for an unknown name or weights, weights of another model, or architecture
            overrides together with weights.
    """
    if name in SOTA_CONFIGS:  # a published name: that model with those weights
        if pretrained is False or pretrained is True:
            pretrained = name
        name = SOTA_CONFIGS[name].model
    entry = model_entry(name)
    if pretrained is False:
        return entry.create(n_tags=50 if n_tags is None else n_tags, **kwargs)
    tags = kwargs.pop("tags", None)
    if kwargs:
        raise ValueError(f"settings {sorted(kwargs)} cannot change a model with weights")
    model = _load_weights(entry, pretrained, weights_dir)
    n_tags = len(tags) if n_tags is None and tags is not None else n_tags
    if n_tags is not None and (n_tags != model.n_tags or (tags and list(tags) != model.tags)):
        model.reset_head(n_tags, tags)
    return model
