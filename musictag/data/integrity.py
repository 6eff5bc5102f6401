"""Checking shards against the checksums written with them: per sample, and a whole shard set.

Every sample written by :func:`~musictag.data.shards.write_shards` carries a
``{key}.checksums.json`` member with a digest of every 64-KiB block of its audio and JSON
members, and the manifest holds the SHA-256 of every shard.
:func:`~musictag.data.shards.check_sample` is what readers call on each sample;
:func:`verify_shards` (``musictag verify``) checks everything: shards present, their hashes, every
member's checksum, that every audio member decodes, and the sample counts of the manifest.
Shards written before checksums existed are read unverified, and said to be.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .shards import (
    DECODE_ERRORS,
    DamagedSampleError,
    audio_member,
    check_sample,
    decode_audio,
    load_manifest,
    read_shard,
)
from .shards.checksums import SHARD_HASH
from .shards.format import PARTS_DIR

__all__ = ["Problem", "VerifyReport", "verify_shards"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a shard set.

    Attributes:
        shard: The shard (file name, relative to the manifest's folder).
        key: The track's sample key, or ``"-"`` for a problem of the whole shard.
        what: What is wrong, one line.
    """

    shard: str
    key: str
    what: str

    def __str__(self) -> str:
        return (
            f"{self.shard}: {self.what}"
            if self.key == "-"
            else f"{self.shard}: {self.key}: {self.what}"
        )


@dataclass
class VerifyReport:
    """What :func:`verify_shards` found.

    Attributes:
        problems: Every problem, in shard order.
        n_shards: Shards the manifest lists.
        n_samples: Samples the manifest lists.
        unverified_shards: Shards that carry no checksums (written before they existed): only
            decoded, not verified.
    """

    problems: list[Problem]
    n_shards: int
    n_samples: int
    unverified_shards: list[str]

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def damaged_keys(self) -> set[tuple[str, str]]:
        """``(shard, key)`` of every track with a problem."""
        return {(p.shard, p.key) for p in self.problems if p.key != "-"}


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _planned_keys(root: Path, name: str) -> list[str] | None:
    """Keys written into a shard, from its sidecar (``None`` when there is none)."""
    try:
        sidecar = json.loads((root / PARTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
        return [s["key"] for s in sidecar["samples"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _shard_problems(root: Path, name: str, expected_count: int, digest: str | None) -> Iterator:
    path = root / name
    if not path.is_file():
        yield Problem(name, "-", "missing shard (listed in the manifest, not on disk)")
        return
    if digest is not None and _file_hash(path) != digest:
        yield Problem(name, "-", f"shard {SHARD_HASH} mismatch: the file differs from when written")
    damage: list[str] = []
    seen: list[str] = []
    for sample in read_shard(path, on_damage=damage.append):
        key = str(sample["__key__"])
        seen.append(key)
        try:
            check_sample(sample, required=digest is not None, full=True)
            decode_audio(audio_member(sample))
        except DECODE_ERRORS as e:
            yield Problem(name, key, _what(e))
    for d in damage:
        yield Problem(name, "-", d)
    planned = _planned_keys(root, name)
    if planned is not None:
        for key in planned:
            if key not in seen:
                yield Problem(name, key, "missing from the shard (its tar headers are damaged)")
    if len(set(seen)) != expected_count:
        yield Problem(
            name,
            "-",
            f"count mismatch: {len(set(seen))} samples read, the manifest lists {expected_count}",
        )
    return


def _what(e: BaseException) -> str:
    if isinstance(e, DamagedSampleError):
        return str(e)
    return "undecodable: " + " ".join(f"{type(e).__name__}: {e}".split())


def verify_shards(path: str | Path, on_shard: Callable[[str], Any] | None = None) -> VerifyReport:
    """Check a shard set against its manifest and checksums.

    Args:
        path: A folder holding ``manifest.json``, or the manifest.
        on_shard: Called with each shard name before it is checked (progress).

    Returns:
        A :class:`VerifyReport`; ``report.ok`` when nothing is wrong.

    Raises:
        FileNotFoundError, ValueError: when there is no valid manifest (from
            :func:`~musictag.data.shards.load_manifest`).
    """
    manifest = load_manifest(path)
    root = Path(manifest["_dir"])
    problems: list[Problem] = []
    unverified: list[str] = []
    n_shards = n_samples = 0
    for split in manifest["splits"].values():
        hashes = split.get(f"shard_{SHARD_HASH}") or [None] * len(split["shards"])
        for name, count, digest in zip(
            split["shards"], split["shard_samples"], hashes, strict=True
        ):
            if on_shard is not None:
                on_shard(name)
            n_shards += 1
            n_samples += int(count)
            if digest is None:
                unverified.append(name)
            problems.extend(_shard_problems(root, name, int(count), digest))
    return VerifyReport(problems, n_shards, n_samples, unverified)
