"""GTZAN (Tzanetakis & Cook 2002): 1,000 clips of 30 s, 10 genres, one genre per clip.

Reads ``genres/<genre>/<genre>.000NN.wav`` (or ``genres_original/``, or ``.au``), split at
random stratified by genre or by the fault-filtered lists of Kereliuk, Sturm & Larsen 2015.
Single-label (``provenance.options.single_label``). Options: ``docs/datasets.md#gtzan``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..shards import AudioItem, ShardWriteReport, write_shards
from .common import SPLITS, check_audio_files, stratified_split

__all__ = [
    "GENRES",
    "find_genres_dir",
    "gtzan_splits",
    "prepare_gtzan",
    "read_filtered_split",
    "read_split_list",
    "scan_gtzan",
]

log = logging.getLogger(__name__)

GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
"""The ten GTZAN genres, in the usual (alphabetical) order."""

_AUDIO_EXTS = (".wav", ".au")
_GENRE_ALT = "|".join(GENRES)
_LIST_LINE = re.compile(rf"^(?P<genre>{_GENRE_ALT})/(?P=genre)\.(?P<num>\d{{5}})\.(?:wav|au)$")
_FILE_NAME = re.compile(rf"^(?P<genre>{_GENRE_ALT})\.(?P<num>\d{{5}})\.(?:wav|au)$")
# list file stem of each split, as named in coreyker/dnn-mgr/gtzan
_FILTERED_LISTS = {
    "train": "train_filtered.txt",
    "val": "valid_filtered.txt",
    "test": "test_filtered.txt",
}
_DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def find_genres_dir(root: str | os.PathLike[str]) -> Path:
    """Find the folder that holds the ten genre folders.

    Args:
        root: That folder itself, or a parent holding ``genres/``, ``genres_original/`` or
            ``Data/genres_original/``.

    Returns:
        The folder holding ``blues/``, ``classical/``, ...

    Raises:
        FileNotFoundError: If none of the candidates holds all ten genre folders; the message
            lists what was looked for and which genre folders are missing.
    """
    root = Path(root)
    candidates = [
        root,
        root / "genres",
        root / "genres_original",
        root / "Data" / "genres_original",
    ]
    for c in candidates:
        if all((c / g).is_dir() for g in GENRES):
            return c
    best = max(candidates, key=lambda c: sum((c / g).is_dir() for g in GENRES))
    missing = [g for g in GENRES if not (best / g).is_dir()]
    raise FileNotFoundError(
        f"GTZAN genre folders not found under {root}: looked in "
        f"{', '.join(str(c) for c in candidates)}; {best} lacks "
        f"{', '.join(g + '/' for g in missing)}. "
        "Point --root at the extracted archive (the folder holding genres/)."
    )


def scan_gtzan(genres_dir: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """List the clips on disk, per genre.

    Files not named ``<genre>.000NN.wav`` (or ``.au``) are ignored. When both a ``.wav`` and an
    ``.au`` file exist for a clip, the ``.wav`` is used.

    Args:
        genres_dir: Folder holding the genre folders (see :func:`find_genres_dir`).

    Returns:
        ``{genre: files}`` for the ten genres (in :data:`GENRES` order), files sorted by name.
    """
    out: dict[str, list[Path]] = {}
    for genre in GENRES:
        by_stem: dict[str, Path] = {}
        for p in sorted(Path(genres_dir, genre).iterdir()):
            m = _FILE_NAME.match(p.name)
            if m is None or m["genre"] != genre or not p.is_file():
                continue
            if p.stem not in by_stem or p.suffix == ".wav":
                by_stem[p.stem] = p
        out[genre] = [by_stem[s] for s in sorted(by_stem)]
    return out


def read_split_list(path: str | os.PathLike[str]) -> list[str]:
    """Read one split list of coreyker/dnn-mgr (lines like ``blues/blues.00012.wav``).

    Args:
        path: The list file.

    Returns:
        The relative paths, in file order (blank lines skipped).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: For a line that is not ``<genre>/<genre>.000NN.wav`` of a GTZAN genre, or a
            repeated line; the message names the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GTZAN split list {path} not found")
    out: list[str] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            if not _LIST_LINE.match(line):
                raise ValueError(
                    f"{path}:{lineno}: expected '<genre>/<genre>.000NN.wav' with a GTZAN genre "
                    f"({', '.join(GENRES)}), got {line!r}"
                )
            if line in seen:
                raise ValueError(
                    f"{path}:{lineno}: {line} is listed twice (also line {seen[line]})"
                )
            seen[line] = lineno
            out.append(line)
    return out


