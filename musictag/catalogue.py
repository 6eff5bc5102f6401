"""Catalogue-scale tagging and embedding: a resumable SQLite results database, filled by
Lightning's ``Trainer.predict`` on one process or many (DDP across GPUs and nodes).

Global rank 0 decides which files are still to do and broadcasts the list; each rank takes every
``world_size``-th of them (as Lightning's unrepeated distributed sampler does: no padding, so no
file is scored twice) and its data-loader workers decode them. ``predict_step`` scores a few files at a time with
:class:`~musictag.inference.Inference` (the windows, batching and aggregation of
``musictag predict``), and :class:`ResultsWriter`, a ``BasePredictionWriter``, commits each
batch to the rank's own part database (WAL, ``synchronous=FULL``): that is the journal. When
every rank is done, global rank 0 merges the parts into the results database. A rerun after a
crash or ``kill -9`` merges the parts left behind and tags only the files not yet in it.

The database schema (version 1) is described in ``docs/catalogue.md#the-results-database``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from .audio import DEFAULT_BLOCK_FRAMES, AudioReadError, stream_audio
from .inference import Inference
from .pretrained import file_sha256
from .results import TagResult, select_tags

__all__ = [
    "SCHEMA_VERSION",
    "CatalogueReport",
    "ResultsWriter",
    "catalogue_settings",
    "read_results",
    "run_catalogue",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    path TEXT PRIMARY KEY, file TEXT NOT NULL, id TEXT NOT NULL, n_windows INTEGER NOT NULL,
    scores BLOB NOT NULL, starts BLOB NOT NULL, window_scores BLOB NOT NULL, embedding BLOB,
    run INTEGER NOT NULL, rank INTEGER NOT NULL, finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    path TEXT NOT NULL, rank INTEGER NOT NULL, tag TEXT NOT NULL, score REAL NOT NULL,
    PRIMARY KEY (path, rank));
CREATE INDEX IF NOT EXISTS labels_by_tag ON labels (tag, score);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY, error TEXT NOT NULL, attempts INTEGER NOT NULL, run INTEGER NOT NULL,
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, world_size INTEGER,
    files INTEGER, pending INTEGER);
"""


# ------------------------------------------------------------------------------- database
def _connect(path: Path, wal: bool = False) -> sqlite3.Connection:
    """Open (creating) a results database. Parts are written a batch at a time, in WAL mode;
    the results database keeps a rollback journal, so it is always one self-contained file."""
    con = sqlite3.connect(path, timeout=120)
    con.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
    con.execute("PRAGMA synchronous=FULL")  # a commit survives kill -9 and power loss
    con.executescript(_SCHEMA)
    return con


def _key(path: str | Path) -> str:
    return os.path.abspath(path)


def _parts_dir(db: Path) -> Path:
    return db.with_name(db.name + ".parts")


def _remove_db(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


def catalogue_settings(
    inference: Inference, task: str, checkpoint: str | Path | None
) -> dict[str, Any]:
    """What the results of a run depend on; a results database only resumes with equal settings.

    Args:
        inference: The configured inference (model, windows, aggregation, tag selection).
        task: ``"predict"`` or ``"embed"``.
        checkpoint: The checkpoint file (hashed), or ``None`` for a model built in Python.
    """
    model = inference.model
    return {
        "task": task,
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
        "tags": list(model.tags),
        "sample_rate": inference.sample_rate,
        "window": inference.window,
        "hop": inference.hop,
        "crops": inference.crops,
        "aggregation": inference.aggregation,
        "layers": inference.embeddings,
        "top_k": inference.top_k,
        # per-tag calibrated thresholds are an array: stored as a JSON list
        "threshold": None
        if inference.threshold is None
        else np.asarray(inference.threshold).tolist(),
    }


def _check_meta(con: sqlite3.Connection, db: Path, settings: dict[str, Any]) -> None:
    stored = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    if not stored:
        rows = [("schema_version", json.dumps(SCHEMA_VERSION))]
        rows += [(k, json.dumps(v)) for k, v in settings.items()]
        con.executemany("INSERT INTO meta VALUES (?, ?)", rows)
        return
    if stored.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{db}: results database schema {stored.get('schema_version')}, this musictag "
            f"writes {SCHEMA_VERSION}; use a new --db file"
        )
    differ = [
        f"{k}: {stored.get(k)!r} there, {v!r} now"
        for k, v in settings.items()
        if stored.get(k) != json.loads(json.dumps(v))
    ]
    if differ:
        raise ValueError(
            f"{db}: results made with other settings ({'; '.join(differ)}); rerun with the "
            "same checkpoint and options to resume, or use a new --db file"
        )


