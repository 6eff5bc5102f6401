"""MagnaTagATune (Law et al. 2009): 25,863 clips of ~29 s, 188 binary tags, top-50 used.

Reads the tab-separated ``annotations_final.csv`` and writes the ``classic`` folder split or the
cleaned ``won2020`` split of Won et al. 2020 (with train derived from folders 0-b when
``train.npy`` is absent), with the ``top_k`` most frequent tags after an optional synonym merge.
Layout, options and quirks: ``docs/datasets.md#magnatagatune-mtt``.
"""

from __future__ import annotations

import csv
import difflib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..shards import AudioItem, ShardWriteReport, write_shards
from ..vocab import resolve_merge
from .common import SPLITS, check_audio_files, check_columns, resolve_audio

__all__ = [
    "MTT_SYNONYMS",
    "MttAnnotations",
    "MttClip",
    "MttSplits",
    "classic_split",
    "merge_tags",
    "mtt_splits",
    "prepare_mtt",
    "read_annotations",
    "read_split_npy",
    "top_tags",
]

log = logging.getLogger(__name__)

# Synonym groups commonly merged in MagnaTagATune work (each group -> its first name). The
# grouping is the one circulated with many public MTT preprocessing scripts.
_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("beat", "beats"),
    ("chant", "chanting"),
    ("choir", "choral"),
    ("classical", "clasical", "classic"),
    ("drum", "drums"),
    ("electro", "electronic", "electronica", "electric"),
    ("fast", "fast beat", "quick"),
    (
        "female",
        "female singer",
        "female singing",
        "female vocals",
        "female vocal",
        "female voice",
        "woman",
        "woman singing",
        "women",
    ),
    ("flute", "flutes"),
    ("guitar", "guitars"),
    ("hard", "hard rock"),
    ("harpsichord", "harpsicord"),
    ("heavy", "heavy metal", "metal"),
    ("horn", "horns"),
    ("india", "indian"),
    ("jazz", "jazzy"),
    ("male", "male singer", "male vocal", "male vocals", "male voice", "man", "man singing", "men"),
    ("no beat", "no drums"),
    ("no singer", "no singing", "no vocal", "no vocals", "no voice", "no voices", "instrumental"),
    ("opera", "operatic"),
    ("orchestra", "orchestral"),
    ("quiet", "silence"),
    ("singer", "singing"),
    ("space", "spacey"),
    ("string", "strings"),
    ("synth", "synthesizer"),
    ("violin", "violins"),
    ("vocal", "vocals", "voice", "voices"),
    ("strange", "weird"),
)

MTT_SYNONYMS: dict[str, str] = {s: g[0] for g in _SYNONYM_GROUPS for s in g[1:]}
"""Synonym map ``{tag: canonical tag}`` over the 188 MTT tags (``merge_synonyms=True``)."""

_HEX_DIRS = "0123456789abcdef"
_CLASSIC = {
    **{d: "train" for d in "0123456789ab"},
    "c": "val",
    "d": "test",
    "e": "test",
    "f": "test",
}
_BINARY = frozenset(("0", "1"))
_MP3_PATH = re.compile(r"^[0-9a-f]/[^/\\]+\.mp3$")


@dataclass(frozen=True)
class MttClip:
    """One row of ``annotations_final.csv``.

    Attributes:
        row: 0-based data row (the ``<row>`` of the won2020 split files).
        clip_id: The ``clip_id`` field (a string of digits).
        mp3_path: Relative path, ``<hex folder>/<name>.mp3``.
        tags: Names of the tags set to 1, in header order.
    """

    row: int
    clip_id: str
    mp3_path: str
    tags: tuple[str, ...]

    @property
    def folder(self) -> str:
        """The hex folder, ``"0"``-``"f"``."""
        return self.mp3_path[0]


@dataclass(frozen=True)
class MttAnnotations:
    """``annotations_final.csv``, parsed.

    Attributes:
        path: The file read.
        tags: The tag columns, in header order (188 in the real file).
        clips: One entry per data row, in file order.
    """

    path: Path
    tags: tuple[str, ...]
    clips: tuple[MttClip, ...]