def read_filtered_split(split_dir: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read the fault-filtered split: ``{train,valid,test}_filtered.txt`` of one folder.

    Args:
        split_dir: Folder holding the three list files (``gtzan/`` of coreyker/dnn-mgr).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` relative paths, in file order.

    Raises:
        FileNotFoundError: If a list file is missing.
        ValueError: For a malformed line (see :func:`read_split_list`) or a clip listed in two
            splits (the message names both files).
    """
    split_dir = Path(split_dir)
    out: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for split, name in _FILTERED_LISTS.items():
        lines = read_split_list(split_dir / name)
        for line in lines:
            if line in where:
                raise ValueError(
                    f"{split_dir / name}: {line} is also listed in {where[line]}; the split "
                    "lists must be disjoint"
                )
            where[line] = str(split_dir / name)
        out[split] = lines
    return out


def _resolve_listed(genres_dir: Path, rel: str) -> Path:
    """The file for a listed clip; falls back to ``.au`` (original tarball) if the ``.wav`` is absent."""
    path = genres_dir.joinpath(*rel.split("/"))
    if not path.is_file():
        for ext in _AUDIO_EXTS:
            alt = path.with_suffix(ext)
            if alt.is_file():
                return alt
    return path


def _item(path: Path, genre: str) -> AudioItem:
    return AudioItem(path=str(path), tags=(genre,), track_id=Path(path).stem)


def gtzan_splits(
    root: str | os.PathLike[str],
    *,
    split: str = "stratified",
    split_dir: str | os.PathLike[str] | None = None,
    fractions: Sequence[float] = _DEFAULT_FRACTIONS,
    seed: int = 0,
    skip_missing: bool = False,
) -> dict[str, list[AudioItem]]:
    """Build the GTZAN splits (no audio is decoded).

    Args:
        root: The GTZAN folder (see :func:`find_genres_dir`).
        split: ``"stratified"`` (seeded random split, the same fraction of every genre in each
            part) or ``"filtered"`` (the fault-filtered lists).
        split_dir: Folder holding ``{train,valid,test}_filtered.txt``; for ``"filtered"`` only.
            Default: ``root``, then the genres folder.
        fractions: ``(train, val, test)`` weights for ``"stratified"``.
        seed: Seed of the ``"stratified"`` split.
        skip_missing: For ``"filtered"``: skip listed clips that are missing on disk (they are
            then listed in ``failures.tsv``) instead of raising.

    Returns:
        ``{"train": items, "val": items, "test": items}``; each item's tags are ``(genre,)`` and
        its track id the file stem (``"blues.00012"``).

    Raises:
        FileNotFoundError: If the genre folders, a list file or (unless ``skip_missing``) a
            listed clip is missing; the message names the list file and line.
        ValueError: For an unknown ``split``, bad ``fractions`` or a malformed list.
    """
    genres_dir = find_genres_dir(root)
    if split == "stratified":
        if len(fractions) != len(SPLITS):
            raise ValueError(
                f"fractions must be 3 numbers (train, val, test), got {list(fractions)}"
            )
        files = scan_gtzan(genres_dir)
        counts = {g: len(v) for g, v in files.items()}
        if sum(counts.values()) == 0:
            raise FileNotFoundError(
                f"no GTZAN clips (<genre>.000NN.wav or .au) in the genre folders of {genres_dir}"
            )
        if any(n != 100 for n in counts.values()):
            log.warning("GTZAN at %s is not 100 clips per genre: %s", genres_dir, counts)
        by_genre = {g: [_item(p, g) for p in v] for g, v in files.items()}
        return stratified_split(by_genre, fractions, seed, SPLITS)
    if split != "filtered":
        raise ValueError(f"unknown GTZAN split {split!r}; use 'stratified' or 'filtered'")
    if split_dir is None:
        for c in (Path(root), genres_dir):
            if (c / _FILTERED_LISTS["train"]).is_file():
                split_dir = c
                break
        else:
            raise FileNotFoundError(
                f"split='filtered' needs split_dir: the folder holding "
                f"{', '.join(_FILTERED_LISTS.values())} (gtzan/ of coreyker/dnn-mgr); none found "
                f"in {root}"
            )
    lists = read_filtered_split(split_dir)
    out: dict[str, list[AudioItem]] = {}
    missing: list[str] = []
    for split_name, lines in lists.items():
        list_file = Path(split_dir) / _FILTERED_LISTS[split_name]
        items = []
        for lineno, rel in enumerate(lines, 1):
            path = _resolve_listed(genres_dir, rel)
            if not path.is_file():
                missing.append(f"{list_file}:{lineno}: {rel}")
            items.append(_item(path, rel.split("/", 1)[0]))
        out[split_name] = items
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"{len(missing)} clip(s) of the filtered split are missing under {genres_dir}: "
            + "; ".join(missing[:5])
            + ("; ..." if len(missing) > 5 else "")
            + ". Complete the collection or pass skip_missing=True."
        )
    return out


def prepare_gtzan(
    *,
    root: str,
    out: str,
    split: str = "stratified",
    split_dir: str | None = None,
    fractions: list[float] | None = None,
    seed: int = 0,
    skip_missing: bool = False,
    sample_rate: int = 16000,
    workers: int = 1,
    strict: bool = False,
    max_samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Write GTZAN into shards: one genre tag per clip, splits ``train`` / ``val`` / ``test``.

    The metadata (folders, split lists) is checked before anything is written. A clip that
    cannot be decoded (the real collection has one: ``jazz/jazz.00054.wav``) is skipped and
    listed in ``failures.tsv``; it never stops the job.

    Args:
        root: GTZAN folder: the one holding ``genres/`` (or ``genres_original/``), or the genres
            folder itself.
        out: Output folder for the shards.
        split: ``"stratified"``: seeded random split with the same proportions in every genre
            (80/10/10 clips per genre by default); ``"filtered"``: the fault-filtered split of
            Kereliuk et al. 2015 (443 / 197 / 290 clips).
        split_dir: For ``split="filtered"``: folder holding ``train_filtered.txt``,
            ``valid_filtered.txt`` and ``test_filtered.txt`` (``gtzan/`` of coreyker/dnn-mgr).
            Default: look in ``root``.
        fractions: ``[train, val, test]`` weights of the stratified split (default
            ``[0.8, 0.1, 0.1]``).
        seed: Seed of the stratified split.
        skip_missing: For ``split="filtered"``: skip listed clips missing on disk (listed in
            ``failures.tsv``) instead of stopping with an error.
        sample_rate: Sample rate of the stored audio (GTZAN is 22,050 Hz).
        workers: Processes decoding and writing in parallel.
        strict: Refuse (list in ``failures.tsv``) files that decode to less audio than their
            headers promise; by default they are written from what decodes, with a warning,
            and listed in ``truncated.tsv``.
        max_samples_per_shard: Most clips per shard.
        progress: Show progress bars.

    Returns:
        The :class:`~musictag.data.shards.ShardWriteReport` of the written folder.

    Raises:
        FileNotFoundError: If the genre folders, a split list or a listed clip is missing.
        ValueError: For an unknown split, bad fractions or a malformed split list.
    """
    fr = list(_DEFAULT_FRACTIONS if fractions is None else fractions)
    splits = gtzan_splits(
        root, split=split, split_dir=split_dir, fractions=fr, seed=seed, skip_missing=skip_missing
    )
    check_audio_files(splits, root=root, skip_missing=True, source="gtzan")
    options: dict[str, object] = {"root": str(root), "split": split, "single_label": True}
    if split == "stratified":
        options.update(fractions=fr, seed=seed)
    else:
        options.update(split_dir=None if split_dir is None else str(split_dir))
        options.update(skip_missing=skip_missing)
    options.update(sample_rate=sample_rate, max_samples_per_shard=max_samples_per_shard)
    return write_shards(
        splits,
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=max_samples_per_shard,
        workers=workers,
        strict=strict,
        provenance={"source": "gtzan", "options": options, "tags": list(GENRES)},
        progress=progress,
    )
