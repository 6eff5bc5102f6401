"""Block checksums of shard samples: the record written with each sample, and its checking.

Every sample carries a ``{key}.checksums.json`` member with a digest of every 64-KiB block of its
audio and JSON members, and the manifest holds the SHA-256 of every shard (``docs/shards.md``).
:func:`checksum_record` writes the record; :func:`check_sample` checks a sample as it is read
(a lazily read audio member block by block, as its bytes are read, so a random crop checks only
its own blocks); :class:`BlockLedger` remembers, for the data module, which blocks of a stream's
tracks are checked, so that each is checked once. ``musictag verify`` is
:mod:`musictag.data.integrity`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from .format import AUDIO_EXTS, CHECKSUMS_EXT

if TYPE_CHECKING:
    from .reader import TarMember

__all__ = [
    "BLOCK_HASHES",
    "COMPLETE",
    "BlockLedger",
    "DamagedSampleError",
    "HashingWriter",
    "check_sample",
    "checksum_record",
    "checksummed_shards",
    "member_checksum",
]

# Member of every sample holding the checksums of its other members, block by block:
# {"version": 2, "hash": "xxh3_64", "block_size": 65536, "blocks": {ext: "hex digests, joined"}}
# (version 1, before blocks: {"crc32": {ext: "8 hex digits"}}, one CRC-32 per whole member)
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


class HashingWriter:
    """A write-only file object that hashes what passes through it (the shard's SHA-256)."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self.fh.write(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class DamagedSampleError(ValueError):
    """A sample whose members do not match their checksums, or lack one (says which)."""


# the block index that marks a member whose every block is checked (in check_sample's `done`)
COMPLETE = -1
_SPAN = threading.local()  # a read buffer per thread (_BlockCheck.read)
_BYTES = (bytes, bytearray, memoryview)
_DIGEST_WIDTH = {name: len(digest(b"")) for name, digest in BLOCK_HASHES.items()}


class _BlockCheck:
    """Checks the blocks of one member against its record as they are read, each block once.

    ``done`` holds the indices of blocks already checked: a set of this read, or a record that
    outlives it (the data module's, in shared memory, so a track is not checked twice). Its
    ``len`` is the number of blocks checked, so that completeness costs no scan of the blocks.
    """

    __slots__ = ("ext", "digests", "width", "digest", "block_size", "done", "n_blocks")

    def __init__(self, ext: str, digests: str, hash_name: str, block_size: int, done: Any) -> None:
        self.ext = ext
        self.digests = digests
        self.digest = BLOCK_HASHES[hash_name]
        self.width = _DIGEST_WIDTH[hash_name]
        self.block_size = block_size
        self.done = done
        self.n_blocks = len(digests) // self.width

    def verify(self, data: Any, offset: int, blocks: Sequence[int]) -> None:
        """Check ``blocks`` of ``data``, the member's bytes from ``offset`` on."""
        view, bs, w = memoryview(data), self.block_size, self.width
        for i in blocks:
            at = i * bs - offset
            if self.digest(view[at : at + bs]) != self.digests[i * w : (i + 1) * w]:
                raise DamagedSampleError(
                    f"checksum mismatch in its .{self.ext} member (bytes {i * bs}-"
                    f"{i * bs + len(view[at : at + bs])})"
                )
            self.done.add(i)
        # `done` holds only indices of this member's blocks (and COMPLETE, not yet here), so
        # its size says whether all are checked; a shared record counts its bits
        if len(self.done) >= self.n_blocks:
            self.done.add(COMPLETE)

    def read(self, member: TarMember, start: int, length: int) -> bytes | memoryview:
        """``length`` bytes from ``start`` of ``member``, having checked the blocks they touch.

        Bytes read to check blocks come as a view of this thread's read buffer, valid until
        the thread's next checked read (:meth:`TarMember.pview`).
        """
        bs = self.block_size
        first, last = start // bs, (start + length - 1) // bs
        done = self.done
        todo = [i for i in range(first, last + 1) if i not in done]
        if not todo:
            return member.raw(start, length)
        # the bytes asked for, and the rest of the blocks to check at either end (an end block
        # checked before is not read again): reading from the page cache costs more than hashing
        lo = first * bs if todo[0] == first else start
        hi = min((last + 1) * bs, member.size) if todo[-1] == last else start + length
        # read into a buffer kept for the next read: a fresh one per crop costs more page
        # faults than the hashing
        buffer = getattr(_SPAN, "buffer", b"")
        if len(buffer) < hi - lo:
            buffer = _SPAN.buffer = bytearray(max(hi - lo, 4 * bs))
        member.file.seek(member.offset + lo)
        view = memoryview(buffer)[: hi - lo]
        view = view[: member.file.readinto(view) or 0]
        self.verify(view, lo, todo)
        return view[start - lo : start - lo + length]


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
        done: Where the audio member's checked blocks are recorded (``in``, ``add`` and
            ``len``, which counts the blocks recorded, not :data:`COMPLETE`), when
            it should outlive this read: blocks found in it are not checked again. Once every
            block is, :data:`COMPLETE` is added, and the sample is not checked again (a
            version-1 sample, checked whole, gets it at once).
        full: Check every block now, not as they are read (``musictag verify``).

    Returns:
        ``True`` when verified (or being verified as read); ``False`` when the sample has no
        record and none is required.

    Raises:
        DamagedSampleError: naming the member and the problem.
    """
    record = sample.get(CHECKSUMS_EXT)
    audio_present = not sample.keys().isdisjoint(AUDIO_EXTS)
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
    if done is not None and COMPLETE in done:  # every block checked by this reader already
        return True
    hash_name, block_size, sums = _parse_record(_bytes(record))
    if not audio_present:
        raise DamagedSampleError("its audio member is missing (a damaged tar header)")
    if block_size == 0:
        for ext, expected in sums:
            if ext not in sample:
                raise DamagedSampleError(f"its .{ext} member is missing (a damaged tar header)")
            if member_checksum(_bytes(sample[ext])) != expected:
                raise DamagedSampleError(f"checksum mismatch in its .{ext} member")
        if done is not None:
            done.add(COMPLETE)
        return True
    digest, width = BLOCK_HASHES[hash_name], _DIGEST_WIDTH[hash_name]
    for ext, digests in sums:
        if ext not in sample:
            raise DamagedSampleError(f"its .{ext} member is missing (a damaged tar header)")
        member = sample[ext]
        if (
            isinstance(member, _BYTES)
            and len(digests) == width
            and 0 < len(member) <= block_size
            and digest(member) == digests
        ):
            continue  # a member of one intact block (the JSON): the common case, made short
        keep = done if done is not None and ext in AUDIO_EXTS else set()
        check = _BlockCheck(ext, digests, hash_name, block_size, keep)
        if check.n_blocks != -(-len(member) // block_size):
            raise DamagedSampleError(
                f"its .{ext} member is {len(member)} bytes, not the length its checksums cover"
            )
        if not isinstance(member, _BYTES):  # a TarMember: checked as it is read
            member.check = check
            if full:
                member.read_all()
        else:
            check.verify(member, 0, range(check.n_blocks))
    return True


@functools.lru_cache(maxsize=1 << 14)
def _parse_record(record: bytes) -> tuple[str, int, tuple[tuple[str, str], ...]]:
    """``(hash name, block size, ((ext, digests), ...))`` of a checksum record (block size 0:
    version 1, one CRC-32 per member).

    Cached: a stream reads a track's record every epoch until all its blocks are checked, and
    parsing it cost as much as checking a block (16 Ki records of 30-s tracks: ~20 MB).
    """
    try:
        fields = json.loads(record)
        if "crc32" in fields:  # version 1
            sums, hash_name, block_size = fields["crc32"], "crc32", 0
        else:
            sums, hash_name = fields["blocks"], str(fields["hash"])
            block_size = int(fields["block_size"])
            if hash_name not in BLOCK_HASHES or block_size < 1:
                raise ValueError(f"hash {hash_name!r}, block size {block_size}")
        if not isinstance(sums, dict) or not sums:
            raise ValueError("no checksum entries")
        return hash_name, block_size, tuple((str(k), str(v)) for k, v in sums.items())
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise DamagedSampleError(f"its checksum record is damaged ({e})") from None


def _bytes(member: bytes | TarMember) -> bytes:
    return bytes(member) if isinstance(member, _BYTES) else member.read_all()


POSITION = "__position__"  # of a sample in its local shard (set by the data module's reader)
_LEDGER_WORDS = 4  # 255 blocks of 64 KiB (8.5 min of 16-kHz pcm16, longer in FLAC) ...
_LEDGER_BITS = 64 * _LEDGER_WORDS - 1  # ... and a bit for COMPLETE


class _SharedBlocks:
    """The checked blocks of one track: bits of a shared-memory array (``in``, ``add``, ``len``).

    Two workers setting bits of one word at once may lose one: that block is checked again.
    """

    __slots__ = ("words", "base")

    def __init__(self, words: Any, base: int) -> None:
        self.words = words
        self.base = base

    def __contains__(self, block: int) -> bool:
        block = _LEDGER_BITS if block == COMPLETE else block
        return block <= _LEDGER_BITS and bool(
            self.words[self.base + (block >> 6)] >> (block & 63) & 1
        )

    def add(self, block: int) -> None:
        block = _LEDGER_BITS if block == COMPLETE else block
        if block <= _LEDGER_BITS:
            self.words[self.base + (block >> 6)] |= 1 << (block & 63)

    def __len__(self) -> int:
        """Blocks recorded as checked (COMPLETE not counted)."""
        words = self.words[self.base : self.base + _LEDGER_WORDS]
        return sum(w.bit_count() for w in words) - (words[-1] >> 63)


class BlockLedger:
    """The checked blocks of a stream's tracks, so that a stream checks each block once.

    Checking what every random crop reads, every epoch, would cost about a tenth of a pcm16
    batch (see ``docs/reliability.md``). Tracks of manifest shards have a slot (shard offset +
    position, :data:`POSITION`) in shared memory, so that every DataLoader worker of the stream
    knows what the others checked (shards move between workers from epoch to epoch): the
    CRC-32 of the key (| 1), so that a position shifted by a lost tar header never passes for
    checked, and a bit per checksum block (``_LEDGER_WORDS`` x 64 of them; blocks beyond are
    checked on every read). Tracks of other shards are recorded in this process only.

    Args:
        urls: The stream's shards.
        shard_samples: ``{real path: samples}`` of the manifest's shards.
    """

    def __init__(self, urls: Sequence[str], shard_samples: Mapping[str, int]) -> None:
        self.verified: dict[tuple[str, str], set[int]] = {}
        self.slots: dict[str, int] = {}
        offset = 0
        for url in urls:
            count = shard_samples.get(os.path.realpath(url))
            if count is not None and url not in self.slots:
                self.slots[url] = offset
                offset += int(count)
        self.checked = multiprocessing.RawArray("I", max(offset, 1))
        self.blocks = multiprocessing.RawArray("Q", max(offset, 1) * _LEDGER_WORDS)
        self.end = offset

    def check(self, sample: dict[str, Any], required: bool) -> None:
        """:func:`check_sample`, skipping the blocks this stream has checked."""
        url, key = str(sample.get("__url__")), str(sample["__key__"])
        slot = self.slots.get(url)
        position = sample.get(POSITION)
        if slot is not None and position is not None and slot + position < self.end:
            i = slot + position
            tag = zlib.crc32(key.encode("utf-8", "surrogateescape")) | 1
            if self.checked[i] != tag:
                self.blocks[i * _LEDGER_WORDS : (i + 1) * _LEDGER_WORDS] = [0] * _LEDGER_WORDS
                self.checked[i] = tag
            elif self.blocks[(i + 1) * _LEDGER_WORDS - 1] >> 63:  # COMPLETE: nothing to check
                return
            done: Any = _SharedBlocks(self.blocks, i * _LEDGER_WORDS)
        else:
            done = self.verified.setdefault((url, key), set())
        check_sample(sample, required=required, done=done)
