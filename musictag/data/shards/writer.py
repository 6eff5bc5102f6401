"""Write audio files into resumable, atomically written WebDataset tar shards.

One sample per track: the audio, ``{key}.flac`` (mono, 16-bit, resampled once to the target rate)
or, with ``audio_format="pcm16"``, ``{key}.wav`` (the same samples as raw 16-bit PCM behind a
44-byte WAV header: twice the bytes, ten times faster to crop), ``{key}.json`` (track id, tag
names, duration, source, metadata) and ``{key}.checksums.json``. Writing is planned before any
audio is decoded, so a job can run in parallel, be interrupted and be resumed, and gives the same
shards and a byte-identical ``manifest.json`` whichever way it ran. A broken file is reported in
``failures.tsv`` and skipped; it never stops the job.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import math
import multiprocessing
import os
import re
import struct
import tarfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ...audio import AudioReader, AudioReadError, describe_read_error, to_mono_resampled
from .checksums import BLOCK_HASH, CHECKSUM_BLOCK, SHARD_HASH, HashingWriter, checksum_record
from .format import (
    AUDIO_FORMATS,
    CHECKSUMS_EXT,
    FAILURES_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PARTS_DIR,
    TRUNCATED_NAME,
)

log = logging.getLogger(__name__)

__all__ = ["AudioItem", "Failure", "ShardWriteReport", "Truncated", "write_shards"]

_PART_FORMAT = "musictag-shard-part"
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
    chunk = max(1, min(256, len(paths) // (8 * workers)))
    probes = map(_probe, paths) if pool is None else pool.map(_probe, paths, chunksize=chunk)
    return list(
        tqdm(probes, total=len(paths), desc="reading headers", unit="file", disable=not progress)
    )


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
        # sidecars before pcm16 were FLAC, before strict were not strict
        found = {"sample_rate": None, "audio_format": "flac", "strict": False}
        changed = [
            f"{k} {sidecar.get(k, found[k])!r} != {v!r}"
            for k, v in task_settings.items()
            if k != "out_dir" and sidecar.get(k, found[k]) != v
        ]
        if changed or sidecar.get("plan") != shard["plan"]:
            planned_keys = [e["key"] for e in shard["plan"]]
            found_keys = [e.get("key") for e in sidecar.get("plan", [])]
            what = (
                changed[0]
                if changed
                else f"planned keys {_preview(planned_keys)} != written {_preview(found_keys)}"
                if planned_keys != found_keys
                else "same keys but different tags, metadata, track ids or source paths"
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
        digest = HashingWriter(fh)
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
