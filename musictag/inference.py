"""Tagging and embedding audio of any length: streamed windows, batched, aggregated per track.

The sliding-window ``Inference`` of pyannote-audio, for taggers. A file is decoded in blocks
(:func:`musictag.audio.stream_audio`); windows of the model's input length are cut every ``hop``
samples as the audio arrives (:func:`musictag.tta.sliding_windows`), or the ``K`` evenly spaced
crops of the evaluation protocol are cut from the whole track (:func:`musictag.tta.extract_crops`);
windows of consecutive files share batches. Only a few windows, the per-window scores and the
per-window embeddings are ever held, so memory does not grow with the length of the file. Track
scores aggregate the window probabilities (mean or max) into a
:class:`~musictag.results.TagResult`; track embeddings are the mean of the window embeddings.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .audio import (
    DEFAULT_BLOCK_FRAMES,
    AudioReadError,
    Truncation,
    stream_audio,
    to_mono_resampled,
)
from .autotune import InferenceSettings, torch_threads, tuned_settings
from .data.shards import iter_shard_tracks
from .optimize import optimized_copy
from .prefetch import Prefetcher, default_prefetch
from .results import TagResult, WindowScores, select_tags
from .tta import AGGREGATIONS, aggregate, eval_crop_starts, extract_crops, sliding_windows

if TYPE_CHECKING:
    from .tagger import Tagger

__all__ = ["Inference", "default_prefetch", "iter_shard_tracks", "tag_file", "tag_waveform"]

log = logging.getLogger(__name__)


def _crop_windows(waveform: np.ndarray, window: int, k: int) -> Iterable[tuple[int, np.ndarray]]:
    """The ``k`` evaluation crops of a track as ``(start, crop)`` pairs."""
    return zip(eval_crop_starts(waveform.size, window, k), extract_crops(waveform, window, k))


# ---------------------------------------------------------------------------------- inference
@dataclass
class _Track:
    key: Any
    source: str
    starts: list[int] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    error: Exception | None = None
    truncations: list[Truncation] = field(default_factory=list)


class Inference:
    """Tag (and embed) whole tracks with a tagger: windows, batches, aggregation.

    Files are decoded, downmixed and resampled on ``prefetch`` background threads while the
    model scores the windows of earlier files; the results are the same as decoding in turn,
    in the same order. The batch size and thread count are measured once per model and device
    and cached (:mod:`musictag.autotune`) unless given.

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
        batch_size: Windows per forward pass (windows of consecutive tracks share batches);
            default: the fastest on this device, measured once and cached
            (:func:`musictag.autotune.tuned_settings`).
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
        threads: torch threads for the forward passes on CPU; default: measured with the batch
            size when that is not given either, else torch's setting.
        prefetch: Files decoded ahead on background threads; ``0`` decodes in the calling
            thread, in turn; default: :func:`default_prefetch`.
        pad_short: Zero-pad a track shorter than one window to the window length. By default
            such a track is scored at its own length when the model accepts that input, except
            for backbones that declare ``fixed_input_length`` (the FCN, whose pools are sized to
            its 29-s input: padding scores a short clip closer to its longer context).
        optimize: Run an optimised copy of the model
            (:func:`musictag.optimize.optimize_for_inference`: BatchNorm folded into the
            convolutions, channels_last where it pays), checked against the model to 1e-5 on
            its logits; the model is used as it is if the copy cannot be made. ``False`` runs
            the model itself (bit-for-bit the scores of ``model(x)``).

    Attributes:
        truncated: The :class:`~musictag.audio.Truncation` of every file tagged so far that
            decoded to less than its header promises (used as far as it decodes), in file order.
    """

    def __init__(
        self,
        model: Tagger,
        *,
        hop: int | None = None,
        crops: int | None = None,
        batch_size: int | None = None,
        aggregation: str | None = None,
        embeddings: str | None = None,
        top_k: int | None = None,
        threshold: float | Sequence[float] | np.ndarray | None = None,
        device: str | torch.device | None = None,
        block_frames: int = DEFAULT_BLOCK_FRAMES,
        strict: bool = False,
        threads: int | None = None,
        prefetch: int | None = None,
        pad_short: bool | None = None,
        optimize: bool = True,
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
        for name, value in (("batch_size", batch_size), ("threads", threads)):
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if prefetch is not None and int(prefetch) < 0:
            raise ValueError(f"prefetch must be 0 or more, got {prefetch}")
        self._batch_size = int(batch_size) if batch_size is not None else None
        self._threads = int(threads) if threads is not None else None
        self._settings: InferenceSettings | None = None
        self.prefetch = int(prefetch) if prefetch is not None else default_prefetch(self.device)
        if pad_short is None:
            pad_short = bool(getattr(model.backbone, "fixed_input_length", False))
        self.pad_short = bool(pad_short)
        self.optimize = bool(optimize)
        self._net: Tagger | None = None
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

    @property
    def settings(self) -> InferenceSettings:
        """The batch size and threads used: those given, else measured once and cached."""
        if self._settings is None:
            if self._batch_size is not None:
                self._settings = InferenceSettings(self._batch_size, self._threads)
            else:
                tuned = tuned_settings(
                    self.model,
                    self._forward,
                    self.window,
                    self.device,
                    extra=f"optimize={self.optimize}",
                )
                threads = self._threads if self._threads is not None else tuned.threads
                self._settings = replace(tuned, threads=threads)
        return self._settings

    @property
    def batch_size(self) -> int:
        """Windows per forward pass (:attr:`settings`)."""
        return self.settings.batch_size

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
        file is still being decoded (in the calling thread).

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
        self.truncated.extend(track.truncations)
        if track.error is not None:
            raise track.error
        if pending:
            yield flush()
        yield self._finish(track)  # type: ignore[misc]

    # ------------------------------------------------------------ internals
    def _window_factory(self, source: Any) -> tuple[str, Callable[[_Track], Iterable]]:
        """The source's name and a function that cuts its windows (decoding it), given its
        track (which collects the file's truncation)."""
        window = self.window
        if isinstance(source, (str, Path)):
            name = str(source)
            if self.crops is None:

                def sliding(track: _Track) -> Iterator[tuple[int, np.ndarray]]:
                    total = 0

                    def counted() -> Iterator[np.ndarray]:
                        nonlocal total
                        for chunk in self._stream(source, track.truncations):
                            total += chunk.size
                            yield chunk

                    # a short track's one padded window comes after the stream ends: total is known
                    for start, w in sliding_windows(counted(), window, self.hop):
                        yield start, self._unpadded(w, total)

                return name, sliding

            def whole(track: _Track) -> Iterator[tuple[int, np.ndarray]]:
                x = np.concatenate(list(self._stream(source, track.truncations)))
                return ((s, self._unpadded(w, x.size)) for s, w in _crop_windows(x, window, k))

            k = self.crops
            return name, whole
        wave, rate, *rest = source
        name = str(rest[0]) if rest else "<waveform>"
        if isinstance(wave, AudioReadError):  # a damaged shard track (iter_shard_tracks)

            def failed(track: _Track) -> Iterable:
                raise wave

            return name, failed

        def from_array(track: _Track) -> Iterator[tuple[int, np.ndarray]]:
            x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else wave
            try:
                x = to_mono_resampled(np.asarray(x), int(rate), self.sample_rate)
            except ValueError as e:
                raise AudioReadError(f"{name}: {e}") from e
            if self.crops is not None:
                windows = _crop_windows(x, window, self.crops)
            else:
                windows = sliding_windows([x], window, self.hop)
            return ((s, self._unpadded(w, x.size)) for s, w in windows)

        return name, from_array

    def _unpadded(self, w: np.ndarray, n: int) -> np.ndarray:
        """The window of a track of ``n`` samples: without its zero padding when the track is
        shorter than a window (unless ``pad_short``)."""
        return w[:n] if n < w.shape[0] and not self.pad_short else w

    def _stream(self, path: str | Path, truncations: list[Truncation]) -> Iterator[np.ndarray]:
        return stream_audio(
            path,
            self.sample_rate,
            self.block_frames,
            strict=self.strict,
            truncations=truncations,
        )

    def _run(self, items: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        tracks = ((_Track(key=key, source=name), make) for key, (name, make) in items)
        if not self.prefetch:
            yield from self._scored((t, _reading(t, make)) for t, make in tracks)
            return
        jobs = ((t, partial(_reading, t, make)) for t, make in tracks)
        ahead = Prefetcher(jobs, self.prefetch, depth=2 * self.batch_size)
        try:
            yield from self._scored(ahead)
        finally:
            ahead.close()

    def _scored(self, tracks: Iterable[tuple[_Track, Iterable]]) -> Iterator[tuple[Any, Any]]:
        """Batch the windows of tracks in order, score them, and yield each finished track."""
        pending: list[tuple[_Track, int, np.ndarray]] = []
        done: deque[_Track] = deque()
        batch_size = self.batch_size
        for track, windows in tracks:
            for start, w in windows:
                pending.append((track, start, w))
                if len(pending) >= batch_size:
                    self._flush(pending)
            self.truncated.extend(track.truncations)
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
        # full windows share a pass; a short track's window (not padded) runs at its length
        by_length: dict[int, list[int]] = {}
        for i, (_, _, w) in enumerate(pending):
            by_length.setdefault(w.shape[0], []).append(i)
        out: list[tuple[np.ndarray, np.ndarray | None]] = [None] * len(pending)  # type: ignore[list-item]
        with torch_threads(self.settings.threads):
            for length, idx in by_length.items():
                x = torch.from_numpy(np.stack([pending[i][2] for i in idx])).to(self.device)
                scores, emb = self._forward(x) if length == self.window else self._forward_short(x)
                for j, i in enumerate(idx):
                    out[i] = (scores[j], None if emb is None else emb[j])
        for (track, start, _), (score, emb) in zip(pending, out):
            track.starts.append(start)
            track.scores.append(score)
            if emb is not None:
                track.embeddings.append(emb)
        pending.clear()

    def _forward_short(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores of windows shorter than the model's input; padded if the model refuses them."""
        try:
            return self._forward(x)
        except (RuntimeError, ValueError) as e:
            log.debug("the model refuses %d-sample input (%s): zero-padding it", x.shape[1], e)
            return self._forward(torch.nn.functional.pad(x, (0, self.window - x.shape[1])))

    def _runner(self) -> Tagger:
        """The model the forward passes run: the optimised copy, or the model."""
        if self._net is None:
            self._net = optimized_copy(self.model, self.window) if self.optimize else self.model
        return self._net

    def _forward(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        model = self._runner()
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


def _reading(
    track: _Track, make_windows: Callable[[_Track], Iterable]
) -> Iterator[tuple[int, Any]]:
    """The track's windows; a read error ends them and is kept on the track (model errors are
    not caught here: they surface from the forward pass as they are)."""
    try:
        yield from make_windows(track)
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
    batch_size: int | None = None,
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
        batch_size: Windows per forward pass; default: measured (:class:`Inference`).
        how: Aggregation of window scores, ``"mean"`` or ``"max"``; default: the model's ``tta``.
        sample_rate: Rate of ``waveform``; default: the model's (no resampling).
        top_k: Tags in ``labels``; default: all.
        threshold: Minimum score of the tags in ``labels``.
        crops: Use the ``K`` evaluation crops instead of sliding windows.
        embeddings: ``None``, ``"last"`` or ``"all"``.

    Returns:
        A :class:`TagResult`.
    """
    options = {"crops": crops, "embeddings": embeddings, "top_k": top_k, "threshold": threshold}
    inference = Inference(model, hop=hop, batch_size=batch_size, aggregation=how, **options)
    return inference(waveform, sample_rate)


def tag_file(
    model: Tagger,
    path: str | Path,
    hop: int | None = None,
    batch_size: int | None = None,
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
        batch_size: Windows per forward pass; default: measured (:class:`Inference`).
        how: ``"mean"`` or ``"max"`` aggregation; default: the model's ``tta``.
        top_k: Tags in ``labels``; default: all.
        threshold: Minimum score of the tags in ``labels``.
        crops: Use the ``K`` evaluation crops instead of sliding windows (decodes the whole file).
        embeddings: ``None``, ``"last"`` or ``"all"``.

    Raises:
        AudioReadError: naming the file, when it cannot be used.
    """
    options = {"crops": crops, "embeddings": embeddings, "top_k": top_k, "threshold": threshold}
    inference = Inference(model, hop=hop, batch_size=batch_size, aggregation=how, **options)
    return inference(path)