def check_resumable(db: str | Path, settings: dict[str, Any]) -> None:
    """Raise ``ValueError`` if ``db`` exists and was made with other settings (read-only)."""
    db = Path(db)
    if not db.is_file():
        return
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=120)
    try:
        (has_meta,) = con.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        # an empty meta table is a database created by a run killed at once: nothing to check
        if has_meta and con.execute("SELECT count(*) FROM meta").fetchone()[0]:
            _check_meta(con, db, settings)
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{db}: not a musictag results database ({e})") from e
    finally:
        con.close()


def _merge_parts(con: sqlite3.Connection, db: Path) -> int:
    """Fold every part database into ``con`` (idempotent), then delete the parts."""
    parts = sorted(_parts_dir(db).glob("*.sqlite"))
    merged = 0
    for part in parts:
        try:
            merged += _merge_part(con, part)
        except sqlite3.DatabaseError as e:
            con.rollback()
            aside = part.with_suffix(".damaged")
            log.error("%s: unreadable part database (%s); moved to %s", part, e, aside.name)
            part.rename(aside)
            continue
        _remove_db(part)
    return merged


def _merge_part(con: sqlite3.Connection, part: Path) -> int:
    """Fold one part database into ``con``; returns how many tracks it added."""
    con.execute("ATTACH DATABASE ? AS part", (str(part),))
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM part.sqlite_master")}
        if not {"tracks", "labels", "failures"} <= tables:
            return 0  # killed while its schema was written: rows come only after the schema
        before = con.total_changes
        con.execute("INSERT OR IGNORE INTO tracks SELECT * FROM part.tracks")
        added = con.total_changes - before
        con.execute("INSERT OR IGNORE INTO labels SELECT * FROM part.labels")
        con.execute(
            "INSERT INTO failures SELECT path, error, 1, run, at FROM part.failures WHERE true "
            "ON CONFLICT(path) DO UPDATE SET error = excluded.error, "
            "attempts = failures.attempts + (failures.run != excluded.run), "
            "run = excluded.run, at = excluded.at"
        )
        con.execute("DELETE FROM failures WHERE path IN (SELECT path FROM tracks)")
        con.commit()
        return added
    finally:
        con.execute("DETACH DATABASE part")


def _start_run(
    db: Path, settings: dict[str, Any], keys: Sequence[str], world_size: int
) -> tuple[int, list[int], int]:
    """Create or resume ``db``: merge parts left by a killed run, record a new run.

    Returns:
        ``(run, pending indices into keys, files already done)``.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(db)
    try:
        _check_meta(con, db, settings)
        con.commit()
        recovered = _merge_parts(con, db)
        if recovered:
            log.info("%s: recovered %d results journaled by an interrupted run", db, recovered)
        done = {row[0] for row in con.execute("SELECT path FROM tracks")}
        pending = [i for i, k in enumerate(keys) if k not in done]
        (last,) = con.execute("SELECT coalesce(max(run), 0) FROM runs").fetchone()
        run = int(last) + 1
        con.execute(
            "INSERT INTO runs (run, started, world_size, files, pending) VALUES (?, ?, ?, ?, ?)",
            (run, time.time(), world_size, len(keys), len(pending)),
        )
        con.commit()
    finally:
        con.close()
    return run, pending, len(keys) - len(pending)


def _finish_run(db: Path, run: int) -> None:
    con = _connect(db)
    try:
        _merge_parts(con, db)
        con.execute("UPDATE runs SET finished = ? WHERE run = ?", (time.time(), run))
        con.commit()
    finally:
        con.close()
    try:
        _parts_dir(db).rmdir()
    except OSError:
        pass  # not there, or a part another run is writing


# -------------------------------------------------------------------------------- lightning
class _AudioFiles(Dataset):
    """``(index, path)`` -> ``(index, path, waveform [samples] | AudioReadError)``, decoded in
    the data-loader workers at the model's rate exactly as ``Inference`` decodes a file."""

    def __init__(self, items: Sequence[tuple[int, str]], sample_rate: int) -> None:
        self.items = list(items)
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, str, np.ndarray | AudioReadError]:
        index, path = self.items[i]
        try:
            chunks = list(stream_audio(path, self.sample_rate, DEFAULT_BLOCK_FRAMES))
        except AudioReadError as e:
            return index, path, e
        return index, path, np.concatenate(chunks)


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


