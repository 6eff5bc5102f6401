"""Track embeddings and nearest-neighbour search over them (cosine similarity).

:func:`embed_file` and :func:`embed_tracks` embed files and shard tracks (the mean of the window
embeddings of :class:`~musictag.inference.Inference`). An :class:`EmbeddingSet` is one embedding
per track plus what the track is: ``embeddings.npy`` (float32 ``[N, D]``) and ``index.json`` (the
model, the protocol, and one record per row: ``id``, ``path``, ``tags``, ``predicted``).
``musictag embed`` writes one; ``musictag index`` merges sets and L2-normalises them into a
:class:`TrackIndex`, saved in the same two files (nothing is pickled). Search is exact (a matrix
product in torch) for small collections; for large ones a graph index of
`faiss <https://github.com/facebookresearch/faiss>`_ (``IndexHNSWFlat`` on inner products, the
optional ``ann`` extra: ``pip install 'musictag[ann]'``) answers the same queries, and the index
falls back to exact search, with a log message, when faiss is not installed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .audio import AudioReadError
from .inference import Inference, iter_shard_tracks
from .inputs import collect_audio_files, is_shard_folder

if TYPE_CHECKING:
    from .tagger import Tagger

__all__ = [
    "ANN_MIN_TRACKS",
    "BACKENDS",
    "EmbeddingSet",
    "Hit",
    "TrackIndex",
    "embed_file",
    "embed_tracks",
    "faiss_available",
]

log = logging.getLogger(__name__)

EMBEDDINGS_NAME = "embeddings.npy"
INDEX_NAME = "index.json"
FAISS_NAME = "hnsw.faiss"
FORMAT = "musictag-embeddings"
VERSION = 1
BACKENDS = ("auto", "exact", "faiss")
ANN_MIN_TRACKS = 100_000
"""With ``backend="auto"``, collections of at least this many tracks use faiss (when installed)."""


def embed_file(
    model: Tagger,
    path: str | Path,
    layers: str = "last",
    hop: int | None = None,
    crops: int | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """File-level embedding: the mean of the window embeddings.

    Args:
        model: A tagger.
        path: Audio file.
        layers: ``"last"`` (penultimate representation) or ``"all"`` (every stage, concatenated).
        hop: Hop between sliding windows; default: the window length.
        crops: Use the ``K`` evaluation crops instead of sliding windows.
        batch_size: Windows per forward pass.

    Returns:
        float32 ``[dim]``.
    """
    inference = Inference(model, hop=hop, crops=crops, batch_size=batch_size, embeddings=layers)
    emb = inference(path).embedding
    assert emb is not None
    return emb


def embed_tracks(
    model: Tagger,
    inputs: Sequence[str | Path],
    *,
    layers: str = "last",
    hop: int | None = None,
    crops: int | None = None,
    batch_size: int = 16,
    splits: Sequence[str] | None = None,
    top_k: int = 5,
) -> Iterator[tuple[dict[str, Any], np.ndarray | AudioReadError]]:
    """One embedding per track of files, folders, ``@lists`` and shard sets.

    Files are embedded with sliding windows (mean of the window embeddings), or with ``crops``
    evenly spaced crops when given; tracks of a shard set (a folder holding ``manifest.json``)
    always use the K-crop protocol of :mod:`musictag.tta`, with ``K = crops`` or the model's
    ``eval_crops``.

    Args:
        model: A tagger.
        inputs: Audio files, folders, ``@list`` files and shard folders.
        layers: ``"last"`` or ``"all"`` (see :meth:`Tagger.embed`).
        hop: Hop of the sliding windows for files.
        crops: Crops per track (files and shards).
        batch_size: Windows per forward pass.
        splits: Shard splits to read; default: all.
        top_k: Predicted tags recorded per track.

    Yields:
        ``(info, embedding [dim] float32 | AudioReadError)``; ``info`` holds ``id``, ``path``,
        ``tags`` (ground truth for shard tracks, empty for files) and ``predicted``
        (``[[tag, score], ...]``, best first).
    """
    files: list[str | Path] = []
    shard_sets: list[Path] = []
    for s in inputs:
        if not str(s).startswith("@") and is_shard_folder(s):
            shard_sets.append(Path(s))
        else:
            files.append(s)

    def emit(info: dict[str, Any], result: Any) -> tuple[dict[str, Any], Any]:
        if isinstance(result, Exception):
            return info, result
        info["predicted"] = [[t, round(s, 6)] for t, s in result.select(top_k)]
        return info, result.embedding

    if files:
        inference = Inference(model, hop=hop, crops=crops, batch_size=batch_size, embeddings=layers)
        for path, result in inference.iter_files(collect_audio_files(files)):
            yield emit({"id": path.stem, "path": str(path), "tags": []}, result)
    k = crops or int(model.hparams.get("eval_crops", 16))
    shard_inference = Inference(model, crops=k, batch_size=batch_size, embeddings=layers)
    for shard_dir in shard_sets:
        tracks = iter_shard_tracks(shard_dir, splits, with_errors=True)
        pairs = ((info, (wave, rate, info["id"])) for info, wave, rate in tracks)
        for info, result in shard_inference.iter_keyed(pairs):
            info["path"] = info["path"] or f"{shard_dir}/{info['key']}"
            yield emit(info, result)


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package (``pip install 'musictag[ann]'``) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class EmbeddingSet:
    """One embedding per track, and what each track is.

    Attributes:
        vectors: float32 ``[N, D]``.
        tracks: One record per row: ``id``, ``path``, ``tags`` (ground truth, may be empty),
            ``predicted`` (``[[tag, score], ...]``), and for shard tracks ``split``/``key``.
        meta: How the vectors were made: ``checkpoint``, ``model``, ``layers``, ``protocol``,
            ``dim``, ``normalized`` ...
    """

    vectors: np.ndarray
    tracks: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {self.vectors.shape}")
        if len(self.tracks) != self.vectors.shape[0]:
            raise ValueError(
                f"{self.vectors.shape[0]} embeddings but {len(self.tracks)} track records"
            )
        self.meta = {**self.meta, "dim": int(self.vectors.shape[1])}

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def save(self, out_dir: str | Path) -> Path:
        """Write ``embeddings.npy`` and ``index.json`` into ``out_dir`` (created), atomically.

        Returns:
            ``out_dir``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _atomic(out / EMBEDDINGS_NAME, lambda f: np.save(f, self.vectors, allow_pickle=False))
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "n": len(self),
            **{k: v for k, v in self.meta.items() if k not in ("format", "version", "n")},
            "tracks": self.tracks,
        }
        text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
        _atomic(out / INDEX_NAME, lambda f: f.write(text.encode("utf-8")))
        return out

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingSet:
        """Read a folder written by :meth:`save` (``embeddings.npy`` + ``index.json``).

        Raises:
            FileNotFoundError: if either file is missing.
            ValueError: if the files are not a musictag embedding set or do not match.
        """
        d = Path(path)
        if not (d / INDEX_NAME).is_file() or not (d / EMBEDDINGS_NAME).is_file():
            raise FileNotFoundError(
                f"{d}: not an embedding folder (needs {EMBEDDINGS_NAME} and {INDEX_NAME}); "
                "write one with `musictag embed` or `musictag index`"
            )
        try:
            doc = json.loads((d / INDEX_NAME).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{d / INDEX_NAME}: not valid JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f'{d / INDEX_NAME}: not a musictag index ("format": "{FORMAT}")')
        if doc.get("version") != VERSION:
            raise ValueError(
                f"{d / INDEX_NAME}: version {doc.get('version')!r}, this musictag reads {VERSION}"
            )
        vectors = np.load(d / EMBEDDINGS_NAME, allow_pickle=False)
        tracks = doc.pop("tracks")
        meta = {k: v for k, v in doc.items() if k not in ("format", "version", "n")}
        try:
            return cls(vectors, tracks, meta)
        except ValueError as e:
            raise ValueError(f"{d}: {e}") from e

    @classmethod
    def concat(cls, sets: Sequence[EmbeddingSet]) -> EmbeddingSet:
        """Stack several sets made with the same model and layers.

        Raises:
            ValueError: if the dimensions differ.
        """
        if not sets:
            raise ValueError("no embedding sets to combine")
        dims = {s.dim for s in sets}
        if len(dims) > 1:
            raise ValueError(
                f"embedding sets of different sizes cannot be combined: {sorted(dims)}"
            )
        for key in ("checkpoint", "layers"):
            values = {json.dumps(s.meta.get(key)) for s in sets}
            if len(values) > 1:
                log.warning("combining embedding sets made with different %s: %s", key, values)
        vectors = np.concatenate([s.vectors for s in sets])
        tracks = [t for s in sets for t in s.tracks]
        return cls(vectors, tracks, dict(sets[0].meta))


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        rank: 1 for the nearest track.
        index: Row of the track in the index.
        score: Cosine similarity to the query, in [-1, 1].
        track: The track's record (``id``, ``path``, ``tags`` ...).
    """

    rank: int
    index: int
    score: float
    track: Mapping[str, Any]


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class TrackIndex:
    """Nearest tracks by cosine similarity of their embeddings.

    Example:
        >>> index = TrackIndex.build([EmbeddingSet.load("emb/")])
        >>> index.save("index/")
        >>> [hits] = TrackIndex.load("index/").search(query_embedding, top_k=10)

    Args:
        embeddings: The tracks (an :class:`EmbeddingSet`; its vectors are L2-normalised here).
        backend: ``"exact"`` (torch matrix product), ``"faiss"`` (HNSW graph; falls back to exact
            with a log message when faiss is not installed) or ``"auto"`` (faiss from
            ``ann_min_tracks`` tracks on, when installed).
        ann_min_tracks: Size from which ``"auto"`` uses faiss.
        hnsw_m: Neighbours per node of the HNSW graph.
        ef_search: Breadth of the HNSW search (higher: more exact, slower); at least ``top_k``.
    """

    def __init__(
        self,
        embeddings: EmbeddingSet,
        backend: str = "auto",
        ann_min_tracks: int = ANN_MIN_TRACKS,
        hnsw_m: int = 32,
        ef_search: int = 128,
        _faiss_index: Any = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        vectors = _normalize(embeddings.vectors)
        self.set = EmbeddingSet(vectors, embeddings.tracks, {**embeddings.meta, "normalized": True})
        self.requested_backend = backend
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self._faiss = _faiss_index
        self._matrix = torch.from_numpy(self.set.vectors)
        want_faiss = backend == "faiss" or (backend == "auto" and len(self.set) >= ann_min_tracks)
        if want_faiss and _faiss_index is None:
            if faiss_available():
                self._faiss = self._build_faiss()
            else:
                (log.warning if backend == "faiss" else log.info)(
                    "faiss is not installed (pip install 'musictag[ann]'); using exact search "
                    "over %d tracks",
                    len(self.set),
                )
        self.backend = "faiss" if self._faiss is not None else "exact"

    # ------------------------------------------------------------ building
    @classmethod
    def build(cls, sets: Sequence[EmbeddingSet], **kwargs: Any) -> TrackIndex:
        """An index over one or more embedding sets (see :meth:`EmbeddingSet.concat`)."""
        return cls(EmbeddingSet.concat(list(sets)), **kwargs)

    def _build_faiss(self) -> Any:
        import faiss

        index = faiss.IndexHNSWFlat(self.set.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * self.hnsw_m)
        index.add(self.set.vectors)
        return index

    def save(self, out_dir: str | Path) -> Path:
        """Write ``embeddings.npy`` (normalised) + ``index.json``, and ``hnsw.faiss`` for faiss.

        ``hnsw.faiss`` is faiss's own binary format (``faiss.write_index``, not a pickle); it only
        saves rebuilding the graph and is rebuilt from ``embeddings.npy`` when missing.
        """
        out = self.set.save(out_dir)
        stale = out / FAISS_NAME
        if self._faiss is not None:
            import faiss

            tmp = out / f".{FAISS_NAME}.tmp"
            faiss.write_index(self._faiss, str(tmp))
            os.replace(tmp, stale)
        elif stale.exists():
            stale.unlink()
        return out

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", **kwargs: Any) -> TrackIndex:
        """Load an index folder (or any folder written by ``musictag embed``).

        A saved ``hnsw.faiss`` is used when faiss is installed and ``backend`` is not ``"exact"``.
        """
        emb = EmbeddingSet.load(path)
        graph = None
        faiss_file = Path(path) / FAISS_NAME
        if backend != "exact" and faiss_file.is_file():
            if faiss_available():
                import faiss

                graph = faiss.read_index(str(faiss_file))
                backend = "faiss"
                if graph.ntotal != len(emb) or graph.d != emb.dim:
                    log.warning("%s does not match %s; rebuilding it", faiss_file, EMBEDDINGS_NAME)
                    graph = None
            else:
                log.info(
                    "%s needs faiss (pip install 'musictag[ann]'); using exact search", faiss_file
                )
        return cls(emb, backend=backend, _faiss_index=graph, **kwargs)

    # ------------------------------------------------------------ querying
    def __len__(self) -> int:
        return len(self.set)

    @property
    def tracks(self) -> list[dict[str, Any]]:
        return self.set.tracks

    def search(
        self, queries: np.ndarray | torch.Tensor | Iterable[float], top_k: int = 10
    ) -> list[list[Hit]]:
        """The ``top_k`` nearest tracks of each query, by cosine similarity.

        Args:
            queries: ``[D]`` or ``[Q, D]`` embeddings (made like the indexed ones).
            top_k: Results per query (at most the size of the index).

        Returns:
            One list of :class:`Hit` per query, best first.
        """
        q = queries.detach().cpu().numpy() if isinstance(queries, torch.Tensor) else queries
        q = np.asarray(q, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.set.dim:
            raise ValueError(
                f"queries must be [Q, {self.set.dim}] (the index's embedding size), got {q.shape}; "
                "embed them with the model and layers the index was built with"
            )
        k = max(1, min(int(top_k), len(self)))
        q = _normalize(q)
        if self._faiss is not None:
            self._faiss.hnsw.efSearch = max(self.ef_search, k)
            scores, rows = self._faiss.search(q, k)
        else:
            # queries in chunks, so the [chunk, N] similarity matrix stays around 64 MB
            step = max(1, (1 << 24) // len(self))
            parts = [
                torch.topk(torch.from_numpy(q[i : i + step]) @ self._matrix.T, k, dim=1)
                for i in range(0, q.shape[0], step)
            ]
            scores = torch.cat([p.values for p in parts]).numpy()
            rows = torch.cat([p.indices for p in parts]).numpy()
        return [
            [
                Hit(rank=r + 1, index=int(i), score=float(s), track=self.set.tracks[int(i)])
                for r, (s, i) in enumerate(zip(srow, irow))
                if i >= 0
            ]
            for srow, irow in zip(scores, rows)
        ]


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