@dataclass
class MttSplits:
    """What :func:`mtt_splits` returns.

    Attributes:
        splits: ``{"train": items, "val": items, "test": items}``.
        tags: The selected tags, most frequent first.
        counts: Clip count of every tag over the whole file, after the merge.
        dropped: How many clips were left out and why (per split), for the manifest.
    """

    splits: dict[str, list[AudioItem]]
    tags: list[str]
    counts: dict[str, int]
    dropped: dict[str, int] = field(default_factory=dict)


def read_annotations(path: str | os.PathLike[str]) -> MttAnnotations:
    """Read ``annotations_final.csv`` (tab-separated, optionally quoted fields).

    Args:
        path: The annotations file.

    Returns:
        The parsed :class:`MttAnnotations`.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: For a header without ``clip_id`` first and ``mp3_path`` last, a row with the
            wrong number of fields, a tag value other than 0/1, a malformed ``mp3_path`` or a
            repeated ``clip_id``; the message names the file, the line and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MagnaTagATune annotations {path} not found (annotations_final.csv from "
            "mirg.city.ac.uk/codeapps/the-magnatagatune-dataset)"
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = [h.strip() for h in next(reader, [])]
        check_columns(path, header, ["clip_id", "mp3_path"])
        if header[0] != "clip_id" or header[-1] != "mp3_path" or len(header) < 3:
            raise ValueError(
                f"{path}:1: expected a tab-separated header 'clip_id', the tag names, "
                f"'mp3_path'; got {len(header)} columns starting {header[:3]} and ending "
                f"{header[-1:]}. Is this annotations_final.csv?"
            )
        tags = tuple(header[1:-1])
        dup = sorted(t for t, n in Counter(tags).items() if n > 1)
        if dup:
            raise ValueError(f"{path}:1: repeated tag column(s) {dup}")
        clips: list[MttClip] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{line}: expected {len(header)} tab-separated fields, got {len(row)}"
                )
            clip_id, rel = row[0].strip(), row[-1].strip()
            if not clip_id.isdigit():
                raise ValueError(
                    f"{path}:{line}: column 'clip_id': expected a number, got {clip_id!r}"
                )
            if not _MP3_PATH.match(rel):
                raise ValueError(
                    f"{path}:{line}: column 'mp3_path': expected '<0-f>/<name>.mp3', got {rel!r}"
                )
            if clip_id in seen:
                raise ValueError(
                    f"{path}:{line}: clip_id {clip_id} repeated (also line {seen[clip_id]})"
                )
            seen[clip_id] = line
            values = row[1:-1]
            if not _BINARY.issuperset(values):
                values = [v.strip() for v in values]
                for tag, v in zip(tags, values, strict=True):
                    if v not in _BINARY:
                        raise ValueError(
                            f"{path}:{line}: column {tag!r}: expected 0 or 1, got {v!r}"
                        )
            clips.append(MttClip(len(clips), clip_id, rel, _ones(tags, values)))
    if not clips:
        raise ValueError(f"{path}: no clips (only a header)")
    return MttAnnotations(path=path, tags=tags, clips=tuple(clips))


def _ones(tags: tuple[str, ...], values: list[str]) -> tuple[str, ...]:
    """Names of the columns holding "1" (list.index scans in C: rows are mostly zeros)."""
    on = []
    i = -1
    while True:
        try:
            i = values.index("1", i + 1)
        except ValueError:
            return tuple(on)
        on.append(tags[i])


def _unknown_tags(what: str, names: Iterable[str], known: Sequence[str]) -> ValueError:
    parts = []
    for n in names:
        close = difflib.get_close_matches(n, known, n=3, cutoff=0.6)
        parts.append(repr(n) + (f" (close: {', '.join(map(repr, close))})" if close else ""))
    return ValueError(f"{what}: unknown MagnaTagATune tag(s) {'; '.join(parts)}")


def merge_tags(
    annotations: MttAnnotations, merge: Mapping[str, str] | None
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Apply a synonym map: a clip has the target tag if it has the target or any source.

    Chains (``a -> b``, ``b -> c``) resolve to the last target.

    Args:
        annotations: From :func:`read_annotations`.
        merge: ``{source: target}``; every name must be a tag column of the file.

    Returns:
        ``(tags, clip_tags)``: the tag names left (header order, sources removed) and each
        clip's tags after the merge (in that order), aligned with ``annotations.clips``.

    Raises:
        ValueError: Naming every unknown tag in the map (with close matches), or a cycle.
    """
    merge = dict(merge or {})
    known = set(annotations.tags)
    unknown = [t for t in dict.fromkeys([*merge, *merge.values()]) if t not in known]
    if unknown:
        raise _unknown_tags(f"merge map (tags of {annotations.path})", unknown, annotations.tags)
    resolved = resolve_merge(merge)
    tags = tuple(t for t in annotations.tags if t not in resolved)
    pos = {t: i for i, t in enumerate(tags)}
    clip_tags = [
        tuple(sorted({resolved.get(t, t) for t in c.tags}, key=pos.__getitem__))
        for c in annotations.clips
    ]
    return tags, clip_tags


