"""Stream crops from WebDataset shards into batches: the TagDataModule.

Training takes one random crop per track; validation and test take ``eval_crops`` evenly spaced
crops per track (the published protocol), which the tagger averages. Shards are split across
DDP ranks and DataLoader workers by webdataset; local shards are read by seeking, so a crop reads
only its own bytes (see ``docs/benchmarks.md``); nothing but FLAC, WAV and JSON members is
decoded.

A damaged or undecodable track never stops a pass: it is skipped, logged once with its shard and
key, and counted in :meth:`TagDataModule.read_report` (see ``docs/reliability.md``). Each block
of a track is checked against its checksum the first time a loader reads it.
"""

from __future__ import annotations

import glob
import itertools
import logging
import multiprocessing
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from musictag.data.shards import (
    AUDIO_EXTS,
    DECODE_ERRORS,
    audio_info,
    audio_member,
    checksummed_shards,
    decode_audio,
    decode_json,
    is_url,
    load_manifest,
    read_shard,
    sample_member,
    shard_urls,
)
from musictag.data.shards.checksums import POSITION, BlockLedger
from musictag.data.skipped import (
    SKIPPED,
    ReadReport,
    SkippedTrack,
    carry_notices,
    count_skips,
    note_unverified,
    skip_reason,
)
from musictag.data.vocab import TagVocab
from musictag.lightning_compat import epochs_processed
from musictag.tta import eval_crop_starts, extract_crops

__all__ = ["ReadReport", "SkippedTrack", "TagDataModule"]

log = logging.getLogger(__name__)

_VAL_SPLITS = ("val", "valid", "validation")
_SEED_MASK = (1 << 63) - 1
_MEMBERS = tuple(f".{ext}" for ext in (*AUDIO_EXTS, "json"))  # .checksums.json ends so too


def _expand_patterns(patterns: str | Sequence[str], base: Path | None) -> list[str]:
    """Expand shard patterns: brace ranges, globs (sorted), relative paths, URLs.

    Local relative paths are taken relative to ``base`` (the data module's ``root``) when given.
    URLs (``pipe:``, ``http://``, ...) are brace-expanded and passed through unchanged.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    urls: list[str] = []
    missing: list[str] = []
    for pattern in patterns:
        # expand_urls: '::' separated lists, ${WDS_*} variables and {a..b} ranges, as webdataset
        for item in wds.shardlists.expand_urls(str(pattern)):
            if is_url(item):
                urls.append(item)
                continue
            path = Path(item).expanduser()
            if base is not None and not path.is_absolute():
                path = base / path
            if glob.has_magic(str(path)):
                matches = sorted(glob.glob(str(path)))
                if not matches:
                    raise FileNotFoundError(f"no shard matches {str(path)!r} (from {pattern!r})")
                urls.extend(matches)
            elif path.is_file():
                urls.append(str(path))
            else:
                missing.append(str(path))
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise FileNotFoundError(
            f"{len(missing)} shard(s) of {list(patterns)!r} do not exist: {shown}"
        )
    if not urls:
        raise ValueError(f"the shard pattern(s) {patterns!r} expand to no shard")
    return urls


def _wanted_member(name: str) -> bool:
    # Only these members are read from the tar; anything else (.pyd, .pickle, ...) is skipped
    # unread, so nothing is ever unpickled.
    return name.endswith(_MEMBERS)


def _read_samples(sources: Iterator[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Samples of each shard: local tars by seeking (audio read lazily), streams by webdataset.

    Damage to a shard itself (a damaged tar header, a shard gone) comes out as a sample holding
    only ``SKIPPED``, so that it is reported like a damaged track and the pass goes on.
    """
    for source in sources:
        url = source["url"]
        damage: list[str] = []
        # A random crop then reads only its own bytes (pcm16) or FLAC frames.
        samples = read_shard(url, select=_wanted_member, lazy=AUDIO_EXTS, on_damage=damage.append)
        for position, sample in enumerate(samples):
            sample[POSITION] = position
            while damage:
                yield {SKIPPED: SkippedTrack(url, "-", damage.pop(0)), "__url__": url}
            yield sample
        for d in damage:
            yield {SKIPPED: SkippedTrack(url, "-", d), "__url__": url}


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    # np.stack, not torch.stack: a plain single-threaded copy. torch.stack runs on the intra-op
    # thread pool, which in the main process (num_workers=0) costs 10-100x more on a busy machine.
    batch = {
        "audio": torch.from_numpy(np.stack([s["audio"] for s in samples])),
        "target": torch.from_numpy(np.stack([s["target"] for s in samples])),
        "key": [s["key"] for s in samples],
    }
    skipped = [t for s in samples for t in s.get(SKIPPED, ())]
    if skipped:  # taken out again by _StreamLoader, in the main process
        batch[SKIPPED] = skipped
    return batch


