"""Helpers shared by the collection preparers: seeded splits, metadata checks, audio paths.

Kept small on purpose: each preparer reads its own formats; what lives here is what more than one
of them needs and must behave the same everywhere (split names, how a split is drawn, how a
missing column or audio file is reported).
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np

from ..shards import AudioItem

__all__ = [
    "SPLITS",
    "check_audio_files",
    "check_columns",
    "resolve_audio",
    "split_sizes",
    "stratified_split",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, str, str] = ("train", "val", "test")
"""Split names every preparer writes (the names the data module looks for)."""

T = TypeVar("T")


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Cut ``n`` items into parts proportional to ``fractions`` (largest-remainder rounding).

    The parts always sum to ``n``. Each part gets ``floor(n * f / sum(fractions))`` and the items
    left over go, one each, to the parts with the largest fractional remainders (ties: the earlier
    part). ``split_sizes(100, (0.8, 0.1, 0.1))`` is ``[80, 10, 10]``; ``split_sizes(5, ...)`` is
    ``[4, 1, 0]``.

    Args:
        n: Number of items (>= 0).
        fractions: Non-negative weights, at least one positive; they need not sum to 1.

    Returns:
        One size per fraction.

    Raises:
        ValueError: For a negative ``n``, a negative or non-finite fraction, or all zeros.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fr = [float(f) for f in fractions]
    if not fr or any(not math.isfinite(f) or f < 0 for f in fr) or sum(fr) <= 0:
        raise ValueError(
            f"fractions must be non-negative numbers with a positive sum, got {list(fractions)}"
        )
    total = sum(fr)
    exact = [n * f / total for f in fr]
    sizes = [math.floor(e) for e in exact]
    left = n - sum(sizes)
    order = sorted(range(len(fr)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[:left]:
        sizes[i] += 1
    return sizes


def stratified_split(
    items_by_label: Mapping[str, Sequence[T]],
    fractions: Sequence[float],
    seed: int,
    names: Sequence[str] = SPLITS,
) -> dict[str, list[T]]:
    """Split items into seeded random parts that keep each label's proportions.

    Each label's items are cut with :func:`split_sizes` (so a label of 100 items with fractions
    ``(0.8, 0.1, 0.1)`` gives exactly 80/10/10) after a shuffle drawn from
    ``numpy.random.default_rng([seed, crc32(label)])``. The result depends only on ``seed``, the
    labels and the order of each label's items: not on the order of the labels in the mapping,
    on other labels, on the Python hash seed or on the platform. Labels are visited in sorted
    order and, within a label, the chosen items keep their input order.

    For multi-label items, group them by one key (e.g. the first or rarest tag) before calling.

    Args:
        items_by_label: ``{label: items}``; items can be anything (paths, AudioItem, ids).
        fractions: One non-negative weight per split, e.g. ``(0.8, 0.1, 0.1)``.
        seed: Seed of the shuffle.
        names: Split names, as many as ``fractions``; default ``("train", "val", "test")``.

    Returns:
        ``{name: items}`` for every name (in ``names`` order), empty lists included.

    Raises:
        ValueError: If ``names`` and ``fractions`` differ in length, names repeat, or the
            fractions are invalid (see :func:`split_sizes`).
    """
    names = list(names)
    if len(names) != len(fractions):
        raise ValueError(
            f"{len(fractions)} fractions {list(fractions)} for {len(names)} splits {names}: "
            "give one fraction per split"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"split names must be unique, got {names}")
    split_sizes(0, fractions)  # validate even when there are no items
    out: dict[str, list[T]] = {name: [] for name in names}
    for label in sorted(items_by_label):
        items = list(items_by_label[label])
        sizes = split_sizes(len(items), fractions)
        rng = np.random.default_rng([int(seed), zlib.crc32(str(label).encode("utf-8"))])
        perm = rng.permutation(len(items))
        start = 0
        for name, size in zip(names, sizes, strict=True):
            chosen = sorted(int(i) for i in perm[start : start + size])
            out[name].extend(items[i] for i in chosen)
            start += size
    return out


def check_columns(
    path: str | os.PathLike[str], header: Sequence[str], required: Sequence[str]
) -> dict[str, int]:
    """Check that a table header has the columns a preparer needs.

    Args:
        path: The file the header comes from (only used in the message).
        header: Column names as read (stripped by the caller if needed).
        required: Names that must be present.

    Returns:
        ``{name: index}`` for every column of the header (first occurrence of a repeated name).

    Raises:
        ValueError: Naming the file, every missing column and the columns that were found.
    """
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name, i)
    missing = [c for c in required if c not in index]
    if missing:
        shown = ", ".join(repr(h) for h in header[:12]) + (", ..." if len(header) > 12 else "")
        raise ValueError(
            f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}; the header has "
            f"{len(header)} columns: {shown or 'none'}. Is this the right file?"
        )
    return index


def resolve_audio(root: str | os.PathLike[str], relpath: str) -> Path:
    """Join a path read from metadata (``/``-separated, relative) to the collection root.

    Paths from metadata files are untrusted input: an absolute path or one that climbs out of
    ``root`` with ``..`` is refused rather than followed.

    Args:
        root: Folder the metadata's paths are relative to.
        relpath: Relative path with ``/`` separators, e.g. ``"f/clip-30-59.mp3"``.

    Returns:
        ``root / relpath`` (not checked for existence).

    Raises:
        ValueError: If ``relpath`` is empty, absolute, or contains a ``..`` component.
    """
    rel = relpath.strip().replace("\\", "/")
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise ValueError(
            f"audio path {relpath!r} must be relative to the collection root without '..'"
        )
    return Path(root, *parts)


def check_audio_files(
    splits: Mapping[str, Sequence[AudioItem]],
    *,
    root: str | os.PathLike[str],
    skip_missing: bool,
    source: str,
) -> int:
    """Check that the planned audio files exist before any shard is written.

    If none exists the root is almost certainly wrong, so that is always an error. Otherwise,
    missing files are either an error (``skip_missing=False``) or left in the plan with a
    warning: :func:`~musictag.data.shards.write_shards` then skips them like any unreadable file
    and lists them in ``failures.tsv``.

    Args:
        splits: ``{split: items}`` about to be written.
        root: The audio root (only used in messages).
        skip_missing: Skip missing files (with a warning) instead of raising.
        source: Collection name, for messages.

    Returns:
        Number of missing files.

    Raises:
        FileNotFoundError: If no file exists, or some are missing and ``skip_missing`` is false.
            The message gives the count and the first missing paths.
    """
    items = [i for v in splits.values() for i in v]
    missing = [str(i.path) for i in items if not os.path.isfile(i.path)]
    if not missing:
        return 0
    first = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    if len(missing) == len(items):
        raise FileNotFoundError(
            f"{source}: none of the {len(items)} audio files was found under {root} "
            f"(looked for e.g. {missing[0]}); check --root and the collection layout"
        )
    if not skip_missing:
        raise FileNotFoundError(
            f"{source}: {len(missing)} of {len(items)} audio files are missing under {root}: "
            f"{first}. Complete the download, or pass skip_missing=True to skip them (they "
            "are then listed in failures.tsv)"
        )
    log.warning(
        "%s: %d of %d audio files are missing under %s (%s); they are skipped and listed in "
        "failures.tsv",
        source,
        len(missing),
        len(items),
        root,
        first,
    )
    return len(missing)