def top_tags(
    tags: Sequence[str], clip_tags: Iterable[Iterable[str]], k: int
) -> tuple[list[str], dict[str, int]]:
    """The ``k`` most frequent tags.

    Args:
        tags: Candidate tags in header order (the tie-break order).
        clip_tags: Each clip's tags.
        k: How many to keep; ``0`` keeps every tag that at least one clip has.

    Returns:
        ``(selected, counts)``: the selected tags by decreasing count (ties: header order), and
        the count of every tag.

    Raises:
        ValueError: If ``k`` is negative.
    """
    if k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = all tags), got {k}")
    counts = Counter(t for ts in clip_tags for t in ts)
    ranked = sorted((t for t in tags if counts[t] > 0), key=lambda t: -counts[t])  # stable
    selected = ranked if k == 0 else ranked[:k]
    if k and len(selected) < k:
        log.warning(
            "only %d MagnaTagATune tags occur at all; top_k=%d keeps all of them", len(selected), k
        )
    return selected, {t: counts[t] for t in tags}


def classic_split(mp3_path: str) -> str:
    """The classic folder split of a clip: ``0``-``b`` train, ``c`` val, ``d``-``f`` test.

    Args:
        mp3_path: ``<hex folder>/<name>.mp3``.

    Returns:
        ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        ValueError: If the path does not start with a hex folder.
    """
    split = _CLASSIC.get(mp3_path[:1]) if mp3_path[1:2] == "/" else None
    if split is None:
        raise ValueError(f"MagnaTagATune path {mp3_path!r} does not start with a folder 0-f")
    return split


