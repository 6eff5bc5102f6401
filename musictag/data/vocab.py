"""The tag vocabulary: which tags a model predicts, in which order, and how names are merged.

Shards store tag *names*; a :class:`TagVocab` turns them into multi-hot targets. It is built
when an experiment starts (from the tag counts in a shard manifest, or from an explicit list) and
saved with the checkpoint, so predictions always map back to the right names.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musictag.data.shards import load_manifest

if TYPE_CHECKING:
    import torch

__all__ = ["TagVocab", "resolve_merge"]

log = logging.getLogger(__name__)


def _suggest(name: str, known: Iterable[str], n: int = 3) -> str:
    """Return ' (close known tags: a, b)' or '' when nothing is close."""
    close = difflib.get_close_matches(name, sorted(known), n=n, cutoff=0.6)
    return f" (close known tags: {', '.join(repr(c) for c in close)})" if close else ""


def _unknown_error(what: str, names: Sequence[str], known: Iterable[str]) -> ValueError:
    known = list(known)
    parts = [f"{name!r}{_suggest(name, known)}" for name in names]
    return ValueError(f"{what} not found among the {len(known)} known tags: " + "; ".join(parts))


def resolve_merge(merge: Mapping[str, str] | None) -> dict[str, str]:
    """Resolve merge chains so that every source maps straight to its final target.

    ``{"a": "b", "b": "c"}`` becomes ``{"a": "c", "b": "c"}``. Identity entries are dropped.

    Raises:
        ValueError: If the map contains a cycle.
    """
    if not merge:
        return {}
    raw = {str(k): str(v) for k, v in merge.items() if k != v}
    resolved: dict[str, str] = {}
    for source in raw:
        path = [source]
        target = raw[source]
        while target in raw:
            if target in path:
                cycle = " -> ".join([*path[path.index(target) :], target])
                raise ValueError(f"merge cycle: {cycle}; remove one of these entries")
            path.append(target)
            target = raw[target]
        resolved[source] = target
    return resolved


def _load_manifest(manifest_or_dir: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Return a manifest dict from a dict, a shard folder or a manifest.json path."""
    if isinstance(manifest_or_dir, Mapping):
        return dict(manifest_or_dir)
    return load_manifest(manifest_or_dir)