class _CatalogueData(pl.LightningDataModule):
    """The files still to do, decided on global rank 0 and broadcast to every rank."""

    def __init__(
        self,
        db: Path,
        files: Sequence[Path],
        settings: dict[str, Any],
        sample_rate: int,
        files_per_step: int,
        workers: int,
    ) -> None:
        super().__init__()
        self.db = db
        self.files = [str(f) for f in files]
        self.keys = [_key(f) for f in files]
        self.settings = settings
        self.sample_rate = sample_rate
        self.files_per_step = files_per_step
        self.workers = workers
        self.run = 0
        self.pending: list[int] = []
        self.done_before = 0

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        assert trainer is not None
        digest = hashlib.sha256("\n".join(self.keys).encode()).hexdigest()
        state = None
        if trainer.is_global_zero:
            state = (*_start_run(self.db, self.settings, self.keys, trainer.world_size), digest)
        run, pending, done, digest0 = trainer.strategy.broadcast(state, src=0)
        if digest != digest0:
            raise RuntimeError(
                f"rank {trainer.global_rank} found other input files than rank 0 "
                f"({len(self.keys)} files); every rank must see the same inputs"
            )
        # Every world_size-th file from this rank's own: the split of Lightning's
        # UnrepeatedDistributedSampler (no padding, so no file twice), which however refuses a
        # rank left without files, as happens when a resumed run has fewer files than ranks.
        self.pending = list(pending)[trainer.global_rank :: trainer.world_size]
        self.run, self.done_before = run, done
        if trainer.is_global_zero:
            log.info(
                "%s: run %d, %d of %d files already done, %d to do on %d process(es)",
                self.db, run, done, len(self.keys), len(pending), trainer.world_size,
            )  # fmt: skip

    def predict_dataloader(self) -> DataLoader:
        items = [(i, self.files[i]) for i in self.pending]
        return DataLoader(
            _AudioFiles(items, self.sample_rate),
            batch_size=self.files_per_step,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=_as_list,
        )


class _CataloguePredictor(pl.LightningModule):
    """Scores a step's files with :class:`Inference` (windows of its files share batches)."""

    def __init__(self, inference: Inference) -> None:
        super().__init__()
        self.tagger = inference.model
        self.inference = inference
        # a resumed run may leave a rank without files
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def predict_step(self, batch: list[tuple[int, str, Any]], batch_idx: int) -> list[tuple]:
        rate = self.inference.sample_rate
        readable = [(i, (audio, rate, path)) for i, path, audio in batch if _is_audio(audio)]
        results = dict(self.inference.iter_keyed(readable))
        return [(i, path, results.get(i, audio)) for i, path, audio in batch]


def _is_audio(x: Any) -> bool:
    return isinstance(x, np.ndarray)


class ResultsWriter(BasePredictionWriter):
    """Commits every predicted batch to this rank's part database; rank 0 merges the parts.

    Args:
        db: The results database; parts go to ``<db>.parts/run<run>-rank<rank>.sqlite``.
    """

    def __init__(self, db: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.db = Path(db)
        self._con: sqlite3.Connection | None = None
        self._run = 0

    def _part(self, trainer: pl.Trainer) -> sqlite3.Connection:
        if self._con is None:
            self._run = int(getattr(trainer.datamodule, "run", 0))
            parts = _parts_dir(self.db)
            parts.mkdir(parents=True, exist_ok=True)
            name = f"run{self._run:04d}-rank{trainer.global_rank:05d}.sqlite"
            self._con = _connect(parts / name, wal=True)
        return self._con

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: list[tuple[int, str, TagResult | AudioReadError]],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        con = self._part(trainer)
        now, rank = time.time(), trainer.global_rank
        for _, path, result in prediction:
            key = _key(path)
            if isinstance(result, Exception):
                log.error("skipped %s", result)
                con.execute(
                    "INSERT OR REPLACE INTO failures VALUES (?, ?, 1, ?, ?)",
                    (key, str(result), self._run, now),
                )
                continue
            emb = result.embedding
            con.execute(
                "INSERT OR IGNORE INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    str(path),
                    Path(path).stem,
                    len(result.starts),
                    _f32(result.scores),
                    np.asarray(result.starts, "<i8").tobytes(),
                    _f32(result.window_scores),
                    None if emb is None else _f32(emb),
                    self._run,
                    rank,
                    now,
                ),
            )
            con.executemany(
                "INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?)",
                [(key, r, t, s) for r, (t, s) in enumerate(result.labels, 1)],
            )
        con.commit()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # not on_predict_end: Lightning skips the predict loop, hooks and all, on a rank without
        # files; teardown is called on every rank once the loop is done (the process group is
        # still up)
        if self._con is not None:
            self._con.close()
            self._con = None
        trainer.strategy.barrier("musictag_catalogue_written")
        if trainer.is_global_zero:
            _finish_run(self.db, self._run or int(getattr(trainer.datamodule, "run", 0)))
        trainer.strategy.barrier("musictag_catalogue_merged")