def read_split_npy(
    path: str | os.PathLike[str], annotations: MttAnnotations | None = None
) -> list[tuple[int, str]]:
    """Read a split file of Won et al. (``train.npy`` / ``valid.npy`` / ``test.npy``).

    Loaded with ``numpy.load(allow_pickle=False)``: a unicode array of ``"<row>\\t<mp3_path>"``.

    Args:
        path: The ``.npy`` file.
        annotations: If given, every entry is checked against it: row ``<row>`` must exist and
            have the same ``mp3_path``.

    Returns:
        ``[(row, mp3_path), ...]`` in file order.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If it is not a 1-D string array of such entries, or an entry does not match
            the annotations (the message names the file, the entry and the row).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MagnaTagATune split file {path} not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a plain numpy string array ({e})") from e
    if arr.ndim != 1 or arr.dtype.kind != "U":
        raise ValueError(f"{path}: expected a 1-D unicode array, got {arr.dtype} {arr.shape}")
    out = []
    for i, entry in enumerate(arr.tolist()):
        row, sep, rel = entry.partition("\t")
        if not sep or not row.isdigit() or not _MP3_PATH.match(rel):
            raise ValueError(f"{path}: entry {i} is {entry!r}, expected '<row>\\t<0-f>/<name>.mp3'")
        r = int(row)
        if annotations is not None:
            if r >= len(annotations.clips):
                raise ValueError(
                    f"{path}: entry {i} ({entry!r}) names row {r}, but {annotations.path} has "
                    f"{len(annotations.clips)} rows"
                )
            if annotations.clips[r].mp3_path != rel:
                raise ValueError(
                    f"{path}: entry {i} ({entry!r}) names row {r}, which is "
                    f"{annotations.clips[r].mp3_path!r} in {annotations.path}: the split files and "
                    "the annotations do not match"
                )
        out.append((r, rel))
    return out


def mtt_splits(
    annotations: MttAnnotations,
    *,
    audio_dir: str | os.PathLike[str],
    split: str = "classic",
    split_dir: str | os.PathLike[str] | None = None,
    top_k: int = 50,
    merge: Mapping[str, str] | None = None,
    drop_untagged: bool | None = None,
) -> MttSplits:
    """Select tags and build the MagnaTagATune splits (no audio is decoded).

    Args:
        annotations: From :func:`read_annotations`.
        audio_dir: Folder holding ``0/`` ... ``f/``.
        split: ``"classic"`` or ``"won2020"`` (see the module docstring).
        split_dir: For ``"won2020"``: folder holding ``valid.npy`` and ``test.npy`` (and
            ``train.npy`` if available).
        top_k: Keep the ``top_k`` most frequent tags (after the merge); 0 keeps all.
        merge: Synonym map ``{tag: canonical tag}``, applied before counting.
        drop_untagged: Leave out clips without any selected tag. Default: true for
            ``"won2020"`` (as its lists do), false for ``"classic"``.

    Returns:
        An :class:`MttSplits`. Items carry the selected tags (most frequent first), track id =
        ``clip_id``, metadata ``{"mp3_path": ...}``.

    Raises:
        FileNotFoundError: If a won2020 split file is missing.
        ValueError: For an unknown split, a missing ``split_dir``, an unknown tag in ``merge``,
            or split files that do not match the annotations.
    """
    if split not in ("classic", "won2020"):
        raise ValueError(f"unknown MagnaTagATune split {split!r}; use 'classic' or 'won2020'")
    if drop_untagged is None:
        drop_untagged = split == "won2020"
    tags, clip_tags = merge_tags(annotations, merge)
    selected, counts = top_tags(tags, clip_tags, top_k)
    rank = {t: i for i, t in enumerate(selected)}
    kept = [tuple(sorted((t for t in ts if t in rank), key=rank.__getitem__)) for ts in clip_tags]

    assign: dict[int, str] = {}
    dropped: dict[str, int] = {}
    if split == "classic":
        for c in annotations.clips:
            assign[c.row] = classic_split(c.mp3_path)
    else:
        if split_dir is None:
            raise ValueError(
                "split='won2020' needs split_dir: the folder holding valid.npy and test.npy "
                "(split/mtat/ of minzwon/sota-music-tagging-models)"
            )
        split_dir = Path(split_dir)
        lists = {
            "val": read_split_npy(split_dir / "valid.npy", annotations),
            "test": read_split_npy(split_dir / "test.npy", annotations),
        }
        train_file = split_dir / "train.npy"
        if train_file.is_file():
            lists["train"] = read_split_npy(train_file, annotations)
        for name, entries in lists.items():
            for row, _ in entries:
                if row in assign:
                    raise ValueError(
                        f"{split_dir}: row {row} ({annotations.clips[row].mp3_path}) is in both "
                        f"{assign[row]} and {name}"
                    )
                assign[row] = name
        if "train" not in lists:
            held_out = {annotations.clips[r].folder for r in assign}
            excluded = 0
            for c in annotations.clips:
                if c.row in assign or not kept[c.row]:
                    continue
                if c.folder in held_out:
                    excluded += 1
                    continue
                assign[c.row] = "train"
            if excluded:
                log.info(
                    "won2020: %d tagged clips in the validation/test folders (%s) are in neither "
                    "list and were left out of train",
                    excluded,
                    "".join(sorted(held_out)),
                )
            dropped["train_excluded_heldout_folders"] = excluded
            log.info("won2020: no train.npy in %s; train derived from the tagged clips", split_dir)

    splits: dict[str, list[AudioItem]] = {s: [] for s in SPLITS}
    untagged = Counter()
    for c in annotations.clips:
        name = assign.get(c.row)
        if name is None:
            continue
        if drop_untagged and not kept[c.row]:
            untagged[name] += 1
            continue
        splits[name].append(
            AudioItem(
                path=str(resolve_audio(audio_dir, c.mp3_path)),
                tags=kept[c.row],
                track_id=c.clip_id,
                metadata={"mp3_path": c.mp3_path},
            )
        )
    for name in SPLITS:
        if untagged[name]:
            dropped[f"{name}_untagged"] = untagged[name]
    if untagged:
        log.info(
            "left out %d clips without a selected tag: %s", sum(untagged.values()), dict(untagged)
        )
    return MttSplits(splits=splits, tags=selected, counts=counts, dropped=dropped)


def prepare_mtt(
    *,
    root: str,
    out: str,
    annotations: str | None = None,
    split: str = "classic",
    split_dir: str | None = None,
    top_k: int = 50,
    merge: dict[str, str] | None = None,
    merge_synonyms: bool = False,
    drop_untagged: bool | None = None,
    skip_missing: bool = False,
    sample_rate: int = 16000,
    workers: int = 1,
    strict: bool = False,
    max_samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Write MagnaTagATune into shards with its top-``k`` tags, splits ``train`` / ``val`` / ``test``.

    The annotations, the merge map and the split files are checked before anything is written.
    Clips whose mp3 cannot be decoded (the real collection has a few empty files) are skipped and
    listed in ``failures.tsv``.

    Args:
        root: Folder holding the extracted mp3 folders ``0/`` ... ``f/``.
        out: Output folder for the shards.
        annotations: ``annotations_final.csv`` (tab-separated); default ``root/annotations_final.csv``.
        split: ``"classic"`` (folders 0-b / c / d-f) or ``"won2020"`` (the cleaned split of
            Won et al. 2020, read from ``split_dir``).
        split_dir: For ``split="won2020"``: folder holding ``valid.npy`` and ``test.npy`` (and
            ``train.npy`` if you have it), i.e. ``split/mtat/`` of
            minzwon/sota-music-tagging-models.
        top_k: Number of most frequent tags to keep (0 = all tags).
        merge: Synonym map ``{tag: canonical tag}`` applied before the top-k selection; every
            name must be one of the 188 tags.
        merge_synonyms: Also merge the common MTT synonym groups (:data:`MTT_SYNONYMS`);
            entries of ``merge`` take precedence.
        drop_untagged: Leave out clips that have none of the selected tags. Default: true for
            ``won2020``, false for ``classic``.
        skip_missing: Skip clips whose mp3 is missing (listed in ``failures.tsv``) instead of
            stopping with an error.
        sample_rate: Sample rate of the stored audio (MTT mp3s are 16 kHz).
        workers: Processes decoding and writing in parallel.
        strict: Refuse (list in ``failures.tsv``) files that decode to less audio than their
            headers promise; by default they are written from what decodes, with a warning,
            and listed in ``truncated.tsv``.
        max_samples_per_shard: Most clips per shard.
        progress: Show progress bars.

    Returns:
        The :class:`~musictag.data.shards.ShardWriteReport` of the written folder.

    Raises:
        FileNotFoundError: If the annotations, a split file or (unless ``skip_missing``) an mp3
            is missing.
        ValueError: For malformed annotations or split files, or an unknown tag in the merge map.
    """
    ann_path = Path(annotations) if annotations else Path(root) / "annotations_final.csv"
    ann = read_annotations(ann_path)
    merge_map = {**(MTT_SYNONYMS if merge_synonyms else {}), **(merge or {})}
    result = mtt_splits(
        ann,
        audio_dir=root,
        split=split,
        split_dir=split_dir,
        top_k=top_k,
        merge=merge_map,
        drop_untagged=drop_untagged,
    )
    check_audio_files(result.splits, root=root, skip_missing=skip_missing, source="mtt")
    options = {
        "root": str(root),
        "annotations": str(ann_path),
        "split": split,
        "split_dir": None if split_dir is None else str(split_dir),
        "top_k": top_k,
        "merge": dict(sorted((merge or {}).items())),
        "merge_synonyms": merge_synonyms,
        "drop_untagged": split == "won2020" if drop_untagged is None else drop_untagged,
        "skip_missing": skip_missing,
        "single_label": False,
        "sample_rate": sample_rate,
        "max_samples_per_shard": max_samples_per_shard,
    }
    return write_shards(
        result.splits,
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=max_samples_per_shard,
        workers=workers,
        strict=strict,
        provenance={
            "source": "mtt",
            "options": options,
            "tags": result.tags,
            "dropped": result.dropped,
        },
        progress=progress,
    )
