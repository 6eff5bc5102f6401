"""The shard format: names and the manifest (described in ``docs/shards.md``).

A shard set is a folder of WebDataset tar shards (one sample per track: ``{key}.flac`` or
``{key}.wav``, ``{key}.json`` and ``{key}.checksums.json``) and a ``manifest.json`` that lists them
per split with their sample counts and SHA-256. :mod:`.writer` writes it, :mod:`.reader` reads it,
:mod:`.checksums` defines and checks the checksum record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "AUDIO_EXTS",
    "AUDIO_FORMATS",
    "CHECKSUMS_EXT",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "load_manifest",
    "shard_urls",
]

MANIFEST_FORMAT = "musictag-shards"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.tsv"
TRUNCATED_NAME = "truncated.tsv"
# member of every sample holding the checksums of its other members (see .checksums)
CHECKSUMS_EXT = "checksums.json"
PARTS_DIR = ".parts"
# audio_format -> member extension. "pcm16" is a canonical 44-byte-header WAV: a crop is a slice.
AUDIO_FORMATS = {"flac": "flac", "pcm16": "wav"}
AUDIO_EXTS = tuple(AUDIO_FORMATS.values())


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
