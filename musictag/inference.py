"""Tagging and embedding audio of any length: streamed windows, batched, aggregated per track.

The sliding-window ``Inference`` of pyannote-audio, for taggers. A file is decoded in blocks
(``soundfile.SoundFile.blocks``), downmixed to mono and resampled to the model's rate with a
streaming resampler (``soxr.ResampleStream``, bit-identical to one-shot ``soxr.resample``); windows
of the model's input length are cut every ``hop`` samples as the audio arrives, batched (windows
of consecutive files share batches) and scored. Only a few windows, the per-window scores and the
per-window embeddings are ever held, so memory does not grow with the length of the file.

Two ways to cut a track:

- **sliding** (default): windows every ``hop`` samples (default: the window length) covering the
  whole track; a last window is aligned with the end, and a track shorter than one window is
  zero-padded (:func:`window_starts`).
- **crops**: the ``K`` evenly spaced crops of the published evaluation protocol
  (:mod:`musictag.tta`; the track is decoded whole, so use it for tracks, not for hour-long files).

Track scores aggregate the window probabilities (mean or max); track embeddings are the mean of the
window embeddings.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr
import torch

from .audio import AudioReader, AudioReadError, Truncation, to_mono_resampled
from .data.shards import iter_shard_tracks
from .data.sources.folder import AUDIO_EXTENSIONS
from .tta import AGGREGATIONS, aggregate, eval_crop_starts

if TYPE_CHECKING:
    from .tagger import Tagger

__all__ = [
    "AUDIO_EXTENSIONS",
    "Inference",
    "TagResult",
    "WindowScores",
    "collect_audio_files",
    "embed_file",
    "embed_tracks",
    "is_shard_folder",
    "iter_shard_tracks",
    "plot_tag_activation",
    "select_tags",
    "sliding_windows",
    "stream_audio",
    "tag_file",
    "tag_waveform",
    "window_starts",
]

log = logging.getLogger(__name__)

DEFAULT_BLOCK_FRAMES = 1 << 17
"""Frames decoded per block (about 3 s at 44.1 kHz)."""


# ------------------------------------------------------------------------------------ results
def select_tags(
    scores: np.ndarray,
    tags: Sequence[str],
    top_k: int | None = None,
    threshold: float | Sequence[float] | np.ndarray | None = None,
) -> list[tuple[str, float]]:
    """Tags by score, best first: those scoring at least ``threshold``, at most ``top_k`` of them.

    Args:
        scores: ``[n_tags]`` probabilities.
        tags: Tag names in score order.
        top_k: Keep at most this many; ``None``: no limit.
        threshold: Keep only scores ``>= threshold``: one value, or ``[n_tags]`` per-tag
            thresholds (calibrated, :mod:`musictag.calibration`); ``None``: no limit.

    Returns:
        ``[(tag, score), ...]``, sorted by decreasing score (ties in tag order).
    """
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    if threshold is not None:
        keep = scores >= np.broadcast_to(np.asarray(threshold, dtype=np.float64), scores.shape)
        order = order[keep[order]]
    out = [(tags[i], float(scores[i])) for i in order]
    return out if top_k is None else out[: max(0, int(top_k))]


@dataclass
class TagResult:
    """Scores (and optionally embeddings) of one track.

    Attributes:
        scores: Track-level probabilities, ``[n_tags]`` (windows aggregated by ``aggregation``).
        window_scores: Per-window probabilities, ``[n_windows, n_tags]``.
        starts: Window start offsets in samples at ``sample_rate``, ``[n_windows]``.
        tags: Tag names in score order.
        sample_rate: Sample rate of the offsets (the model's).
        window: Window length in samples.
        labels: The selected tags, ``[(tag, score), ...]`` best first (``top_k``/``threshold`` of
            the call that made the result; every tag when neither was given).
        embedding: Track embedding, the mean of ``window_embeddings``, ``[dim]``; ``None`` unless
            embeddings were asked for.
        window_embeddings: Per-window embeddings, ``[n_windows, dim]``, or ``None``.
        source: The file (or name) that was tagged.
        aggregation: ``"mean"`` or ``"max"``.
    """

    scores: np.ndarray
    window_scores: np.ndarray
    starts: np.ndarray
    tags: list[str]
    sample_rate: int
    window: int = 0
    labels: list[tuple[str, float]] = field(default_factory=list)
    embedding: np.ndarray | None = None
    window_embeddings: np.ndarray | None = None
    source: str | None = None
    aggregation: str = "mean"

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring tags as ``(tag, score)``, best first."""
        return select_tags(self.scores, self.tags, top_k=k)

    def select(
        self, top_k: int | None = None, threshold: float | None = None
    ) -> list[tuple[str, float]]:
        """Tags scoring at least ``threshold``, at most ``top_k``, best first (:func:`select_tags`)."""
        return select_tags(self.scores, self.tags, top_k, threshold)

    @property
    def times(self) -> np.ndarray:
        """Window start times in seconds, ``[n_windows]``."""
        return self.starts / float(self.sample_rate)

    def to_dict(self, windows: bool = False, all_scores: bool = False) -> dict[str, Any]:
        """A JSON-ready summary.

        Args:
            windows: Include the window start times and per-window scores of every tag.
            all_scores: Include the track score of every tag (not only ``labels``).
        """
        out: dict[str, Any] = {
            "file": self.source,
            "tags": [{"tag": t, "score": round(s, 6)} for t, s in self.labels],
        }
        if all_scores:
            out["scores"] = {t: round(float(s), 6) for t, s in zip(self.tags, self.scores)}
        if windows:
            out["windows"] = {
                "start_s": [round(float(t), 4) for t in self.times],
                "length_s": round(self.window / float(self.sample_rate), 4),
                "tags": list(self.tags),
                "scores": np.round(self.window_scores, 6).tolist(),
            }
        return out


@dataclass
class WindowScores:
    """Scores of consecutive windows of one track, as :meth:`Inference.stream` produces them.

    Attributes:
        starts: Window start offsets in samples at the model's rate, ``[n]``.
        scores: Per-window probabilities, ``[n, n_tags]``.
    """

    starts: np.ndarray
    scores: np.ndarray


# ------------------------------------------------------------------------------ audio streams
def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Starts of windows of length ``window`` every ``hop`` samples covering the whole signal.

    A final window is aligned with the end of the signal so nothing is left out; a signal shorter
    than one window gives a single window at 0 (zero-padded).
    """
    if hop < 1 or window < 1:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def stream_audio(
    path: str | Path,
    sample_rate: int,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    *,
    strict: bool = False,
    truncations: list[Truncation] | None = None,
) -> Iterator[np.ndarray]:
    """Decode an audio file block by block, as mono float32 at ``sample_rate``.

    Channels are averaged and the audio is resampled with ``soxr.ResampleStream`` (quality
    ``"HQ"``), so the concatenated blocks equal :func:`musictag.audio.load_audio` exactly, while
    only one block is in memory at a time.

    Args:
        path: Any file soundfile reads (wav, flac, ogg, mp3, ...).
        sample_rate: Output rate in Hz.
        block_frames: Frames decoded per block, at the file's rate.
        strict: Refuse a file that decodes to less than its header promises.
        truncations: When given, a file that decodes to less than its header promises (and is
            used as far as it decodes) adds its :class:`~musictag.audio.Truncation` here.

    Yields:
        float32 ``[n]`` chunks (non-empty).

    Raises:
        AudioReadError: naming the file, when it is missing, unreadable, empty or non-finite
            (:class:`~musictag.audio.TruncatedAudioError` for a truncated file with ``strict``).
    """
    n_in = 0
    with AudioReader(path, strict=strict) as reader:
        in_rate = reader.sample_rate
        resampler = (
            soxr.ResampleStream(in_rate, sample_rate, 1, dtype="float32", quality="HQ")
            if in_rate != sample_rate
            else None
        )
        for block in reader.blocks(int(block_frames)):
            x = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if not np.isfinite(x).all():
                raise AudioReadError(f"{path}: non-finite samples (NaN or Inf)")
            n_in += x.shape[0]
            if resampler is not None:
                x = resampler.resample_chunk(x, last=False)
            if x.size:
                yield x
        if resampler is not None and n_in:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                yield tail
        if reader.truncation is not None and truncations is not None:
            truncations.append(reader.truncation)
    if n_in == 0:
        raise AudioReadError(f"{path}: zero-length audio")


def sliding_windows(
    chunks: Iterable[np.ndarray], window: int, hop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of audio chunks into windows, as :func:`window_starts` cuts the whole signal.

    At most about ``window + hop`` samples plus one chunk are buffered.

    Args:
        chunks: Consecutive pieces of one mono signal, each ``[n]``.
        window: Window length in samples.
        hop: Hop between window starts in samples.

    Yields:
        ``(start, samples [window])``; the last window is aligned with the end of the signal, a
        signal shorter than ``window`` gives one zero-padded window at 0.

    Raises:
        ValueError: if the stream holds no samples.
    """
    if hop < 1 or window < 1:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    buf = np.zeros(0, np.float32)  # samples [buf_start, total)
    buf_start = total = next_start = 0
    last: int | None = None
    pending: list[np.ndarray] = []
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not chunk.size:
            continue
        pending.append(chunk)
        total += chunk.size
        if total < next_start + window:
            continue
        buf = np.concatenate([buf, *pending])
        pending = []
        while next_start + window <= total:
            i = next_start - buf_start
            yield next_start, buf[i : i + window].copy()
            last, next_start = next_start, next_start + hop
        # keep what the next window, or an end-aligned last window, may still need
        keep = min(next_start, total - window)
        if keep > buf_start:
            buf, buf_start = buf[keep - buf_start :], keep
    if pending:
        buf = np.concatenate([buf, *pending])
    if total == 0:
        raise ValueError("zero-length audio")
    if last is None:
        yield 0, np.pad(buf, (0, window - buf.size))
    elif last + window < total:
        i = total - window - buf_start
        yield total - window, buf[i : i + window].copy()


def _crop_windows(waveform: np.ndarray, window: int, k: int) -> Iterator[tuple[int, np.ndarray]]:
    if waveform.size == 0:
        raise ValueError("zero-length audio")
    if waveform.size < window:
        waveform = np.pad(waveform, (0, window - waveform.size))
    for s in eval_crop_starts(waveform.size, window, k):
        yield s, waveform[s : s + window]


# ---------------------------------------------------------------------------------- inference
@dataclass
class _Track:
    key: Any
    source: str
    starts: list[int] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    error: Exception | None = None


class Inference:
    """Tag (and embed) whole tracks with a tagger: windows, batches, aggregation.

    Example:
        >>> inference = Inference(model, hop=model.crop_samples // 2, embeddings="last")
        >>> result = inference("song.mp3")          # TagResult
        >>> result.window_scores.shape, result.embedding.shape
        >>> for path, result in inference.iter_files(paths): ...   # AudioReadError for bad files

    Args:
        model: A tagger; it is put in eval mode.
        hop: Hop between sliding windows in samples at the model's rate; default: the model's
            input length (no overlap).
        crops: Cut each track into the ``crops`` evenly spaced crops of the evaluation protocol
            (:func:`musictag.tta.eval_crop_starts`) instead of sliding windows. The track is then
            decoded whole.
        batch_size: Windows per forward pass (windows of consecutive tracks share batches).
        aggregation: ``"mean"`` or ``"max"`` of the window probabilities; default: the model's
            ``tta`` setting.
        embeddings: ``None`` (scores only), ``"last"`` (the penultimate representation) or
            ``"all"`` (every stage pooled and concatenated; see :meth:`Tagger.embed`).
        top_k: Number of tags in :attr:`TagResult.labels`; default: all.
        threshold: Minimum score of the tags in :attr:`TagResult.labels`: one value, or
            ``[n_tags]`` per-tag thresholds.
        device: Device to run on; default: the model's.
        block_frames: Frames decoded per block.
        strict: Refuse (as an :class:`~musictag.audio.AudioReadError`) a file that decodes to
            less audio than its header promises; by default it is tagged from what decodes.

    Attributes:
        truncated: The :class:`~musictag.audio.Truncation` of every file tagged so far that
            decoded to less than its header promises (used as far as it decodes).
    """

    def __init__(
        self,
        model: Tagger,
        *,
        hop: int | None = None,
        crops: int | None = None,
        batch_size: int = 16,
        aggregation: str | None = None,
        embeddings: str | None = None,
        top_k: int | None = None,
        threshold: float | Sequence[float] | np.ndarray | None = None,
        device: str | torch.device | None = None,
        block_frames: int = DEFAULT_BLOCK_FRAMES,
        strict: bool = False,
    ) -> None:
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.window = int(model.crop_samples)
        self.hop = int(hop) if hop else self.window
        if self.hop < 1:
            raise ValueError(f"hop must be a positive number of samples, got {hop}")
        if crops is not None and int(crops) < 1:
            raise ValueError(f"crops must be at least 1, got {crops}")
        self.crops = int(crops) if crops is not None else None
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.aggregation = aggregation or str(model.hparams.get("tta", "mean"))
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {self.aggregation!r}; choose one of {AGGREGATIONS}"
            )
        if embeddings not in (None, "last", "all"):
            raise ValueError(f"embeddings must be None, 'last' or 'all', got {embeddings!r}")
        self.embeddings = embeddings
        self.top_k = top_k
        if threshold is not None and np.ndim(threshold) and np.size(threshold) != len(model.tags):
            raise ValueError(
                f"got {np.size(threshold)} per-tag thresholds for a model of {len(model.tags)} tags"
            )
        self.threshold = threshold
        self.block_frames = int(block_frames)
        self.sample_rate = int(model.sample_rate)
        self.strict = strict
        self.truncated: list[Truncation] = []

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -------------------------------------------------------------- public
    def __call__(
        self, source: str | Path | np.ndarray | torch.Tensor, sample_rate: int | None = None
    ) -> TagResult:
        """Tag one file, or one waveform.

        Args:
            source: An audio file, or a waveform (``[samples]`` or ``[samples, channels]``).
            sample_rate: Rate of a waveform source; default: the model's.

        Raises:
            AudioReadError: if the file cannot be used.
        """
        if not isinstance(source, (str, Path)):
            source = (source, sample_rate or self.sample_rate)
        [(_, result)] = list(self.iter_sources([source]))
        if isinstance(result, Exception):
            raise result
        return result

    def iter_files(
        self, paths: Iterable[str | Path]
    ) -> Iterator[tuple[Path, TagResult | AudioReadError]]:
        """Tag many files, in order, sharing batches across files.

        Yields:
            ``(path, result)``; ``result`` is the :class:`~musictag.audio.AudioReadError` of a
            file that could not be read (the others carry on).
        """
        yield from self.iter_sources(Path(p) for p in paths)  # type: ignore[misc]

    def iter_sources(self, sources: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Tag files (paths) and waveforms (``(waveform, sample_rate)`` tuples), in order.

        Yields:
            ``(source, TagResult | AudioReadError)``.
        """
        yield from self.iter_keyed((s, s) for s in sources)

    def iter_keyed(self, pairs: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        """Like :meth:`iter_sources`, for ``(key, source)`` pairs; yields ``(key, result)``."""
        yield from self._run((key, self._window_factory(s)) for key, s in pairs)

    def stream(self, source: str | Path | tuple[Any, int]) -> Iterator[WindowScores | TagResult]:
        """Tag one file (or ``(waveform, sample_rate)``) and report each batch as it is scored.

        For live displays: the scores of the first windows are available while the rest of the
        file is still being decoded.

        Yields:
            A :class:`WindowScores` per scored batch (``batch_size`` windows, fewer for the
            last), in order; then the :class:`TagResult` of the whole track.

        Raises:
            AudioReadError: if the file cannot be used (possibly after some windows were yielded).
        """
        name, make_windows = self._window_factory(source)
        track = _Track(key=source, source=name)
        pending: list[tuple[_Track, int, np.ndarray]] = []

        def flush() -> WindowScores:
            done = len(track.starts)
            self._flush(pending)
            return WindowScores(
                np.asarray(track.starts[done:], dtype=np.int64), np.stack(track.scores[done:])
            )

        for start, w in _reading(track, make_windows):
            pending.append((track, start, w))
            if len(pending) >= self.batch_size:
                yield flush()
        if track.error is not None:
            raise track.error
        if pending:
            yield flush()
        yield self._finish(track)  # type: ignore[misc]

    # ------------------------------------------------------------ internals
    def _window_factory(self, source: Any) -> tuple[str, Callable[[], Iterable]]:
        if isinstance(source, (str, Path)):
            name = str(source)
            if self.crops is None:
                return name, lambda: sliding_windows(self._stream(source), self.window, self.hop)

            def whole() -> Iterable:
                chunks = list(self._stream(source))
                return _crop_windows(np.concatenate(chunks), self.window, self.crops or 1)

            return name, whole
        wave, rate, *rest = source
        name = str(rest[0]) if rest else "<waveform>"
        if isinstance(wave, AudioReadError):  # a damaged shard track (iter_shard_tracks)

            def failed() -> Iterable:
                raise wave

            return name, failed

        def from_array() -> Iterable:
            x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else wave
            try:
                x = to_mono_resampled(np.asarray(x), int(rate), self.sample_rate)
            except ValueError as e:
                raise AudioReadError(f"{name}: {e}") from e
            if self.crops is not None:
                return _crop_windows(x, self.window, self.crops)
            return sliding_windows([x], self.window, self.hop)

        return name, from_array

    def _stream(self, path: str | Path) -> Iterator[np.ndarray]:
        return stream_audio(
            path,
            self.sample_rate,
            self.block_frames,
            strict=self.strict,
            truncations=self.truncated,
        )

    def _run(self, items: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        pending: list[tuple[_Track, int, np.ndarray]] = []
        done: deque[_Track] = deque()
        for key, (name, make_windows) in items:
            track = _Track(key=key, source=name)
            for start, w in _reading(track, make_windows):
                pending.append((track, start, w))
                if len(pending) >= self.batch_size:
                    self._flush(pending)
            done.append(track)
            waiting = {id(t) for t, _, _ in pending}
            while done and id(done[0]) not in waiting:
                t = done.popleft()
                yield t.key, self._finish(t)
        self._flush(pending)
        while done:
            t = done.popleft()
            yield t.key, self._finish(t)

    @torch.inference_mode()
    def _flush(self, pending: list[tuple[_Track, int, np.ndarray]]) -> None:
        if not pending:
            return
        x = torch.from_numpy(np.stack([w for _, _, w in pending])).to(self.device)
        scores, emb = self._forward(x)
        for i, (track, start, _) in enumerate(pending):
            track.starts.append(start)
            track.scores.append(scores[i])
            if emb is not None:
                track.embeddings.append(emb[i])
        pending.clear()

    def _forward(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        model = self.model
        if self.embeddings is None:
            return model.scores(model(x)).float().cpu().numpy(), None
        emb = model.embed(x, self.embeddings)
        if _plain_forward(model):
            # the embedding is the head's input, so one pass gives both (dropout is off in eval)
            logits = model.head(emb[:, -model.backbone.embed_dim :])
        else:
            logits = model(x)
        return model.scores(logits).float().cpu().numpy(), emb.float().cpu().numpy()

    def _finish(self, track: _Track) -> TagResult | AudioReadError:
        if track.error is not None:
            return track.error  # type: ignore[return-value]
        window_scores = np.stack(track.scores).astype(np.float32)
        scores = aggregate(torch.from_numpy(window_scores).unsqueeze(0), self.aggregation)[0]
        scores_np = scores.numpy()
        window_emb = np.stack(track.embeddings).astype(np.float32) if track.embeddings else None
        return TagResult(
            scores=scores_np,
            window_scores=window_scores,
            starts=np.asarray(track.starts, dtype=np.int64),
            tags=list(self.model.tags),
            sample_rate=self.sample_rate,
            window=self.window,
            labels=select_tags(scores_np, self.model.tags, self.top_k, self.threshold),
            embedding=window_emb.mean(axis=0) if window_emb is not None else None,
            window_embeddings=window_emb,
            source=track.source,
            aggregation=self.aggregation,
        )


def _reading(track: _Track, make_windows: Callable[[], Iterable]) -> Iterator[tuple[int, Any]]:
    """The track's windows; a read error ends them and is kept on the track (model errors are
    not caught here: they surface from the forward pass as they are)."""
    try:
        yield from make_windows()
    except (AudioReadError, ValueError) as e:
        track.error = e if isinstance(e, AudioReadError) else AudioReadError(f"{track.source}: {e}")


def _plain_forward(model: Tagger) -> bool:
    from .tagger import Tagger

    return type(model).forward is Tagger.forward


# -------------------------------------------------------------------------- functional API
def tag_waveform(
    model: Tagger,
    waveform: np.ndarray | torch.Tensor,
    hop: int | None = None,
    batch_size: int = 16,
    how: str | None = None,
    *,
    sample_rate: int | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
    crops: int | None = None,
    embeddings: str | None = None,
) -> TagResult:
    """Tag one waveform with sliding windows (or ``crops`` evenly spaced crops).

    Args:
        model: A tagger (put in eval mode by this function).
        waveform: ``[samples]`` or ``[samples, channels]`` at ``sample_rate``.
        hop: Hop between windows in samples at the model's rate; default: the window length.
        batch_size: Windows per forward pass.
        how: Aggregation of window scores, ``"mean"`` or ``"max"``; default: the model's ``tta``.
        sample_rate: Rate of ``waveform``; default: the model's (no resampling).
        top_k: Tags in ``labels``; default: all.
        threshold: Minimum score of the tags in ``labels``.
        crops: Use the ``K`` evaluation crops instead of sliding windows.
        embeddings: ``None``, ``"last"`` or ``"all"``.

    Returns:
        A :class:`TagResult`.
    """
    inference = Inference(
        model,
        hop=hop,
        crops=crops,
        batch_size=batch_size,
        aggregation=how,
        embeddings=embeddings,
        top_k=top_k,
        threshold=threshold,
    )
    return inference(waveform, sample_rate)


def tag_file(
    model: Tagger,
    path: str | Path,
    hop: int | None = None,
    batch_size: int = 16,
    how: str | None = None,
    *,
    top_k: int | None = None,
    threshold: float | None = None,
    crops: int | None = None,
    embeddings: str | None = None,
) -> TagResult:
    """Tag an audio file of any length and format, streamed (decoded, downmixed, resampled).

    Args:
        model: A tagger.
        path: Audio file.
        hop: Hop between windows in samples at the model's rate; default: the window length.
        batch_size: Windows per forward pass.
        how: ``"mean"`` or ``"max"`` aggregation; default: the model's ``tta``.
        top_k: Tags in ``labels``; default: all.
        threshold: Minimum score of the tags in ``labels``.
        crops: Use the ``K`` evaluation crops instead of sliding windows (decodes the whole file).
        embeddings: ``None``, ``"last"`` or ``"all"``.

    Raises:
        AudioReadError: naming the file, when it cannot be used.
    """
    inference = Inference(
        model,
        hop=hop,
        crops=crops,
        batch_size=batch_size,
        aggregation=how,
        embeddings=embeddings,
        top_k=top_k,
        threshold=threshold,
    )
    return inference(path)


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


# ------------------------------------------------------------------------------- collections
def collect_audio_files(
    inputs: Iterable[str | Path], extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[Path]:
    """Expand inputs into audio files: files as given, folders recursively, ``@list.txt`` lists.

    A list file holds one path per line (blank lines and ``#`` comments skipped); relative paths
    are relative to the list file's folder. Files named directly are kept whatever their
    extension (and even if missing, so that the caller reports them); folders contribute files
    whose extension is in ``extensions`` (case-insensitive), sorted.

    Args:
        inputs: Paths, folders and ``@list`` files.
        extensions: Extensions collected from folders, without the dot.

    Returns:
        The files, in input order, without duplicates.

    Raises:
        FileNotFoundError: for a missing ``@list`` file.
    """
    exts = {e.lower().lstrip(".") for e in extensions}
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    for raw in inputs:
        s = str(raw)
        if s.startswith("@"):
            list_path = Path(s[1:])
            if not list_path.is_file():
                raise FileNotFoundError(f"file list not found: {list_path} (from argument {s!r})")
            for line in list_path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                p = Path(line)
                add(p if p.is_absolute() else list_path.parent / p)
        elif Path(s).is_dir():
            found = [
                p
                for p in Path(s).rglob("*")
                if p.is_file() and p.suffix.lower().lstrip(".") in exts
            ]
            for p in sorted(found):
                add(p)
        else:
            add(Path(s))
    return out


def is_shard_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of musictag shards (it holds ``manifest.json``)."""
    from .data.shards import MANIFEST_NAME

    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()


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


# ----------------------------------------------------------------------------------- plotting
def plot_tag_activation(
    result: TagResult,
    path: str | Path,
    top_k: int = 5,
    tags: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw per-window tag probabilities along the track (a line per tag) and save a PNG.

    Args:
        result: A :class:`TagResult` (from sliding windows).
        path: Output image (``.png``; any format matplotlib writes).
        top_k: Draw the ``top_k`` tags with the highest track score.
        tags: Draw these tags instead.
        title: Figure title; default: the file name.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    if tags is None:
        names = [t for t, _ in result.top(top_k)]
    else:
        unknown = [t for t in tags if t not in result.tags]
        if unknown:
            raise ValueError(f"tags not in the model's vocabulary: {unknown}")
        names = list(tags)
    idx = [result.tags.index(t) for t in names]
    half = result.window / (2.0 * result.sample_rate)
    centres = result.times + half
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    for i, name in zip(idx, names):
        ys = result.window_scores[:, i]
        if len(ys) == 1:
            ax.plot([centres[0] - half, centres[0] + half], [ys[0], ys[0]], label=name)
        else:
            ax.plot(centres, ys, marker=".", label=f"{name} ({result.scores[i]:.2f})")
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title(title or (Path(result.source).name if result.source else "tag activation"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
