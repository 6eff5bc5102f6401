"""WebDataset tar shards of audio: the format (:mod:`.format`), writing (:mod:`.writer`) and
reading (:mod:`.reader`). The format is described in ``docs/shards.md``."""

from __future__ import annotations

from .format import (
    AUDIO_EXTS,
    AUDIO_FORMATS,
    BLOCK_HASHES,
    CHECKSUMS_EXT,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    checksum_record,
    checksummed_shards,
    load_manifest,
    member_checksum,
    shard_urls,
)
from .reader import (
    COMPLETE,
    DECODE_ERRORS,
    DamagedSampleError,
    TarMember,
    audio_info,
    audio_member,
    check_sample,
    decode_audio,
    decode_json,
    is_url,
    iter_shard_tracks,
    read_shard,
    sample_member,
)
from .writer import AudioItem, Failure, ShardWriteReport, Truncated, write_shards

__all__ = [
    "AUDIO_EXTS",
    "AUDIO_FORMATS",
    "BLOCK_HASHES",
    "CHECKSUMS_EXT",
    "COMPLETE",
    "DECODE_ERRORS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "AudioItem",
    "DamagedSampleError",
    "Failure",
    "ShardWriteReport",
    "TarMember",
    "Truncated",
    "audio_info",
    "audio_member",
    "check_sample",
    "checksum_record",
    "checksummed_shards",
    "decode_audio",
    "decode_json",
    "is_url",
    "iter_shard_tracks",
    "load_manifest",
    "member_checksum",
    "read_shard",
    "sample_member",
    "shard_urls",
    "write_shards",
]
