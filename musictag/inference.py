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
from dataclasses import dataclass, field
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
from .data.shards import iter_shard_tracks
from .results import TagResult, WindowScores, select_tags
from .tta import AGGREGATIONS, aggregate, eval_crop_starts, extract_crops, sliding_windows

if TYPE_CHECKING:
    from .tagger import Tagger

__all__ = ["Inference", "iter_shard_tracks", "tag_file", "tag_waveform"]

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