def _f32(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


# -------------------------------------------------------------------------------- running
@dataclass
class CatalogueReport:
    """What a catalogue run did (on global rank 0).

    Attributes:
        db: The results database.
        files: Input files.
        done_before: Files already in the database when the run started.
        done_now: Files finished by this run.
        failed: ``[(path, error), ...]`` of the input files that could not be read.
        run: This run's number in the ``runs`` table.
    """

    db: Path
    files: int
    done_before: int
    done_now: int
    failed: list[tuple[str, str]]
    run: int


def run_catalogue(
    inference: Inference,
    files: Sequence[str | Path],
    db: str | Path,
    *,
    task: str = "predict",
    checkpoint: str | Path | None = None,
    files_per_step: int = 8,
    workers: int = 0,
    accelerator: str = "cpu",
    devices: int | str | list[int] = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    progress: bool = False,
) -> CatalogueReport | None:
    """Tag (and embed) ``files`` into the results database ``db``, resuming what it holds.

    Runs ``Trainer.predict`` with :class:`ResultsWriter`; with ``devices``/``num_nodes`` above 1
    and ``strategy="ddp"`` every process takes its share of the files (Lightning's launcher
    starts the local processes; on a cluster, ``srun`` starts one task per device).

    Args:
        inference: How each file is scored (model, windows, aggregation, tags, embeddings).
        files: Audio files, in output order.
        db: SQLite results database, created if missing.
        task: ``"predict"`` or ``"embed"`` (recorded; a database resumes only the same task).
        checkpoint: The model's checkpoint file, hashed so that a resume uses the same weights.
        files_per_step: Files per ``predict_step`` (their windows share forward passes).
        workers: Data-loader processes decoding files.
        accelerator, devices, num_nodes, strategy: As for ``pytorch_lightning.Trainer``.
        progress: Show Lightning's progress bar.

    Returns:
        A :class:`CatalogueReport` on global rank 0, ``None`` on the other ranks.

    Raises:
        ValueError: if ``db`` holds results made with other settings.
    """
    db = Path(db)
    settings = catalogue_settings(inference, task, checkpoint)
    check_resumable(db, settings)
    paths = [Path(f) for f in files]
    data = _CatalogueData(
        db, paths, settings, inference.sample_rate, max(1, files_per_step), workers
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=[ResultsWriter(db)],
        use_distributed_sampler=False,  # each rank's share is chosen in _CatalogueData.setup
        default_root_dir=db.parent,
    )
    trainer.predict(_CataloguePredictor(inference), datamodule=data, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=120)
    try:
        keys = {_key(p) for p in paths}
        (done_now,) = con.execute(
            "SELECT count(*) FROM tracks WHERE run = ?", (data.run,)
        ).fetchone()
        failed = [
            (str(p), e)
            for p, e in con.execute("SELECT path, error FROM failures ORDER BY path")
            if p in keys
        ]
    finally:
        con.close()
    return CatalogueReport(db, len(paths), data.done_before, int(done_now), failed, data.run)


def read_results(db: str | Path, files: Sequence[str | Path]) -> Iterator[tuple[Path, TagResult]]:
    """The stored results of ``files`` (those the database holds), in the order given.

    The track's ``labels`` are those of the run's ``top_k``/``threshold``; ``window`` and
    ``sample_rate`` come from the database's settings.

    Yields:
        ``(path as given, TagResult)``; ``embedding`` is set for an ``embed`` database.
    """
    con = sqlite3.connect(f"file:{Path(db)}?mode=ro", uri=True, timeout=120)
    try:
        meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
        tags = list(meta["tags"])
        for f in files:
            row = con.execute(
                "SELECT n_windows, scores, starts, window_scores, embedding FROM tracks "
                "WHERE path = ?",
                (_key(f),),
            ).fetchone()
            if row is None:
                continue
            n, scores, starts, window_scores, emb = row
            scores_np = np.frombuffer(scores, "<f4").astype(np.float32)
            yield (
                Path(f),
                TagResult(
                    scores=scores_np,
                    window_scores=np.frombuffer(window_scores, "<f4").reshape(n, len(tags)).copy(),
                    starts=np.frombuffer(starts, "<i8").astype(np.int64),
                    tags=tags,
                    sample_rate=int(meta["sample_rate"]),
                    window=int(meta["window"]),
                    labels=select_tags(scores_np, tags, meta["top_k"], meta["threshold"]),
                    embedding=None if emb is None else np.frombuffer(emb, "<f4").astype(np.float32),
                    source=str(f),
                    aggregation=str(meta["aggregation"]),
                ),
            )
    finally:
        con.close()
