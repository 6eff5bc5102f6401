"""Write audio files into WebDataset tar shards, and decode what is inside them.

One sample per track: the audio, ``{key}.flac`` (mono, 16-bit, resampled once to the target rate)
or, with ``audio_format="pcm16"``, ``{key}.wav`` (the same samples as raw 16-bit PCM behind a
44-byte WAV header: twice the bytes, ten times faster to crop), and ``{key}.json`` (track id, tag
names, duration, source, metadata). Writing is planned before any
audio is decoded, so a job can run in parallel, be interrupted and be resumed, and gives the same
shards and a byte-identical ``manifest.json`` whichever way it ran. A broken file is reported in
``failures.tsv`` and skipped; it never stops the job. The format is described in ``docs/shards.md``.

Only safe decoders are used when reading: FLAC via soundfile, 16-bit WAV via ``np.frombuffer``
(other WAV layouts via soundfile) and JSON; nothing is ever pickled.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import struct
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import xxhash
from tqdm.auto import tqdm

from ..audio import AudioReader, AudioReadError, describe_read_error, to_mono_resampled

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_FORMATS",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "AudioItem",
    "BLOCK_HASHES",
    "CHECKSUMS_EXT",
    "DamagedSampleError",
    "TarMember",
    "Failure",
    "Truncated",
    "ShardWriteReport",
    "audio_info",
    "check_sample",
    "checksum_record",
    "decode_audio",
    "decode_json",
    "load_manifest",
    "member_checksum",
    "read_shard",
    "shard_urls",
    "write_shards",
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
_PART_FORMAT = "musictag-shard-part"
# audio_format -> member extension. "pcm16" is a canonical 44-byte-header WAV: a crop is a slice.
AUDIO_FORMATS = {"flac": "flac", "pcm16": "wav"}
_AUDIO_EXTS = tuple(AUDIO_FORMATS.values())

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

# Byte estimate used to plan shards before decoding. It is an upper bound on what a sample adds
# to a tar: 16-bit PCM (FLAC never stores more than that, plus ~0.25% frame headers on white
# noise, hence n // 256), the FLAC stream header, two tar members (512-byte header + up to 511
# bytes of padding each) and the JSON text.
_TAR_BLOCK = 512
_MEMBER_OVERHEAD = 2 * 2 * _TAR_BLOCK
_FLAC_HEADER_OVERHEAD = 256
_JSON_NUMBERS_SLACK = 96  # duration / num_samples / sample_rate digits, unknown before decoding
# End-of-archive (two zero blocks) plus padding to tarfile's 10 KiB record size.
_SHARD_OVERHEAD = tarfile.RECORDSIZE + 2 * _TAR_BLOCK


@dataclass(frozen=True)
class AudioItem:
    """One track to put into the shards.

    Args:
        path: Any file soundfile can read (wav, flac, ogg, mp3, ...).
        tags: Tag names. The vocabulary is chosen later, at training time, so store raw names.
            Duplicates are dropped (first occurrence kept).
        track_id: Stable identifier of the track; defaults to the file stem.
        metadata: Extra JSON-serialisable fields, stored under ``"metadata"`` in ``{key}.json``.
    """

    path: str | Path
    tags: tuple[str, ...] = ()
    track_id: str | None = None
    metadata: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.tags, str):
            raise TypeError(
                f"AudioItem.tags must be a sequence of tag names, got the string {self.tags!r}; "
                f"write tags=({self.tags!r},)"
            )
        tags = tuple(dict.fromkeys(str(t) for t in self.tags))
        object.__setattr__(self, "tags", tags)
        if self.track_id is None:
            object.__setattr__(self, "track_id", Path(self.path).stem)


@dataclass(frozen=True)
class Failure:
    """A track that could not be written.

    Args:
        split: Split the track belonged to.
        track_id: The track's id.
        path: Source file.
        reason: What went wrong (one line).
    """

    split: str
    track_id: str
    path: str
    reason: str


@dataclass(frozen=True)
class Truncated:
    """A track written from less audio than its file's header promises.

    Args:
        split: Split the track belongs to.
        track_id: The track's id.
        path: Source file.
        decoded_s: Seconds that decoded (and were written).
        expected_s: Seconds the header promises.
    """

    split: str
    track_id: str
    path: str
    decoded_s: float
    expected_s: float


@dataclass
class ShardWriteReport:
    """Summary of a :func:`write_shards` call, covering the whole output directory.

    Attributes:
        out_dir: Folder holding the shards.
        manifest_path: ``out_dir / "manifest.json"``.
        n_written: Samples in the shards (all of them, including those in shards reused from an
            earlier, interrupted run).
        n_failed: Tracks that were skipped (equals ``len(failures)``).
        n_skipped_shards: Shards found complete from an earlier run and not rewritten.
        failures: Every skipped track, in input order (also in ``failures.tsv``).
        truncated: Every track written from less audio than its header promises, in input
            order (also in ``truncated.tsv``; with ``strict=True`` they are failures instead).
    """

    out_dir: Path
    manifest_path: Path
    n_written: int
    n_failed: int
    n_skipped_shards: int
    failures: list[Failure] = field(default_factory=list)
    truncated: list[Truncated] = field(default_factory=list)


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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class DamagedSampleError(ValueError):
    """A sample whose members do not match their checksums, or lack one (says which)."""


class _BlockCheck:
    """Checks the blocks of one member against its record as they are read, each block once.

    ``done`` holds the indices of blocks already checked: a set of this read, or a record that
    outlives it (the data module's, in shared memory, so a track is not checked twice).
    """

    __slots__ = ("ext", "digests", "width", "digest", "block_size", "done")

    def __init__(self, ext: str, digests: str, hash_name: str, block_size: int, done: Any) -> None:
        self.ext = ext
        self.digests = digests
        self.digest = BLOCK_HASHES[hash_name]
        self.width = len(self.digest(b""))
        self.block_size = block_size
        self.done = done

    def n_blocks(self) -> int:
        return len(self.digests) // self.width

    def verify(self, data: Any, first: int, blocks: Sequence[int]) -> None:
        """Check ``blocks`` of ``data``, which starts at block ``first``."""
        view, bs, w = memoryview(data), self.block_size, self.width
        for i in blocks:
            at = (i - first) * bs
            if self.digest(view[at : at + bs]) != self.digests[i * w : (i + 1) * w]:
                raise DamagedSampleError(
                    f"checksum mismatch in its .{self.ext} member (bytes {i * bs}-"
                    f"{i * bs + len(view[at : at + bs])})"
                )
            self.done.add(i)

    def read(self, member: TarMember, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` of ``member``, having checked the blocks they touch."""
        bs = self.block_size
        first, last = start // bs, (start + length - 1) // bs
        todo = [i for i in range(first, last + 1) if i not in self.done]
        if not todo:
            return member.raw(start, length)
        base = first * bs
        data = member.raw(base, min((last + 1) * bs, member.size) - base)
        self.verify(data, first, todo)
        return data[start - base : start - base + length]


class TarMember:
    """A regular member of an open local tar file, whose bytes are read only when needed.

    :func:`read_shard` hands out audio members this way, so that a random crop reads only the
    crop's bytes (``pcm16``) or FLAC frames, not the whole track. It is a read-only, seekable
    file object over the member (what soundfile needs), valid while the tar file is open.

    Args:
        file: The open tar file (binary, seekable).
        offset: Position of the member's data in ``file``.
        size: Size of the member's data in bytes.
        name: The member's name, for messages.
    """

    __slots__ = ("file", "offset", "size", "name", "_pos", "_head", "check", "damage")

    def __init__(self, file: Any, offset: int, size: int, name: str = "") -> None:
        self.file = file
        self.offset = offset
        self.size = size
        self.name = name
        self._pos = 0
        self._head: bytes | None = None
        # set by check_sample: every read checks the blocks it touches
        self.check: _BlockCheck | None = None
        # damage met inside soundfile's read callbacks, which cannot raise (see _soundfile)
        self.damage: DamagedSampleError | None = None

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"TarMember({self.name!r}, offset={self.offset}, size={self.size})"

    def pread(self, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from position ``start`` of the member (fewer at its end).

        Raises:
            DamagedSampleError: If a block they touch does not match its checksum.
        """
        start = min(max(start, 0), self.size)
        length = min(length, self.size - start)
        if self.check is not None and length > 0:
            return self.check.read(self, start, length)
        return self.raw(start, length)

    def raw(self, start: int, length: int) -> bytes:
        """``pread`` without checksums."""
        self.file.seek(self.offset + start)
        return self.file.read(length)

    def head(self, length: int = 4096) -> bytes:
        """The first ``length`` bytes (cached: headers are parsed more than once)."""
        if self._head is None or len(self._head) < min(length, self.size):
            self._head = self.pread(0, length)
        return self._head[:length]

    def read_all(self) -> bytes:
        """The whole member."""
        return self.pread(0, self.size)

    # the file-object protocol soundfile's virtual I/O uses
    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = min(max(base + offset, 0), self.size)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.pread(self._pos, self.size - self._pos if n is None or n < 0 else n)
        except DamagedSampleError as e:
            self.damage = e
            return b""
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.size - self._pos)
        if self.check is not None:
            data = self.read(n)
            view[: len(data)] = data
            return len(data)
        self.file.seek(self.offset + self._pos)
        got = self.file.readinto(view[:n]) or 0
        self._pos += got
        return got


AudioBlob = bytes | TarMember


def decode_audio(flac_bytes: AudioBlob, start: int = 0, frames: int = -1) -> np.ndarray:
    """Decode (part of) an audio blob, reading only the frames that are needed.

    FLAC (and any other format soundfile reads) is decoded after a seek; a plain 16-bit PCM WAV
    (the ``pcm16`` shard format) is sliced with ``np.frombuffer``, without a decoder. Both give
    the same values for the same 16-bit samples (``int16 / 32768``).

    Args:
        flac_bytes: Encoded audio, normally the ``{key}.flac`` or ``{key}.wav`` member of a
            sample: its bytes, or a :class:`TarMember` (then only the needed bytes are read).
        start: First frame to decode.
        frames: Number of frames to decode; ``-1`` means up to the end. Fewer are returned when
            the audio ends first.

    Returns:
        float32 waveform of shape ``[frames]``, in [-1, 1] (channels averaged if not mono).

    Raises:
        ValueError: If ``start`` is outside ``[0, num_frames]``.
    """
    wav = _pcm16_layout(flac_bytes)
    if wav is not None:
        offset, total, _, channels = wav
        if not 0 <= start <= total:
            raise ValueError(f"start={start} is outside the audio (0..{total} frames)")
        count = total - start if frames < 0 else min(frames, total - start)
        first = offset + 2 * channels * start
        if isinstance(flac_bytes, TarMember):
            raw, first = flac_bytes.pread(first, 2 * channels * count), 0
        else:
            raw = flac_bytes
        pcm = np.frombuffer(raw, dtype="<i2", count=count * channels, offset=first)
        # one pass int16 -> float32; dividing by a power of two is exact, as in libsndfile
        x = np.multiply(pcm, np.float32(1 / 32768), dtype=np.float32)
        return x if channels == 1 else x.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    with _soundfile(flac_bytes) as f:
        if not 0 <= start <= f.frames:
            raise ValueError(f"start={start} is outside the audio (0..{f.frames} frames)")
        if start:
            f.seek(start)
        x = f.read(frames, dtype="float32", always_2d=True)
    return x[:, 0].copy() if x.shape[1] == 1 else x.mean(axis=1)


def audio_info(flac_bytes: AudioBlob) -> tuple[int, int]:
    """Read the length and sample rate of an audio blob from its header, without decoding.

    Args:
        flac_bytes: Encoded audio, normally the ``{key}.flac`` or ``{key}.wav`` member of a
            sample: its bytes or a :class:`TarMember`.

    Returns:
        ``(num_frames, sample_rate)``.
    """
    wav = _pcm16_layout(flac_bytes)
    if wav is not None:
        return wav[1], wav[2]
    with _soundfile(flac_bytes) as f:
        return f.frames, f.samplerate


@contextlib.contextmanager
def _soundfile(blob: AudioBlob) -> Iterator[sf.SoundFile]:
    """An open ``sf.SoundFile`` over a blob, raising the damage its reads met.

    soundfile reads a :class:`TarMember` from C callbacks, where an exception would only be
    printed; the member keeps it instead, and it is raised here.
    """
    member = blob if isinstance(blob, TarMember) else None
    if member is not None:
        member.seek(0)
        member.damage = None
    try:
        with sf.SoundFile(member if member is not None else io.BytesIO(blob)) as f:
            yield f
    except Exception:
        if member is not None and member.damage is not None:
            raise member.damage from None
        raise
    if member is not None and member.damage is not None:
        raise member.damage


def _pcm16_layout(blob: AudioBlob) -> tuple[int, int, int, int] | None:
    """``(data offset, frames, sample_rate, channels)`` of a plain 16-bit PCM WAV, else ``None``.

    Walks the RIFF chunks in the first 4 KiB, so WAVs with small extra chunks work too; anything
    else (not ``WAVE_FORMAT_PCM`` at 16 bits, the data chunk further in, damaged) returns
    ``None`` and is left to soundfile.
    """
    b = blob.head() if isinstance(blob, TarMember) else blob
    total = len(blob)
    if len(b) < 12 or b[:4] != b"RIFF" or b[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= min(len(b), 4096):
        chunk, size = struct.unpack_from("<4sI", b, pos)
        body = pos + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(b):
            tag, channels, sample_rate, _, _, bits = struct.unpack_from("<HHIIHH", b, body)
            fmt = (tag, channels, sample_rate, bits)
        elif chunk == b"data":
            if fmt is None or fmt[0] != 1 or fmt[3] != 16 or fmt[1] < 1 or fmt[2] < 1:
                return None
            channels = fmt[1]
            return body, max(0, min(size, total - body)) // (2 * channels), fmt[2], channels
        pos = body + size + (size & 1)
    return None


def read_shard(
    path: str | Path,
    select: Callable[[str], bool] | None = None,
    lazy: Sequence[str] = (),
    on_damage: Callable[[str], Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """The samples of a local tar shard, grouped by key as WebDataset groups them.

    Headers are parsed here and data is read by seeking, so unselected members are never read
    and members with a ``lazy`` extension are not read until asked for. ustar, pax (long names,
    large sizes) and GNU long-name headers are understood; links, folders and other special
    members are skipped.

    Args:
        path: A local tar file.
        select: Keep only members whose name passes this test (all regular files by default).
        lazy: Extensions (``"flac"``, ``"wav"``) whose members come as :class:`TarMember`
            instead of bytes. They are valid until the next sample is requested from this
            iterator (the file is closed after the last one).
        on_damage: Called with a one-line description when a tar header is damaged; reading
            then resumes at the next intact header, so only the members of the damaged header
            are lost (their samples come without them). Without it, damage raises.

    Yields:
        ``{"__key__": key, "__url__": path, ext: bytes | TarMember, ...}``.

    Raises:
        ValueError: If the tar is damaged or holds the same member twice (naming the file).
    """
    path = str(path)
    lazy_exts = {e.lower().lstrip(".") for e in lazy}
    with open(path, "rb") as fh:
        sample: dict[str, Any] | None = None
        for name, offset, size in _tar_members(fh, path, on_damage):
            if select is not None and not select(name):
                continue
            match = _KEY_EXT.match(name)  # WebDataset's split: key = up to the basename's 1st dot
            if match is None:
                continue
            key, ext = match.group(1), match.group(2).lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": path}
            if ext in sample:
                raise ValueError(f"{path}: the member {name} occurs twice")
            if ext.rsplit(".", 1)[-1] in lazy_exts:
                sample[ext] = TarMember(fh, offset, size, name)
            else:
                fh.seek(offset)
                sample[ext] = fh.read(size)
        if sample is not None:
            yield sample


_ZERO_BLOCK = bytes(_TAR_BLOCK)
# webdataset.tariterators.base_plus_ext, without importing webdataset (it imports torch, which
# the spawned shard-writing workers do not need)
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def _tar_members(
    fh: Any, path: str, on_damage: Callable[[str], Any] | None = None
) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of each regular member of a tar file, in order.

    A small parser rather than :mod:`tarfile`: it is 3-6x faster per header, which matters
    when a sample's data is a few hundred microseconds of work. With ``on_damage``, a damaged
    header is reported and skipped: the scan resumes at the next block that is an intact header.
    """
    pos = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        fh.seek(pos)
        header = fh.read(_TAR_BLOCK)
        if len(header) < _TAR_BLOCK or header == _ZERO_BLOCK:
            return  # end of archive (a truncated one ends here too, after its last member)
        if not _header_intact(header):
            problem = f"{path} is damaged: bad tar header checksum at byte {pos}"
            if on_damage is None:
                raise ValueError(problem)
            resume = _next_header(fh, pos + _TAR_BLOCK)
            on_damage(
                f"damaged tar header at byte {pos} ("
                + (f"reading resumes at byte {resume})" if resume >= 0 else "nothing after it)")
            )
            if resume < 0:
                return
            pos = resume
            long_name, pax = None, {}
            continue
        size = _tar_number(header[124:136], path)
        kind = header[156:157]
        data = pos + _TAR_BLOCK
        if kind in (b"x", b"L"):  # pax or GNU long-name header of the next member
            fh.seek(data)
            payload = fh.read(size)
            if kind == b"L":
                long_name = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
            else:
                pax.update(_pax_records(payload, path))
            pos = data + _tar_padded(size)
            continue
        if kind == b"g":  # global pax header: nothing we use
            pos = data + _tar_padded(size)
            continue
        name = long_name or pax.get("path")
        if name is None:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            prefix = header[345:500].split(b"\0", 1)[0]
            if header[257:262] == b"ustar" and prefix:
                name = prefix.decode("utf-8", "surrogateescape") + "/" + name
        if "size" in pax:
            size = int(pax["size"])
        long_name, pax = None, {}
        pos = data + _tar_padded(size)
        if kind in (b"0", b"\0", b"7"):  # regular (and contiguous) files
            yield name, data, size


def _header_intact(header: bytes) -> bool:
    try:
        stored = _tar_number(header[148:156], "")
    except ValueError:
        return False
    return stored == sum(header) - sum(header[148:156]) + 256


def _next_header(fh: Any, pos: int) -> int:
    """Offset of the next intact ustar header at or after ``pos`` (block-aligned), or -1."""
    while True:
        fh.seek(pos)
        block = fh.read(_TAR_BLOCK)
        if len(block) < _TAR_BLOCK:
            return -1
        if block[257:262] == b"ustar" and _header_intact(block):
            return pos
        pos += _TAR_BLOCK


def _tar_padded(size: int) -> int:
    return -(-size // _TAR_BLOCK) * _TAR_BLOCK


def _tar_number(field: bytes, path: str) -> int:
    if field[0] & 0x80:  # GNU base-256 for numbers too large for octal
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise ValueError(f"{path} is damaged: invalid number {field!r} in a tar header") from None


def _pax_records(payload: bytes, path: str) -> dict[str, str]:
    """``"%d key=value\\n"`` records of a pax extended header."""
    out = {}
    i = 0
    try:
        while i < len(payload) and payload[i : i + 1] != b"\0":
            space = payload.index(b" ", i)
            length = int(payload[i:space])
            key, _, value = payload[space + 1 : i + length - 1].partition(b"=")
            out[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
            i += length
    except ValueError:
        raise ValueError(f"{path} is damaged: invalid pax header") from None
    return out


def check_sample(
    sample: Mapping[str, Any], required: bool = False, done: Any = None, full: bool = False
) -> bool:
    """Check a sample's members against its ``{key}.checksums.json`` record.

    Members held as bytes are checked here, whole. A :class:`TarMember` (a lazily read audio
    member) is checked as it is read: each read checks the blocks it touches, so a random crop
    checks only its own blocks. Records of version 1 (one CRC-32 per whole member, before
    blocks) are checked here, whole.

    Args:
        sample: A sample as :func:`read_shard` yields it: ``{"__key__": ..., ext: bytes |
            TarMember, ...}``.
        required: The shard was written with checksums, so a sample without a record (its
            header lost to damage) is damaged, not unverified.
        done: Where the audio member's checked blocks are recorded (``in`` and ``add``), when
            it should outlive this read: blocks found in it are not checked again. A version-1
            sample counts as block 0.
        full: Check every block now, not as they are read (``musictag verify``).

    Returns:
        ``True`` when verified (or being verified as read); ``False`` when the sample has no
        record and none is required.

    Raises:
        DamagedSampleError: naming the member and the problem.
    """
    record = sample.get(CHECKSUMS_EXT)
    audio_present = any(e in sample for e in _AUDIO_EXTS)
    if record is None:
        if required:
            missing = [] if audio_present else ["audio"]
            missing += [] if "json" in sample else ["json"]
            raise DamagedSampleError(
                "its checksum record is missing"
                + (f", and so is its {' and '.join(missing)} member" if missing else "")
                + " (a damaged tar header)"
            )
        return False
    try:
        fields = json.loads(_bytes(record))
        if "crc32" in fields:  # version 1
            sums, hash_name, block_size = fields["crc32"], "crc32", 0
        else:
            sums, hash_name = fields["blocks"], str(fields["hash"])
            block_size = int(fields["block_size"])
            if hash_name not in BLOCK_HASHES or block_size < 1:
                raise ValueError(f"hash {hash_name!r}, block size {block_size}")
        if not isinstance(sums, dict) or not sums:
            raise ValueError("no checksum entries")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise DamagedSampleError(f"its checksum record is damaged ({e})") from None
    if not audio_present:
        raise DamagedSampleError("its audio member is missing (a damaged tar header)")
    if block_size == 0:
        if done is not None and 0 in done:
            return True
        for ext, expected in sums.items():
            if ext not in sample:
                raise DamagedSampleError(f"its .{ext} member is missing (a damaged tar header)")
            if member_checksum(_bytes(sample[ext])) != expected:
                raise DamagedSampleError(f"checksum mismatch in its .{ext} member")
        if done is not None:
            done.add(0)
        return True
    for ext, digests in sums.items():
        if ext not in sample:
            raise DamagedSampleError(f"its .{ext} member is missing (a damaged tar header)")
        member = sample[ext]
        keep = done if done is not None and ext in _AUDIO_EXTS else set()
        check = _BlockCheck(ext, str(digests), hash_name, block_size, keep)
        if check.n_blocks() != -(-len(member) // block_size):
            raise DamagedSampleError(
                f"its .{ext} member is {len(member)} bytes, not the length its checksums cover"
            )
        if isinstance(member, TarMember):
            member.check = check
            if full:
                member.read_all()
        else:
            check.verify(member, 0, [i for i in range(check.n_blocks()) if i not in keep])
    return True


def _bytes(member: bytes | TarMember) -> bytes:
    return member.read_all() if isinstance(member, TarMember) else bytes(member)


def decode_json(b: bytes) -> dict:
    """Decode the ``{key}.json`` member of a sample.

    Args:
        b: UTF-8 JSON text.

    Returns:
        The JSON object as a dict.

    Raises:
        ValueError: If the text is not a JSON object.
    """
    obj = json.loads(b.decode("utf-8") if isinstance(b, (bytes, bytearray, memoryview)) else b)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


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


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_shards(
    splits: Mapping[str, Sequence[AudioItem]] | Sequence[AudioItem],
    out_dir: str | Path,
    *,
    sample_rate: int = 16000,
    max_samples_per_shard: int = 1000,
    max_bytes_per_shard: int = 1 << 30,
    workers: int = 1,
    provenance: Mapping | None = None,
    progress: bool = True,
    audio_format: str = "flac",
    strict: bool = False,
) -> ShardWriteReport:
    """Write audio files into resumable, atomically written WebDataset shards.

    Items are assigned to shards from their order and their headers (``soundfile.info``) before
    anything is decoded, so a rerun with the same inputs gets the same plan: shards already
    finished (tar and sidecar present, same planned items) are kept, the others are (re)written,
    and the manifest is rebuilt from the sidecars, byte-identical to an uninterrupted run.

    Args:
        splits: ``{split_name: items}``, or a plain sequence of items (one split, ``"train"``).
            Split names may hold letters, digits, ``_`` and ``-``.
        out_dir: Output folder (created). Reuse it only to resume the same job.
        sample_rate: Target sample rate; every track is resampled to it once, here.
        max_samples_per_shard: Most samples in one shard.
        max_bytes_per_shard: Most bytes in one tar, planned with an upper-bound estimate. A
            single track larger than this gets a shard of its own.
        workers: Processes writing shards in parallel (1 = in this process).
        provenance: Extra JSON-serialisable fields for the manifest's ``"provenance"``
            (e.g. collection name, source version). Keep it free of timestamps if you want
            resumed runs to give byte-identical manifests.
        progress: Show tqdm progress bars.
        audio_format: ``"flac"`` (``{key}.flac``, about half the bytes of PCM) or ``"pcm16"``
            (``{key}.wav``, raw 16-bit PCM behind a 44-byte header, which the data module crops
            without decoding: the fastest input pipeline, see ``docs/benchmarks.md``). Both hold
            the same samples. Recorded in the manifest; a resumed job must use the same one.
        strict: Refuse (as failures) files that decode to less audio than their headers
            promise. By default they are written from what decodes, with a warning, and listed
            in ``truncated.tsv`` and the report's ``truncated``.

    Returns:
        A :class:`ShardWriteReport` for the whole output folder.

    Raises:
        ValueError: On invalid arguments, duplicate track keys within a split, metadata that is
            not JSON-serialisable, or an ``out_dir`` holding shards of a different job.
    """
    if sample_rate <= 0 or max_samples_per_shard < 1 or max_bytes_per_shard < 1 or workers < 1:
        raise ValueError(
            "sample_rate, max_samples_per_shard, max_bytes_per_shard and workers must be positive"
        )
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(
            f"audio_format must be one of {sorted(AUDIO_FORMATS)}, got {audio_format!r}"
        )
    split_items = _normalise_splits(splits)
    provenance_out = _provenance(provenance)
    entries = {split: _entries(split, items) for split, items in split_items.items()}
    out_dir = Path(out_dir)
    (out_dir / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    all_entries = [e for es in entries.values() for e in es]
    key_order = {(e["split"], e["key"]): i for i, e in enumerate(all_entries)}

    pool = None
    if workers > 1:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
    try:
        probes = _probe_all([e["source"] for e in all_entries], pool, workers, progress)
        shards, plan_failures = _plan(
            entries, probes, sample_rate, max_samples_per_shard, max_bytes_per_shard
        )
        for f in plan_failures:
            log.warning("skipping %s (%s): %s", f.path, f.split, f.reason)
        parts, pending = _check_existing(out_dir, shards, sample_rate, audio_format, strict)
        for name in parts:
            log.info("reusing finished shard %s", name)
        parts.update(_write_pending(pending, pool, progress))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    decode_failures = [Failure(**f) for s in shards for f in parts[s["name"]]["failures"]]
    failures = sorted(
        plan_failures + decode_failures,
        key=lambda f: key_order[(f.split, _make_key(f.track_id))],
    )
    truncated = sorted(
        (Truncated(**t) for s in shards for t in parts[s["name"]].get("truncated", [])),
        key=lambda t: key_order[(t.split, _make_key(t.track_id))],
    )
    manifest = _build_manifest(
        split_items, shards, parts, failures, sample_rate, provenance_out, audio_format
    )
    _write_failures(out_dir / FAILURES_NAME, failures)
    _write_truncated(out_dir / TRUNCATED_NAME, truncated)
    manifest_path = out_dir / MANIFEST_NAME
    _atomic_write_bytes(manifest_path, _manifest_bytes(manifest))
    rewritten = {t["name"] for t in pending}
    return ShardWriteReport(
        out_dir=out_dir,
        manifest_path=manifest_path,
        n_written=sum(s["n_samples"] for s in manifest["splits"].values()),
        n_failed=len(failures),
        n_skipped_shards=sum(1 for s in shards if s["name"] not in rewritten),
        failures=failures,
        truncated=truncated,
    )


def _normalise_splits(
    splits: Mapping[str, Sequence[AudioItem]] | Sequence[AudioItem],
) -> dict[str, list[AudioItem]]:
    if not isinstance(splits, Mapping):
        splits = {"train": splits}
    out = {}
    for name, items in splits.items():
        if not isinstance(name, str) or not _SPLIT_NAME.match(name):
            raise ValueError(
                f"invalid split name {name!r}: use letters, digits, '_' and '-' "
                "(it becomes part of the shard file names)"
            )
        out[name] = [i if isinstance(i, AudioItem) else AudioItem(i) for i in items]
    return out


def _make_key(track_id: str) -> str:
    return _UNSAFE_KEY_CHARS.sub("_", track_id)


def _entries(split: str, items: list[AudioItem]) -> list[dict[str, Any]]:
    """Plain, JSON-normalised records of a split's items, with duplicate keys rejected."""
    seen: dict[str, dict[str, Any]] = {}
    out = []
    for item in items:
        track_id = str(item.track_id)
        key = _make_key(track_id)
        if not key:
            raise ValueError(f"split {split!r}: {item.path} has an empty track_id")
        if key in seen:
            other = seen[key]
            raise ValueError(
                f"split {split!r}: track {other['track_id']!r} ({other['source']}) and track "
                f"{track_id!r} ({item.path}) both map to shard key {key!r}; "
                "give them distinct track_id values"
            )
        try:
            metadata = json.loads(json.dumps(dict(item.metadata), allow_nan=False))
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"split {split!r}: metadata of track {track_id!r} ({item.path}) is not "
                f"JSON-serialisable: {e}"
            ) from e
        entry = {
            "split": split,
            "key": key,
            "track_id": track_id,
            "source": str(item.path),
            "tags": list(item.tags),
            "metadata": metadata,
        }
        seen[key] = entry
        out.append(entry)
    return out


def _probe(path: str) -> tuple[int, int] | str:
    """``(frames, sample_rate)`` from the header, or the reason it can't be used."""
    if not os.path.isfile(path):
        # libsndfile reports a missing file as a vague "System error"
        return "file not found"
    try:
        info = sf.info(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a per-file failure
        return f"unreadable header: {describe_read_error(path, e)}"
    if info.samplerate <= 0:
        return f"invalid sample rate {info.samplerate}"
    if info.frames <= 0:
        return "empty audio (0 frames)"
    return int(info.frames), int(info.samplerate)


def _probe_all(
    paths: list[str], pool: concurrent.futures.Executor | None, workers: int, progress: bool
) -> list[tuple[int, int] | str]:
    bar = tqdm(total=len(paths), desc="reading headers", unit="file", disable=not progress)
    with bar:
        if pool is None:
            out = []
            for p in paths:
                out.append(_probe(p))
                bar.update()
            return out
        chunk = max(1, min(256, len(paths) // (8 * workers)))
        out = []
        for r in pool.map(_probe, paths, chunksize=chunk):
            out.append(r)
            bar.update()
        return out


def _estimate_bytes(entry: dict[str, Any], frames: int, in_sr: int, sample_rate: int) -> int:
    n = frames if in_sr == sample_rate else math.ceil(frames * sample_rate / in_sr) + 1
    name_len = len(entry["key"]) + len(".flac")
    pax = 0
    if name_len > 100:  # long names need a pax header (a block + the padded record) per member
        pax = 2 * (_TAR_BLOCK + _TAR_BLOCK * math.ceil((name_len + 32) / _TAR_BLOCK))
    json_len = len(_sample_json(entry, 0, sample_rate)) + _JSON_NUMBERS_SLACK
    return 2 * n + n // 256 + _FLAC_HEADER_OVERHEAD + _MEMBER_OVERHEAD + pax + json_len


def _plan(
    entries: dict[str, list[dict[str, Any]]],
    probes: list[tuple[int, int] | str],
    sample_rate: int,
    max_samples: int,
    max_bytes: int,
) -> tuple[list[dict[str, Any]], list[Failure]]:
    """Assign items to shards, greedily in input order; the plan depends only on the inputs."""
    shards: list[dict[str, Any]] = []
    failures: list[Failure] = []
    probe_iter = iter(probes)
    for split, split_entries in entries.items():
        groups: list[list[dict[str, Any]]] = []
        cur: list[dict[str, Any]] = []
        cur_bytes = _SHARD_OVERHEAD
        for entry in split_entries:
            probe = next(probe_iter)
            if isinstance(probe, str):
                failures.append(Failure(split, entry["track_id"], entry["source"], probe))
                continue
            est = _estimate_bytes(entry, *probe, sample_rate)
            if _SHARD_OVERHEAD + est > max_bytes:
                log.warning(
                    "%s is ~%d bytes, over max_bytes_per_shard=%d: it gets a shard of its own",
                    entry["source"],
                    est,
                    max_bytes,
                )
            if cur and (len(cur) >= max_samples or cur_bytes + est > max_bytes):
                groups.append(cur)
                cur, cur_bytes = [], _SHARD_OVERHEAD
            cur.append(entry)
            cur_bytes += est
        if cur:
            groups.append(cur)
        for index, group in enumerate(groups):
            shards.append(
                {
                    "name": f"{split}-{index:06d}.tar",
                    "split": split,
                    "index": index,
                    "plan": [{k: e[k] for k in _PLAN_FIELDS} for e in group],
                }
            )
    return shards, failures


_PLAN_FIELDS = ("key", "track_id", "source", "tags", "metadata")


def _check_existing(
    out_dir: Path,
    shards: list[dict[str, Any]],
    sample_rate: int,
    audio_format: str = "flac",
    strict: bool = False,
) -> tuple[dict[str, dict], list[dict[str, Any]]]:
    """Split the plan into finished shards (their sidecars) and shards still to write."""
    planned = {s["name"] for s in shards}
    parts_dir = out_dir / PARTS_DIR
    stale = sorted(
        p.name[: -len(".json")]
        for p in parts_dir.glob("*.json")
        if p.name[: -len(".json")] not in planned
    )
    if stale:
        raise ValueError(
            f"{out_dir} holds shards that are not part of this job ({', '.join(stale[:3])}"
            f"{', ...' if len(stale) > 3 else ''}): the inputs or settings changed since it was "
            "written. Use a fresh output directory."
        )
    done: dict[str, dict] = {}
    pending = []
    task_settings = {
        "out_dir": str(out_dir),
        "sample_rate": sample_rate,
        "audio_format": audio_format,
        "strict": strict,
    }
    for shard in shards:
        name = shard["name"]
        sidecar_path = parts_dir / f"{name}.json"
        if not sidecar_path.is_file():
            pending.append({**shard, **task_settings})
            continue
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{sidecar_path} is damaged ({e}); delete it to rewrite shard {name}"
            ) from e
        found_format = sidecar.get("audio_format", "flac")  # sidecars before pcm16 were FLAC
        if (
            sidecar.get("sample_rate") != sample_rate
            or sidecar.get("plan") != shard["plan"]
            or found_format != audio_format
            or sidecar.get("strict", False) != strict
        ):
            planned_keys = [e["key"] for e in shard["plan"]]
            found_keys = [e.get("key") for e in sidecar.get("plan", [])]
            what = (
                f"sample_rate {sidecar.get('sample_rate')} != {sample_rate}"
                if sidecar.get("sample_rate") != sample_rate
                else f"audio_format {found_format!r} != {audio_format!r}"
                if found_format != audio_format
                else f"strict {sidecar.get('strict', False)} != {strict}"
                if sidecar.get("strict", False) != strict
                else (
                    f"planned keys {_preview(planned_keys)} != written {_preview(found_keys)}"
                    if planned_keys != found_keys
                    else "same keys but different tags, metadata, track ids or source paths"
                )
            )
            raise ValueError(
                f"{out_dir / name} was written by a different job ({what}): the inputs or "
                "settings changed since it was written. Use a fresh output directory."
            )
        if (out_dir / name).is_file():
            done[name] = sidecar
        else:
            pending.append({**shard, **task_settings})
    return done, pending


def _preview(keys: list) -> str:
    return f"[{', '.join(map(str, keys[:3]))}{', ...' if len(keys) > 3 else ''}] ({len(keys)})"


def _write_pending(
    pending: list[dict[str, Any]], pool: concurrent.futures.Executor | None, progress: bool
) -> dict[str, dict]:
    parts: dict[str, dict] = {}
    total = sum(len(t["plan"]) for t in pending)
    with tqdm(total=total, desc="writing shards", unit="file", disable=not progress) as bar:
        if pool is None:
            for task in pending:
                parts[task["name"]] = _log_failures(_write_shard(task, on_item=bar.update))
            return parts
        futures = {pool.submit(_write_shard, task): task for task in pending}
        for fut in concurrent.futures.as_completed(futures):
            sidecar = _log_failures(fut.result())
            parts[sidecar["name"]] = sidecar
            bar.update(len(futures[fut]["plan"]))
    return parts


def _log_failures(sidecar: dict) -> dict:
    for f in sidecar["failures"]:
        log.warning("skipping %s (%s): %s", f["path"], f["split"], f["reason"])
    for t in sidecar.get("truncated", []):
        log.warning(
            "%s (%s) is truncated: decoded %.2f s of the %.2f s its header promises; "
            "written from what decodes (strict=True refuses it)",
            t["path"],
            t["split"],
            t["decoded_s"],
            t["expected_s"],
        )
    return sidecar


def _write_shard(task: dict[str, Any], on_item: Callable[[], Any] | None = None) -> dict:
    """Decode, encode and write one planned shard, then its sidecar; both atomically.

    Top-level so that a spawned worker process can run it. Per-file problems become failures;
    anything else (disk full, ...) propagates and leaves no partial shard behind.
    """
    out_dir = Path(task["out_dir"])
    name, sample_rate = task["name"], task["sample_rate"]
    audio_format = task.get("audio_format", "flac")
    strict = bool(task.get("strict", False))
    ext = AUDIO_FORMATS[audio_format]
    samples, failures, truncated = [], [], []
    tmp = out_dir / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        digest = _HashingWriter(fh)
        with tarfile.open(fileobj=digest, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in task["plan"]:
                try:
                    audio, n, truncation = _encode_audio(
                        entry["source"], sample_rate, audio_format, strict
                    )
                except Exception as e:  # noqa: BLE001 - any broken file is a per-file failure
                    failures.append(
                        {
                            "split": task["split"],
                            "track_id": entry["track_id"],
                            "path": entry["source"],
                            "reason": _reason(e, entry["source"]),
                        }
                    )
                else:
                    text = _sample_json(entry, n, sample_rate)
                    record = checksum_record({ext: audio, "json": text})
                    _add_member(tar, f"{entry['key']}.{ext}", audio)
                    _add_member(tar, f"{entry['key']}.json", text)
                    _add_member(tar, f"{entry['key']}.{CHECKSUMS_EXT}", record)
                    if truncation is not None:
                        truncated.append(
                            {
                                "split": task["split"],
                                "track_id": entry["track_id"],
                                "path": entry["source"],
                                "decoded_s": round(truncation.decoded_s, 3),
                                "expected_s": round(truncation.expected_s, 3),
                            }
                        )
                    samples.append(
                        {
                            "key": entry["key"],
                            "track_id": entry["track_id"],
                            "tags": entry["tags"],
                            "duration": n / sample_rate,
                            "num_samples": n,
                        }
                    )
                if on_item is not None:
                    on_item()
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out_dir / name)
    # (samples of shards written before checksums lack CHECKSUMS_EXT and SHARD_HASH: unverified)
    sidecar = {
        "format": _PART_FORMAT,
        "version": MANIFEST_VERSION,
        "name": name,
        "split": task["split"],
        "index": task["index"],
        "sample_rate": sample_rate,
        "audio_format": audio_format,
        "plan": task["plan"],
        "samples": samples,
        "failures": failures,
        "truncated": truncated,
        "strict": strict,
        SHARD_HASH: digest.hexdigest(),
    }
    _atomic_write_bytes(
        out_dir / PARTS_DIR / f"{name}.json",
        json.dumps(sidecar, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8"),
    )
    return sidecar


def _encode_audio(
    path: str, sample_rate: int, audio_format: str = "flac", strict: bool = False
) -> tuple[bytes, int, Any]:
    """Decode any soundfile-readable file to mono, resample, and encode as 16-bit FLAC or WAV.

    Returns:
        ``(encoded_bytes, num_samples, Truncation or None)``.
    """
    # the warning about a truncated file comes from the main process, with the report
    with AudioReader(path, strict=strict, warn=False) as reader:
        x = reader.read()  # [frames, channels]
    x = to_mono_resampled(x, reader.sample_rate, sample_rate)
    # Quantise here rather than in libsndfile: int16 = round(x * 32768) is what every decoder
    # inverts (int16 / 32768), whatever the libsndfile version's own float scaling.
    pcm = np.clip(np.round(np.clip(x, -1.0, 1.0) * 32768.0), -32768, 32767).astype(np.int16)
    if audio_format == "pcm16":
        return _pcm16_wav_bytes(pcm, sample_rate), int(pcm.size), reader.truncation
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue(), int(pcm.size), reader.truncation


class _HashingWriter:
    """A write-only file object that hashes what passes through it (the shard's SHA-256)."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self.fh.write(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _pcm16_wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """A canonical mono 16-bit PCM WAV: the 44-byte RIFF/fmt/data header, then the samples."""
    data = pcm.astype("<i2", copy=False).tobytes()
    if len(data) > 0xFFFFFFFF - 36:
        raise ValueError(
            f"{pcm.size} samples are too many for one WAV member (4 GiB); use audio_format='flac'"
        )
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        1,  # WAVE_FORMAT_PCM
        1,  # channels
        sample_rate,
        2 * sample_rate,  # bytes per second
        2,  # block align
        16,  # bits per sample
        b"data",
        len(data),
    )
    return header + data


def _sample_json(entry: dict[str, Any], num_samples: int, sample_rate: int) -> bytes:
    return json.dumps(
        {
            "key": entry["key"],
            "track_id": entry["track_id"],
            "tags": entry["tags"],
            "duration": num_samples / sample_rate,
            "num_samples": num_samples,
            "sample_rate": sample_rate,
            "source": entry["source"],
            "metadata": entry["metadata"],
        },
        sort_keys=True,
        ensure_ascii=False,
    ).encode("utf-8")


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed owner, mode and mtime: the same inputs give byte-identical tars.
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _reason(e: BaseException, path: str) -> str:
    """One line for ``failures.tsv``: our own messages without the path (it has a column)."""
    if isinstance(e, AudioReadError):
        text = str(e)
        return " ".join(
            text[len(path) + 2 :].split() if text.startswith(f"{path}: ") else text.split()
        )
    return _one_line(e)


def _one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return " ".join(text.split())


def _build_manifest(
    split_items: dict[str, list[AudioItem]],
    shards: list[dict[str, Any]],
    parts: dict[str, dict],
    failures: list[Failure],
    sample_rate: int,
    provenance: dict,
    audio_format: str = "flac",
) -> dict:
    splits: dict[str, dict] = {}
    all_tags: Counter = Counter()
    for split in split_items:
        names, counts, hashes, duration, tags = [], [], [], 0.0, Counter()
        n_truncated = 0
        for shard in shards:
            if shard["split"] != split:
                continue
            part = parts[shard["name"]]
            samples = part["samples"]
            n_truncated += len(part.get("truncated", []))
            if not samples:  # every track failed: keep the tar for resuming, leave it out here
                continue
            names.append(shard["name"])
            counts.append(len(samples))
            hashes.append(part.get(SHARD_HASH))  # None: written before checksums
            for s in samples:
                duration += s["duration"]
                tags.update(s["tags"])
        all_tags.update(tags)
        splits[split] = {
            "shards": names,
            "shard_samples": counts,
            f"shard_{SHARD_HASH}": hashes,
            "n_samples": sum(counts),
            "n_truncated": n_truncated,
            "duration_s": round(duration, 3),
            "tag_counts": dict(tags),
            "n_failed": sum(1 for f in failures if f.split == split),
        }
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "sample_rate": sample_rate,
        "audio_format": audio_format,
        "bits": 16,
        "channels": 1,
        "splits": splits,
        "tag_counts": dict(all_tags),
        "n_failed": len(failures),
        "failures_file": FAILURES_NAME,
        "truncated_file": TRUNCATED_NAME,
        "checksums": {
            "shard": SHARD_HASH,
            "member": BLOCK_HASH,
            "member_block": CHECKSUM_BLOCK,
            "member_ext": CHECKSUMS_EXT,
        },
        "provenance": provenance,
    }


def _provenance(provenance: Mapping | None) -> dict:
    from musictag import __version__

    out = {"musictag_version": __version__, **(provenance or {})}
    try:
        return json.loads(json.dumps(out, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"provenance is not JSON-serialisable: {e}") from e


def _manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _write_failures(path: Path, failures: list[Failure]) -> None:
    def clean(s: str) -> str:  # one row per failure, whatever the path or message holds
        return re.sub(r"[\t\r\n]", " ", str(s))

    lines = ["split\ttrack_id\tpath\treason"]
    lines += [
        "\t".join(clean(v) for v in (f.split, f.track_id, f.path, f.reason)) for f in failures
    ]
    _atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _write_truncated(path: Path, truncated: list[Truncated]) -> None:
    lines = ["split\ttrack_id\tpath\tdecoded_s\texpected_s"]
    lines += [
        "\t".join(
            re.sub(r"[\t\r\n]", " ", str(v))
            for v in (t.split, t.track_id, t.path, t.decoded_s, t.expected_s)
        )
        for t in truncated
    ]
    _atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
