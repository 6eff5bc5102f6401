"""The shard format: names, the manifest, the checksum record (described in ``docs/shards.md``).

A shard set is a folder of WebDataset tar shards (one sample per track: ``{key}.flac`` or
``{key}.wav``, ``{key}.json`` and ``{key}.checksums.json``) and a ``manifest.json`` that lists them
per split with their sample counts and SHA-256. :mod:`.writer` writes it, :mod:`.reader` reads it.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import xxhash

__all__ = [
    "AUDIO_EXTS",
    "AUDIO_FORMATS",
    "BLOCK_HASHES",
    "CHECKSUMS_EXT",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "checksum_record",
    "checksummed_shards",
    "load_manifest",
    "member_checksum",
    "shard_urls",
]

MANIFEST_FORMAT = "musictag-shards"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.tsv"
TRUNCATED_NAME = "truncated.tsv"
# Member of every sample holding the checksums of its other members, block by block:
# {"version": 2, "hash": "xxh3_64", "block_size": 65536, "blocks": {ext: "hex digests, joined"}}
# (version 1, before blocks: {"crc32": {ext: "8 hex digits"}}, one CRC-32 per whole member)
CHECKSUMS_EXT = "checksums.json"
CHECKSUMS_VERSION = 2
# A reader checks only the blocks it reads, so a random crop costs in proportion to its bytes.
# 64 KiB and xxh3-64 by measurement (docs/reliability.md): xxh3 hashes 15-30 GB/s here, zlib's
# CRC-32 2.5; smaller blocks make longer records and more hash calls for no measurable gain.
CHECKSUM_BLOCK = 1 << 16
BLOCK_HASH = "xxh3_64"
# block hash name -> hex digest of a block (fixed width)
BLOCK_HASHES: dict[str, Callable[[Any], str]] = {
    "xxh3_64": xxhash.xxh3_64_hexdigest,
    "crc32": lambda block: f"{zlib.crc32(block):08x}",
}
SHARD_HASH = "sha256"  # of each whole tar, in the manifest: the same as `sha256sum`
PARTS_DIR = ".parts"
# audio_format -> member extension. "pcm16" is a canonical 44-byte-header WAV: a crop is a slice.
AUDIO_FORMATS = {"flac": "flac", "pcm16": "wav"}
AUDIO_EXTS = tuple(AUDIO_FORMATS.values())


def member_checksum(data: bytes) -> str:
    """CRC-32 of a member's bytes as 8 hex digits (what ``{key}.checksums.json`` records).

    CRC-32 because it is read-time cheap: ``zlib.crc32`` runs at about 6 GB/s here, five times
    ``hashlib.sha256`` or ``blake2b`` (see ``docs/reliability.md``); it catches every burst of
    up to 32 flipped bits and other damage with probability 1 - 2^-32. It guards against damage,
    not tampering.
    """
    return f"{zlib.crc32(data):08x}"


def checksum_record(
    members: Mapping[str, bytes], block_size: int = CHECKSUM_BLOCK, hash_name: str = BLOCK_HASH
) -> bytes:
    """The ``{key}.checksums.json`` member of a sample: a digest per block of each member.

    Args:
        members: ``{extension: bytes}`` of the sample's other members.
        block_size: Bytes per block (the last block of a member may be shorter).
        hash_name: One of :data:`BLOCK_HASHES`.

    Returns:
        The record as JSON bytes.
    """
    digest = BLOCK_HASHES[hash_name]
    blocks = {
        ext: "".join(
            digest(memoryview(data)[i : i + block_size]) for i in range(0, len(data), block_size)
        )
        for ext, data in members.items()
    }
    record = {
        "version": CHECKSUMS_VERSION,
        "hash": hash_name,
        "block_size": block_size,
        "blocks": blocks,
    }
    return json.dumps(record, sort_keys=True).encode("ascii")


def checksummed_shards(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``{absolute shard path: SHA-256}`` of the manifest's shards written with checksums."""
    root = Path(manifest["_dir"])
    out = {}
    for split in manifest["splits"].values():
        hashes = split.get(f"shard_{SHARD_HASH}") or [None] * len(split["shards"])
        for name, digest in zip(split["shards"], hashes, strict=True):
            if digest:
                out[os.path.realpath(root / name)] = digest
    return out


def load_manifest(path_or_dir: str | Path) -> dict:
    """Load and validate a shard manifest.

    Shard names stay relative to the manifest's folder (use :func:`shard_urls` for paths); the
    only key added is ``"_dir"``, the manifest's folder as an absolute path, so that the dict can
    be handed to :func:`shard_urls`.

    Args:
        path_or_dir: ``manifest.json`` or the folder holding it.

    Returns:
        The manifest dict (fields in ``docs/shards.md``).

    Raises:
        FileNotFoundError: If there is no manifest there.
        ValueError: If the file is not a musictag shard manifest of a version (and audio format)
            this code reads.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no shard manifest at {path}: write the shards first (musictag.data.shards."
            f"write_shards or `musictag prepare`), or point to the folder that holds {MANIFEST_NAME}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a musictag shard manifest (not valid JSON: {e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(
            f'{path} is not a musictag shard manifest (expected "format": "{MANIFEST_FORMAT}")'
        )
    version = manifest.get("version")
    if version != MANIFEST_VERSION:
        raise ValueError(
            f"{path} has shard format version {version!r}; this musictag reads version "
            f"{MANIFEST_VERSION}. Upgrade musictag or rewrite the shards."
        )
    if not isinstance(manifest.get("splits"), dict):
        raise ValueError(f'{path} is not a valid musictag shard manifest (no "splits" object)')
    if manifest.get("audio_format", "flac") not in AUDIO_FORMATS:
        raise ValueError(
            f"{path} stores audio as {manifest.get('audio_format')!r}; this musictag reads "
            f"{sorted(AUDIO_FORMATS)}. Upgrade musictag or rewrite the shards."
        )
    manifest["_dir"] = str(path.parent.resolve())
    return manifest


def shard_urls(manifest_or_dir: Mapping | str | Path, split: str) -> list[str]:
    """Absolute paths of one split's shards, in order.

    Args:
        manifest_or_dir: A dict from :func:`load_manifest`, a ``manifest.json`` or its folder.
        split: Split name, e.g. ``"train"``.

    Returns:
        One absolute path per shard (only shards that hold at least one sample).

    Raises:
        ValueError: If the split is not in the manifest, or a dict without ``"_dir"`` is given.
    """
    if isinstance(manifest_or_dir, Mapping):
        manifest = manifest_or_dir
        if "_dir" not in manifest:
            raise ValueError(
                "shard_urls needs the manifest's folder: pass the dict returned by "
                "load_manifest (it has '_dir'), or the manifest path itself"
            )
    else:
        manifest = load_manifest(manifest_or_dir)
    splits = manifest["splits"]
    if split not in splits:
        raise ValueError(
            f"split {split!r} is not in the manifest in {manifest['_dir']}; "
            f"available: {sorted(splits)}"
        )
    root = Path(manifest["_dir"])
    return [str(root / name) for name in splits[split]["shards"]]