class TagVocab:
    """An ordered tag list plus a merge map (synonym -> canonical tag).

    Merging happens first: a track's tag names are mapped through ``merge`` and then
    de-duplicated, so a track tagged both ``rap`` and ``hip-hop`` with ``merge={"rap": "hip-hop"}``
    has a single positive ``hip-hop``. Tags outside the vocabulary are ignored when encoding.

    Args:
        tags: The tags, in model output order (kept as given). Must be unique and canonical
            (not themselves merge sources).
        merge: Synonym map ``{source: target}``. Chains (``a -> b``, ``b -> c``) resolve to the
            last target; cycles are an error.

    Attributes:
        tags: The tag names; ``tags[i]`` is output ``i`` of a model.
        merge: The resolved merge map (every source maps to its final target).

    Example:
        >>> vocab = TagVocab(["rock", "hip-hop"], merge={"rap": "hip-hop"})
        >>> vocab.encode(["rap", "hip-hop", "polka"])
        array([0., 1.], dtype=float32)
    """

    def __init__(self, tags: Sequence[str], merge: Mapping[str, str] | None = None) -> None:
        if isinstance(tags, str):
            raise TypeError(f"tags must be a sequence of tag names, not the string {tags!r}")
        self.tags: list[str] = [str(t) for t in tags]
        self.merge: dict[str, str] = resolve_merge(merge)
        duplicates = sorted({t for t in self.tags if self.tags.count(t) > 1})
        if duplicates:
            raise ValueError(f"duplicate tags in the vocabulary: {duplicates}")
        merged_away = [t for t in self.tags if t in self.merge]
        if merged_away:
            details = ", ".join(f"{t!r} -> {self.merge[t]!r}" for t in merged_away)
            raise ValueError(
                f"tags that the merge map renames cannot be in the vocabulary ({details}); "
                "list the merge targets instead"
            )
        self._index = {t: i for i, t in enumerate(self.tags)}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        *,
        top_k: int | None = None,
        merge: Mapping[str, str] | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        min_count: int = 1,
    ) -> TagVocab:
        """Choose a vocabulary from per-tag track counts.

        Steps, in order: merge (counts of merged tags are *added*), ``include`` (keep only
        these), ``exclude`` (drop these), ``min_count``, then the ``top_k`` most frequent. The
        result is ordered by count, descending, ties broken by name.

        Adding counts may count a track twice when it carries both synonyms (only per-tag counts
        are known here); :meth:`encode` is exact, and such tracks get a single positive.

        Args:
            counts: ``{tag: number of tracks}``, e.g. a manifest's ``tag_counts``.
            top_k: Keep the ``top_k`` most frequent tags (after the filters); ``None`` keeps all.
            merge: Synonym map ``{source: target}``; every source must occur in ``counts``.
            include: Keep only these tags (names after merging; a merge source stands for its
                target).
            exclude: Drop these tags (same naming rule as ``include``).
            min_count: Drop tags with fewer tracks than this (after merging).

        Returns:
            The vocabulary.

        Raises:
            ValueError: If a merge source, include or exclude entry is not a known tag (the
                message names it and lists close known tags), if the merge map has a cycle, if
                ``top_k`` < 1, or if no tag is left.
        """
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        for arg, value in (("include", include), ("exclude", exclude)):
            if isinstance(value, str):
                raise TypeError(f"{arg} must be a list of tag names, not the string {value!r}")
        resolved = resolve_merge(merge)
        missing = [source for source in resolved if source not in counts]
        if missing:
            raise _unknown_error("merge source tag(s)", missing, counts)

        merged: dict[str, int] = {}
        for tag, n in counts.items():
            canonical = resolved.get(tag, tag)
            merged[canonical] = merged.get(canonical, 0) + int(n)

        def canonical_names(names: Sequence[str], what: str) -> set[str]:
            unknown = [t for t in names if resolved.get(t, t) not in merged]
            if unknown:
                raise _unknown_error(f"{what} tag(s)", unknown, merged)
            return {resolved.get(t, t) for t in names}

        selected = dict(merged)
        if include is not None:
            keep = canonical_names(include, "include")
            selected = {t: n for t, n in selected.items() if t in keep}
        if exclude is not None:
            drop = canonical_names(exclude, "exclude")
            selected = {t: n for t, n in selected.items() if t not in drop}
        selected = {t: n for t, n in selected.items() if n >= min_count}
        ordered = sorted(selected, key=lambda t: (-selected[t], t))
        if top_k is not None:
            if top_k > len(ordered):
                log.warning("top_k=%d but only %d tags are left; keeping all", top_k, len(ordered))
            ordered = ordered[:top_k]
        if not ordered:
            raise ValueError(
                f"no tag is left after merge/include/exclude/min_count={min_count} "
                f"(from {len(counts)} tags); relax the filters"
            )
        return cls(ordered, resolved)

    @classmethod
    def from_manifest(
        cls,
        manifest_or_dir: Mapping[str, Any] | str | Path,
        split: str = "train",
        **options: Any,
    ) -> TagVocab:
        """Choose a vocabulary from the tag counts of one split of a shard manifest.

        Args:
            manifest_or_dir: A manifest dict, a shard folder, or the path of its manifest.json.
            split: Which split's ``tag_counts`` to use.
            **options: ``top_k``, ``merge``, ``include``, ``exclude``, ``min_count`` as in
                :meth:`from_counts`.

        Returns:
            The vocabulary.

        Raises:
            ValueError: If the manifest has no such split.
        """
        manifest = _load_manifest(manifest_or_dir)
        splits = manifest.get("splits", {})
        if split not in splits:
            raise ValueError(f"manifest has no split {split!r}; it has {sorted(splits)}")
        return cls.from_counts(splits[split].get("tag_counts", {}), **options)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TagVocab:
        """Rebuild a vocabulary saved with :meth:`to_dict`."""
        return cls(d["tags"], d.get("merge") or None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (``{"tags": [...], "merge": {...}}``) for checkpoints."""
        return {"tags": list(self.tags), "merge": dict(self.merge)}

    # ------------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return len(self.tags)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tags)

    def __contains__(self, tag: object) -> bool:
        """Whether ``tag`` (after merging) is in the vocabulary."""
        return isinstance(tag, str) and self.canonical(tag) in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TagVocab):
            return NotImplemented
        return self.tags == other.tags and self.merge == other.merge

    def __repr__(self) -> str:
        head = ", ".join(self.tags[:5]) + (", ..." if len(self.tags) > 5 else "")
        return f"TagVocab({len(self.tags)} tags: [{head}], {len(self.merge)} merges)"

    def canonical(self, tag: str) -> str:
        """The name ``tag`` is merged into (``tag`` itself when it is not merged)."""
        return self.merge.get(tag, tag)

    def index(self, tag: str) -> int:
        """The output index of ``tag`` (after merging).

        Raises:
            KeyError: If the tag is not in the vocabulary (the message lists close tags).
        """
        try:
            return self._index[self.canonical(tag)]
        except KeyError:
            raise KeyError(f"{tag!r} is not in the vocabulary{_suggest(tag, self.tags)}") from None

    # ------------------------------------------------------------------ encoding

    def encode(self, tag_names: Iterable[str]) -> np.ndarray:
        """Multi-hot target for one track.

        Args:
            tag_names: The track's tag names; merged, de-duplicated, unknown names ignored.

        Returns:
            float32 array ``[n_tags]`` of 0/1.
        """
        if isinstance(tag_names, str):
            raise TypeError(f"encode expects a list of tag names, not the string {tag_names!r}")
        target = np.zeros(len(self.tags), dtype=np.float32)
        for name in tag_names:
            i = self._index.get(self.canonical(name))
            if i is not None:
                target[i] = 1.0
        return target

    def decode(
        self,
        scores: Any,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> list[tuple[str, float]]:
        """Turn one track's scores into ``(tag, score)`` pairs, highest score first.

        Args:
            scores: Scores (probabilities or logits) ``[n_tags]``, array-like or tensor.
            top_k: Keep at most this many pairs.
            threshold: Keep only scores ``>= threshold`` (applied before ``top_k``).

        Returns:
            ``[(tag, score), ...]`` sorted by score, descending (ties in vocabulary order).
        """
        if hasattr(scores, "detach"):  # a tensor; torch is imported only by its users
            scores = scores.detach().cpu().double().numpy()
        values = np.asarray(scores, dtype=np.float64)
        if values.shape != (len(self.tags),):
            raise ValueError(
                f"decode expects scores of shape [{len(self.tags)}] (one track), got {values.shape}"
            )
        order = np.argsort(-values, kind="stable")
        pairs = [(self.tags[i], float(values[i])) for i in order]
        if threshold is not None:
            pairs = [p for p in pairs if p[1] >= threshold]
        if top_k is not None:
            pairs = pairs[:top_k]
        return pairs

    def counts(self, counts: Mapping[str, int]) -> np.ndarray:
        """Per-vocabulary-tag counts from raw per-tag counts (merged tags added).

        Args:
            counts: ``{tag: number of tracks}`` with raw (unmerged) names.

        Returns:
            int64 array ``[n_tags]``.
        """
        out = np.zeros(len(self.tags), dtype=np.int64)
        for tag, n in counts.items():
            i = self._index.get(self.canonical(tag))
            if i is not None:
                out[i] += int(n)
        return out

    def pos_weight(self, counts: Mapping[str, int], n_tracks: int) -> torch.Tensor:
        """Positive-class weights for ``BCEWithLogitsLoss(pos_weight=...)``.

        ``w = (N - n_pos) / n_pos`` per tag, with ``n_pos`` the (merged) count clipped to
        ``[1, N]``: a tag without positives gets ``N - 1`` instead of infinity, and merged counts
        that exceed ``N`` (double-counted tracks) give 0 rather than a negative weight.

        Args:
            counts: ``{tag: number of tracks}`` with raw names, e.g. a manifest's train counts.
            n_tracks: ``N``, the number of tracks the counts come from.

        Returns:
            float32 tensor ``[n_tags]``.
        """
        if n_tracks < 1:
            raise ValueError(f"n_tracks must be >= 1, got {n_tracks}")
        n_pos = self.counts(counts)
        absent = [t for t, n in zip(self.tags, n_pos, strict=True) if n == 0]
        if absent:
            log.warning("%d tag(s) have no positive tracks: %s", len(absent), absent[:10])
        n_pos = np.clip(n_pos, 1, n_tracks).astype(np.float64)
        import torch

        return torch.tensor((n_tracks - n_pos) / n_pos, dtype=torch.float32)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TagVocab:
        """Read a vocabulary written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