class _TrackStream(IterableDataset):
    """One pass (or, in repeat mode, an endless stream) over the tracks of some shards.

    Yields ``{"audio": [crop] or [K, crop], "target": [n_tags], "key": str}``.

    The epoch is set by the loader (``set_epoch``) in the main process and shared with the
    copies living in DataLoader workers (persistent ones included) through shared memory, so a
    worker always uses the epoch of the latest ``set_epoch``, however often the loader was
    iterated. Passes without a ``set_epoch`` in between count on top of it, so every pass gets
    fresh shuffling.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        vocab: TagVocab,
        sample_rate: int,
        crop_samples: int,
        eval_crops: int | None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        drop_untagged: bool = False,
        checksummed: set[str] | frozenset[str] = frozenset(),
        verify: bool = True,
        shard_samples: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.urls = list(urls)
        self.checksummed = {u for u in self.urls if os.path.realpath(u) in checksummed}
        self.ledger = BlockLedger(self.urls, shard_samples or {}) if verify else None
        self.vocab = vocab
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples
        self.eval_crops = eval_crops  # None: training (one random crop, shuffled)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed & _SEED_MASK
        self.drop_untagged = drop_untagged
        self.repeat = False
        self.epoch = 0
        self._passes = 0
        # [epoch, number of set_epoch calls], in shared memory: inherited by DataLoader workers
        self._shared_epoch = multiprocessing.RawArray("q", 2)
        self._sets_seen = 0
        self._dist: tuple[int, int] | None = None

    @property
    def training(self) -> bool:
        return self.eval_crops is None

    def set_epoch(self, epoch: int, repeat: bool = False) -> None:
        """Set the epoch (and record the DDP rank here, in the main process)."""
        self.epoch = epoch
        self.repeat = repeat
        self._shared_epoch[0] = epoch
        self._shared_epoch[1] += 1
        self._dist = tuple(wds.utils.pytorch_worker_info()[:2])

    def _shard_source(self, epoch: int, rank: int, world: int) -> Iterator[dict[str, str]]:
        """This rank's shards: shuffled with a seed shared by all ranks, then split by rank.

        The split is made once per epoch, so in repeat mode (several DDP ranks) a rank cycles
        over its own shards only (reshuffled each round) and no training track is read by two
        ranks in one epoch. With fewer shards than ranks, shards are shared (and said to be).
        """
        if not self.training:
            yield from ({"url": u} for u in self.urls[rank::world])
            return
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.urls))
        if len(order) >= world:
            mine = [self.urls[i] for i in order[rank::world]]
        else:
            if rank == 0:
                log.warning(
                    "%d training shards for %d ranks: ranks share shards, so some tracks are "
                    "read by two ranks in one epoch; write more, smaller shards",
                    len(order),
                    world,
                )
            mine = [self.urls[order[rank % len(order)]]]
        yield from ({"url": u} for u in mine)
        for r in itertools.count(1) if self.repeat else ():
            again = np.random.default_rng([self.seed, epoch, rank, r]).permutation(len(mine))
            yield from ({"url": mine[i]} for i in again)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        sets = int(self._shared_epoch[1])
        if sets != self._sets_seen:  # a set_epoch since this copy's last pass
            self._sets_seen, self._passes = sets, 0
        epoch = int(self._shared_epoch[0]) + self._passes
        self._passes += 1
        rank, world = self._dist or tuple(wds.utils.pytorch_worker_info()[:2])
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        crop_seq, buffer_seq = np.random.SeedSequence([self.seed, epoch, rank, worker_id]).spawn(2)
        stages: list[Any] = [
            partial(self._shard_source, epoch, rank, world),
            wds.split_by_worker,
            _read_samples,
            partial(self._samples, rng=np.random.default_rng(crop_seq)),
            carry_notices,
        ]
        if self.training and self.shuffle_buffer > 1:
            # Shuffle crops, not whole tracks: crops are small and of fixed size.
            rng = random.Random(int(buffer_seq.generate_state(1, np.uint64)[0]))
            stages.append(wds.shuffle(self.shuffle_buffer, self.shuffle_buffer, rng=rng))
        return iter(wds.DataPipeline(*stages))

    def _samples(
        self, raw: Iterator[dict[str, Any]], rng: np.random.Generator
    ) -> Iterator[dict[str, Any]]:
        """Crops of each usable sample; a :class:`SkippedTrack` for a damaged one."""
        for sample in raw:
            if SKIPPED in sample:
                yield sample[SKIPPED]
                continue
            try:
                item = self._item(sample, rng)
            except _WrongSampleRate:
                raise
            except DECODE_ERRORS as e:
                url, key = str(sample.get("__url__")), str(sample.get("__key__"))
                yield SkippedTrack(url, key, skip_reason(e))
                continue
            if item is not None:
                yield item

    def _item(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
        if self.ledger is not None:
            self.ledger.check(sample, required=sample.get("__url__") in self.checksummed)
        meta = decode_json(sample_member(sample, "json"))
        target = self.vocab.encode(meta.get("tags", []))
        if self.drop_untagged and not target.any():
            return None
        audio_bytes = audio_member(sample)
        key = str(meta.get("key", sample["__key__"]))
        n, sr = audio_info(audio_bytes)
        if sr != self.sample_rate:
            raise _WrongSampleRate(
                f"track {key!r} in {sample.get('__url__')} is at {sr} Hz but the data module "
                f"expects {self.sample_rate} Hz; rewrite the shards or fix sample_rate"
            )
        crop = self.crop_samples
        if self.training:
            start = int(rng.integers(0, n - crop + 1)) if n > crop else 0
            audio = extract_crops(decode_audio(audio_bytes, start, crop), crop, 1)[0]  # padded
        else:
            end = eval_crop_starts(n, crop, self.eval_crops)[-1] + crop  # decode no further
            beginning = decode_audio(audio_bytes, 0, min(n, end))
            audio = extract_crops(beginning, crop, self.eval_crops, num_samples=n)
        # numpy until the batch is collated (see _collate)
        return {
            "audio": np.ascontiguousarray(audio, dtype=np.float32),
            "target": target,
            "key": key,
        }


class _WrongSampleRate(ValueError):
    """The shards are at another rate than the data module: a set-up error, not damage."""


class _StreamLoader(DataLoader):
    """DataLoader that tells its stream the epoch and DDP rank before each pass.

    The rank is read here, in the main process, because spawned workers cannot see it.

    Training (``even_ranks=True``): with one process an epoch is one pass over the tracks. With
    several DDP ranks every rank must run the same number of steps (or the gradient all-reduce
    hangs), so each rank streams its shards endlessly and an epoch is cut at
    ``n_samples // (world_size * batch_size)`` batches.
    """

    def __init__(
        self,
        dataset: _TrackStream,
        *,
        even_ranks: bool = False,
        n_samples: int | None = None,
        epoch_fn: Callable[[], int | None] | None = None,
        stage: str = "train",
        reports: dict[str, ReadReport] | None = None,
        logged: set[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.even_ranks = even_ranks
        self.n_samples = n_samples
        self.epoch_fn = epoch_fn
        self.stage = stage
        self.reports = reports if reports is not None else {}
        self.logged = logged if logged is not None else set()
        self._passes = 0
        self._warned = False

    def _batches_per_rank(self) -> int | None:
        world = wds.utils.pytorch_worker_info()[1]
        if not self.even_ranks or world == 1:
            return None
        if self.n_samples is None:
            if not self._warned:
                log.warning(
                    "training on %d ranks from shards that no manifest lists: the number of "
                    "samples is unknown, so ranks may run different numbers of steps and hang. "
                    "Point `root` at the manifest folder to get equal epochs.",
                    world,
                )
                self._warned = True
            return None
        n = self.n_samples // (world * self.batch_size)
        if n < 1:
            raise ValueError(
                f"{self.n_samples} training samples are too few for {world} ranks x "
                f"batch_size {self.batch_size}"
            )
        return n

    def __len__(self) -> int:
        n = self._batches_per_rank()
        return n if n is not None else super().__len__()

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        if epoch is None:
            epoch = self._passes
        self._passes += 1
        n_batches = self._batches_per_rank()
        self.dataset.set_epoch(epoch, repeat=n_batches is not None)
        if self.persistent_workers and self._iterator is not None and self.generator is None:
            # A new iterator draws its base seed from the global torch RNG; a persistent one is
            # reused without. Draw it anyway, so that every epoch draws once: otherwise a run
            # resumed from a checkpoint (whose first epoch makes a new iterator) would continue
            # with another RNG stream (dropout ...) than the uninterrupted run.
            torch.empty((), dtype=torch.int64).random_()
        report = self.reports[self.stage] = ReadReport(self.stage, n_expected=self.n_samples)
        batches = count_skips(super().__iter__(), report, self.logged)
        return batches if n_batches is None else itertools.islice(batches, n_batches)


class TagDataModule(pl.LightningDataModule):
    """Music tagging data from WebDataset shards (see ``docs/data.md``).

    Args:
        root: A shard folder holding ``manifest.json`` (or the manifest path). Its splits give
            the default shards (``train``; ``val``/``valid``/``validation``; ``test``), the
            sample rate and the tag counts. Without a manifest, ``root`` is only the base folder
            for relative patterns.
        train: Training shards: a path, glob, brace range (``train-{000000..000009}.tar``),
            a webdataset URL (``pipe:...``, ``http://...``) or a list of these. Overrides the
            manifest's split. Relative local paths are relative to ``root``.
        val: Validation shards, as ``train``.
        test: Test shards, as ``train`` (also used for ``predict``).
        tags: Explicit vocabulary (model output order). Required without a manifest. Mutually
            exclusive with ``top_k``, ``include``, ``exclude`` and ``min_count``.
        top_k: Keep the ``top_k`` most frequent training tags (after merging and filtering).
        merge: Synonym map ``{source: target}``, e.g. ``{"rap": "hip-hop"}``.
        include: Keep only these tags.
        exclude: Drop these tags.
        min_count: Drop tags on fewer training tracks than this.
        sample_rate: Audio sample rate; read from the manifest (must agree if given), required
            without one.
        crop_samples: Crop length in samples (59049 = 3^10, ~3.7 s at 16 kHz).
        eval_crops: Crops per track for validation and test (``K``).
        batch_size: Training batch size (crops).
        eval_batch_size: Tracks per validation/test batch, each with ``eval_crops`` crops.
            Defaults to ``max(1, batch_size // eval_crops)``, so that an eval batch holds about
            as many crops as a training batch.
        num_workers: DataLoader workers per process.
        shuffle_buffer: Training crops held in the shuffle buffer (shards are always shuffled
            per epoch); 0 or 1 disables sample shuffling.
        seed: Base seed of shard order, crop positions and shuffling (combined with epoch, DDP
            rank and worker id).
        drop_untagged: Skip tracks that have no tag of the vocabulary (in every split).
        pin_memory: Passed to the DataLoaders.
        persistent_workers: Passed to the DataLoaders (when ``num_workers > 0``).
        verify_checksums: Check each track against the checksums written with it, the first time
            a loader meets it (its workers share what they checked); a damaged one is skipped
            and reported.

    Attributes:
        vocab: The :class:`TagVocab`, built in ``__init__`` so a model can be sized before fit.
        manifest: The manifest dict, or ``None``.

    Batches:
        train: ``{"audio": [B, crop], "target": [B, n_tags], "key": list[str]}``.
        val/test/predict: ``{"audio": [B, K, crop], "target": [B, n_tags], "key": list[str]}``.
    """

    def __init__(
        self,
        root: str | None = None,
        train: str | list[str] | None = None,
        val: str | list[str] | None = None,
        test: str | list[str] | None = None,
        tags: list[str] | None = None,
        top_k: int | None = None,
        merge: dict[str, str] | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        min_count: int = 1,
        sample_rate: int | None = None,
        crop_samples: int = 59049,
        eval_crops: int = 16,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        drop_untagged: bool = False,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        verify_checksums: bool = True,
    ) -> None:
        super().__init__()
        # Kept in checkpoints, but not merged into the logger's hparams: Lightning refuses keys
        # that the model also has (sample_rate, tags, crop_samples, eval_crops) with other values.
        self.save_hyperparameters(logger=False)
        if crop_samples < 1 or eval_crops < 1 or batch_size < 1:
            raise ValueError("crop_samples, eval_crops and batch_size must be >= 1")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        self.crop_samples = crop_samples
        self.eval_crops = eval_crops
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(1, batch_size // eval_crops)
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.drop_untagged = drop_untagged
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.verify_checksums = verify_checksums
        self._reports: dict[str, ReadReport] = {}
        self._logged_skips: set[tuple[str, str]] = set()

        self.manifest: dict[str, Any] | None = None
        base: Path | None = None
        if root is not None:
            root_path = Path(root).expanduser()
            manifest_path = root_path / "manifest.json" if root_path.is_dir() else root_path
            if manifest_path.is_file():
                self.manifest = load_manifest(manifest_path)
                base = Path(self.manifest["_dir"])
            elif root_path.is_dir():
                base = root_path
            else:
                raise FileNotFoundError(f"root {root!r} is neither a folder nor a manifest file")

        self._checksummed = frozenset(
            checksummed_shards(self.manifest) if self.manifest is not None else ()
        )
        self.sample_rate = self._resolve_sample_rate(sample_rate)
        self.vocab = self._build_vocab(tags, top_k, merge, include, exclude, min_count)

        self._urls: dict[str, list[str] | None] = {}
        for stage, pattern in (("train", train), ("val", val), ("test", test)):
            self._urls[stage] = self._resolve_urls(stage, pattern, base)
        if all(v is None for v in self._urls.values()):
            raise ValueError(
                "no shards: pass root=<folder with manifest.json> or train/val/test patterns"
            )

    # ------------------------------------------------------------------ set-up helpers

    def _resolve_sample_rate(self, sample_rate: int | None) -> int:
        if self.manifest is not None:
            sr = int(self.manifest["sample_rate"])
            if sample_rate is not None and int(sample_rate) != sr:
                raise ValueError(
                    f"sample_rate={sample_rate} disagrees with the shards' manifest "
                    f"({sr} Hz); drop the argument or rewrite the shards at {sample_rate} Hz"
                )
            return sr
        if sample_rate is None:
            raise ValueError("without a manifest, pass sample_rate (the shards' rate in Hz)")
        return int(sample_rate)

    def _train_split(self) -> dict[str, Any] | None:
        if self.manifest is None:
            return None
        return self.manifest["splits"].get("train")

    def _build_vocab(self, tags, top_k, merge, include, exclude, min_count) -> TagVocab:
        if tags is not None:
            chosen = {
                "top_k": top_k is not None,
                "include": include is not None,
                "exclude": exclude is not None,
                "min_count": min_count != 1,
            }
            if any(chosen.values()):
                names = ", ".join(k for k, v in chosen.items() if v)
                raise ValueError(
                    f"tags gives the vocabulary explicitly; {names} only apply when choosing it "
                    "from the manifest's counts (drop one or the other)"
                )
            vocab = TagVocab(tags, merge)
            counts = self._train_counts()
            if counts is not None:
                missing = [
                    t for t, n in zip(vocab.tags, vocab.counts(counts[0]), strict=True) if n == 0
                ]
                if missing:
                    log.warning("tags with no training track in the manifest: %s", missing)
            return vocab
        counts = self._train_counts()
        if counts is None:
            raise ValueError(
                "no manifest to count tags in: pass tags=[...] (the vocabulary), or root=<shard "
                "folder with manifest.json>"
            )
        return TagVocab.from_counts(
            counts[0],
            top_k=top_k,
            merge=merge,
            include=include,
            exclude=exclude,
            min_count=min_count,
        )

    def _train_counts(self) -> tuple[Mapping[str, int], int] | None:
        """(tag counts, number of tracks) of the manifest's train split (or whole manifest)."""
        if self.manifest is None:
            return None
        split = self._train_split()
        if split is not None:
            return split.get("tag_counts", {}), int(split["n_samples"])
        n = sum(int(s["n_samples"]) for s in self.manifest["splits"].values())
        return self.manifest.get("tag_counts", {}), n

    def _resolve_urls(
        self, stage: str, pattern: str | list[str] | None, base: Path | None
    ) -> list[str] | None:
        if pattern is not None:
            return _expand_patterns(pattern, base)
        if self.manifest is None:
            return None
        names = _VAL_SPLITS if stage == "val" else (stage,)
        for name in names:
            if name in self.manifest["splits"]:
                return shard_urls(self.manifest, name) or None
        return None

    def _shard_samples(self) -> dict[str, int]:
        """``{real path: samples}`` of every shard the manifest lists."""
        per_shard: dict[str, int] = {}
        for name, split in (self.manifest or {}).get("splits", {}).items():
            paths = shard_urls(self.manifest, name)
            per_shard.update(
                zip((os.path.realpath(p) for p in paths), split["shard_samples"], strict=True)
            )
        return per_shard

    def _known_samples(self, urls: list[str]) -> int | None:
        """Number of samples in ``urls`` if the manifest lists every one of them."""
        if self.manifest is None:
            return None
        per_shard = self._shard_samples()
        try:
            return sum(per_shard[os.path.realpath(u)] for u in urls)
        except KeyError:
            return None

    # ------------------------------------------------------------------ public API

    @property
    def tags(self) -> list[str]:
        """The vocabulary's tag names, in model output order."""
        return list(self.vocab.tags)

    @property
    def n_tags(self) -> int:
        """Number of tags (the model's output size)."""
        return len(self.vocab)

    @property
    def multi_label(self) -> bool:
        """``False`` for a single-label collection (GTZAN, FMA ``genre_top``), read from the
        manifest's ``provenance.options.single_label``; ``True`` otherwise and without a manifest."""
        options = ((self.manifest or {}).get("provenance") or {}).get("options") or {}
        return not bool(options.get("single_label", False))

    def pos_weight(self) -> torch.Tensor:
        """``BCEWithLogitsLoss`` positive weights from the manifest's training tag counts.

        Returns:
            float32 tensor ``[n_tags]``: ``(N - n_pos) / n_pos`` (see :meth:`TagVocab.pos_weight`).

        Raises:
            ValueError: Without a manifest.
        """
        counts = self._train_counts()
        if counts is None:
            raise ValueError("pos_weight needs tag counts: use root=<folder with manifest.json>")
        return self.vocab.pos_weight(*counts)

    def _stream(self, stage: str) -> _TrackStream:
        urls = self._urls[stage]
        if urls is None:
            raise ValueError(
                f"no {stage} shards: the manifest has no such split and no {stage}= pattern "
                "was given"
            )
        training = stage == "train"
        return _TrackStream(
            urls,
            vocab=self.vocab,
            sample_rate=self.sample_rate,
            crop_samples=self.crop_samples,
            eval_crops=None if training else self.eval_crops,
            shuffle_buffer=self.shuffle_buffer if training else 0,
            seed=self.seed,
            drop_untagged=self.drop_untagged,
            checksummed=self._checksummed,
            verify=self.verify_checksums,
            shard_samples=self._shard_samples() if self.verify_checksums else {},
        )

    def read_report(self, stage: str) -> ReadReport | None:
        """What the latest pass of a stage's loader delivered and skipped, in this process.

        For ``"val"`` and ``"test"``, ``n_tracks`` are the tracks scored and ``skipped`` those
        not scored (damaged or undecodable); ``n_expected`` is what the manifest lists.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"`` (``predict`` reads the test shards).

        Returns:
            The :class:`ReadReport`, or ``None`` before the stage's loader has run.
        """
        return self._reports.get(stage)

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "collate_fn": _collate,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
        }

    def _current_epoch(self) -> int | None:
        trainer = self.trainer
        if trainer is None:
            return None
        # The epoch Lightning gives samplers (`set_epoch`). Resuming from an end-of-epoch
        # checkpoint, Lightning creates the first iterator while `current_epoch` still names the
        # finished epoch; `processed` already names the one to run.
        return epochs_processed(trainer)

    def train_dataloader(self) -> DataLoader:
        """Training batches: one random crop per track, ``{"audio": [B, crop], ...}``."""
        dataset = self._stream("train")
        if self.verify_checksums:
            note_unverified("train", dataset.urls, dataset.checksummed, self._logged_skips)
        return _StreamLoader(
            dataset,
            even_ranks=True,
            n_samples=self._known_samples(dataset.urls),
            epoch_fn=self._current_epoch,
            batch_size=self.batch_size,
            stage="train",
            reports=self._reports,
            logged=self._logged_skips,
            **self._loader_kwargs(),
        )

    def _eval_loader(self, stage: str) -> DataLoader | list:
        if self._urls[stage] is None:
            if stage == "val":
                return []  # Lightning then skips validation
            self._stream(stage)  # raises a clear error
        dataset = self._stream(stage)
        if self.verify_checksums:
            note_unverified(stage, dataset.urls, dataset.checksummed, self._logged_skips)
        return _StreamLoader(
            dataset,
            n_samples=self._known_samples(dataset.urls),
            batch_size=self.eval_batch_size,
            stage=stage,
            reports=self._reports,
            logged=self._logged_skips,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches: ``{"audio": [B, K, crop], ...}`` (``[]`` without a val split)."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches: ``{"audio": [B, K, crop], ...}``."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Same as :meth:`test_dataloader`."""
        return self._eval_loader("test")
