"""WebDataset tar shards of audio: the format (:mod:`.format`), writing (:mod:`.writer`),
reading (:mod:`.reader`) and block checksums (:mod:`.checksums`); see ``docs/shards.md``."""

from __future__ import annotations

from .checksums import (
    BLOCK_HASHES,
    COMPLETE,
    DamagedSampleError,
    check_sample,
    checksum_record,
    checksummed_shards,
    member_checksum,
)
from .format import (
    AUDIO_EXTS,
    AUDIO_FORMATS,
    CHECKSUMS_EXT,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    load_manifest,
    shard_urls,
)
from .reader import (
    DECODE_ERRORS,
    TarMember,
    audio_info,
    audio_member,
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
