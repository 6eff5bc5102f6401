"""Reading shards: the samples of a tar shard, checked against their checksums and decoded.

One reader for every use: the data module, inference and embedding, analysis, calibration and
evaluation, and ``musictag verify``. Local shards are read by seeking: headers are parsed here
(5 µs a member, against 46 µs with :mod:`tarfile`, see ``docs/benchmarks.md``), and audio
members can be read lazily, so a random crop reads only its own bytes and checks only the
checksum blocks it reads. Streams (``pipe:``, ``http://``) go through webdataset.

Only safe decoders are used: FLAC via soundfile, 16-bit WAV via ``np.frombuffer`` (other WAV
layouts via soundfile) and JSON; nothing is ever pickled.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ...audio import AudioReadError
from .checksums import DamagedSampleError, check_sample, checksummed_shards
from .format import AUDIO_EXTS, CHECKSUMS_EXT, load_manifest, shard_urls

log = logging.getLogger(__name__)

__all__ = [
    "DECODE_ERRORS",
    "TarMember",
    "audio_info",
    "audio_member",
    "decode_audio",
    "decode_json",
    "is_url",
    "iter_shard_tracks",
    "read_shard",
    "sample_member",
]

# what reading a damaged sample can raise: our own ValueErrors (bad JSON, a damaged header),
# libsndfile's errors, a short read
DECODE_ERRORS = (ValueError, KeyError, TypeError, RuntimeError, OSError, sf.LibsndfileError)
_TAR_BLOCK = 512
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # pipe:, http://, s3://, file: (not C:\\)


def is_url(path: str) -> bool:
    """Whether a shard is a stream (``pipe:``, ``http://``, ...) rather than a local file."""
    return bool(_URL.match(path))


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
        self.check: Any = None  # a checksums._BlockCheck
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
        data = self.pview(start, length)
        return data if isinstance(data, bytes) else bytes(data)

    def pview(self, start: int, length: int) -> bytes | memoryview:
        """:meth:`pread` without a copy: checked bytes may be a view of a per-thread buffer.

        The view is valid until this thread's next read of a checked member, so use it at
        once (a pcm16 crop is converted to float32 straight from it).

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
        data = self._read_view(self.size - self._pos if n is None or n < 0 else n)
        return data if isinstance(data, bytes) else bytes(data)

    def _read_view(self, n: int) -> bytes | memoryview:
        try:
            data = self.pview(self._pos, n)
        except DamagedSampleError as e:
            self.damage = e
            return b""
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.size - self._pos)
        if self.check is not None:
            data = self._read_view(n)
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
        if isinstance(flac_bytes, TarMember):  # converted at once: a view needs no copy
            raw, first = flac_bytes.pview(first, 2 * channels * count), 0
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
    """The samples of a shard, grouped by key as WebDataset groups them.

    A local tar is read by seeking: headers are parsed here, unselected members are never read
    and members with a ``lazy`` extension are not read until asked for. ustar, pax (long names,
    large sizes) and GNU long-name headers are understood; links, folders and other special
    members are skipped. A stream (``pipe:``, ``http://``, ...) is read by webdataset.

    Args:
        path: A local tar file, or a webdataset URL.
        select: Keep only members whose name passes this test (all regular files by default).
        lazy: Extensions (``"flac"``, ``"wav"``) whose members of a local tar come as
            :class:`TarMember` instead of bytes. They are valid until the next sample is
            requested from this iterator (the file is closed after the last one).
        on_damage: Called with a one-line description of damage to the shard itself, which
            then never raises: after a damaged tar header reading resumes at the next intact
            one, so only the members of the damaged header are lost (their samples come
            without them); a shard gone or unreadable from some point on ends the samples.

    Yields:
        ``{"__key__": key, "__url__": path, ext: bytes | TarMember, ...}``.

    Raises:
        ValueError: Without ``on_damage``, if the tar is damaged or holds the same member twice
            (naming the file).
    """
    path = str(path)
    if is_url(path):
        import webdataset as wds  # imports torch: only here, not in shard-writing workers

        yield from wds.tarfile_samples([{"url": path}], select_files=select)
        return
    samples = _local_samples(path, select, {e.lower().lstrip(".") for e in lazy}, on_damage)
    while True:
        try:
            sample = next(samples)
        except StopIteration:
            return
        except DECODE_ERRORS as e:
            if on_damage is None:
                raise
            on_damage("unreadable from here on: " + " ".join(f"{type(e).__name__}: {e}".split()))
            return
        yield sample


def _local_samples(
    path: str,
    select: Callable[[str], bool] | None,
    lazy_exts: set[str],
    on_damage: Callable[[str], Any] | None,
) -> Iterator[dict[str, Any]]:
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


def sample_member(sample: Mapping[str, Any], *exts: str) -> bytes | TarMember:
    """The first member of a sample with one of these extensions.

    Raises:
        ValueError: If there is none (naming the sample and its shard).
    """
    for ext in exts:
        if ext in sample:
            return sample[ext]
    for ext in exts:
        for k, v in sample.items():  # keys holding dots give suffixes like "part2.flac"
            if k.endswith("." + ext) and k != CHECKSUMS_EXT:
                return v
    raise ValueError(
        f"sample {sample.get('__key__')!r} in {sample.get('__url__')!r} has no "
        f"{' or '.join('.' + e for e in exts)} member"
    )


def audio_member(sample: Mapping[str, Any]) -> bytes | TarMember:
    """The audio member of a sample (``.flac`` or ``.wav``, by the shards' audio format)."""
    return sample_member(sample, *AUDIO_EXTS)


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


def iter_shard_tracks(
    shard_dir: str | Path,
    splits: Sequence[str] | None = None,
    *,
    with_errors: bool = False,
    skipped: list[AudioReadError] | None = None,
) -> Iterator[tuple[dict[str, Any], Any, int]]:
    """Every track of a shard set, in shard order, checked and decoded with the safe decoders.

    A damaged or undecodable track (checksum mismatch, damaged tar header, decoder error) or a
    missing shard never stops the iteration: it is logged once, naming the shard and the key,
    and skipped (or yielded as an error with ``with_errors``).

    Args:
        shard_dir: Folder with ``manifest.json``.
        splits: Splits to read; default: all, in manifest order.
        with_errors: Yield ``(info, AudioReadError, 0)`` for a damaged track instead of
            skipping it.
        skipped: When given, the error of every skipped or failed track is appended here.

    Yields:
        ``(info, waveform [samples] float32, sample_rate)``; ``info`` holds ``id`` (track id),
        ``path`` (source file), ``tags``, ``split``, ``key``.
    """
    manifest = load_manifest(shard_dir)
    checksummed = checksummed_shards(manifest)
    names = list(splits) if splits else list(manifest["splits"])

    def damaged(url: str, key: str, split: str, reason: str) -> Iterator:
        error = AudioReadError(
            f"{url}: track {key}: {reason}" if key != "-" else f"{url}: {reason}"
        )
        log.warning("skipping %s", error)
        if skipped is not None:
            skipped.append(error)
        if with_errors:
            info = {"id": key, "path": None, "tags": [], "split": split, "key": key}
            yield info, error, 0

    for split in names:
        for url in shard_urls(manifest, split):
            damage: list[str] = []
            for sample in read_shard(url, on_damage=damage.append):
                key = str(sample["__key__"])
                try:
                    check_sample(sample, required=os.path.realpath(url) in checksummed)
                    meta = decode_json(sample["json"])
                    wave = decode_audio(audio_member(sample))
                except DECODE_ERRORS as e:
                    reason = str(e) if str(e) else type(e).__name__
                    yield from damaged(url, key, split, " ".join(reason.split()))
                    continue
                info = {
                    "id": str(meta.get("track_id", key)),
                    "path": meta.get("source"),
                    "tags": list(meta.get("tags", [])),
                    "split": split,
                    "key": key,
                }
                yield info, wave, int(meta.get("sample_rate") or manifest["sample_rate"])
            for d in damage:
                yield from damaged(url, "-", split, d)
