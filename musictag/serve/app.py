"""The live tagging web app: a page, its static assets and a JSON API over one loaded tagger.

Built on `Starlette <https://www.starlette.io>`_ (ASGI, served by uvicorn): small, well kept,
with streaming responses and static files built in and no client-side code of its own (FastAPI's
documentation page loads its scripts from a CDN), so every byte the browser gets is in
``musictag/serve/static``. Scoring reuses
:meth:`musictag.inference.Inference.stream`; nothing here computes features or runs the model
by other means. The API is described in ``docs/serve.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..audio import AudioReadError
from ..inference import Inference
from ..results import WindowScores

if TYPE_CHECKING:
    from ..search import TrackIndex
    from ..tagger import Tagger

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "create_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = 200.0
NDJSON = "application/x-ndjson"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def create_app(
    model: Tagger,
    index: TrackIndex | None = None,
    *,
    hop: int | None = None,
    batch_size: int = 8,
    top_k: int = 10,
    n_similar: int = 10,
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20),
    checkpoint_name: str | None = None,
) -> Starlette:
    """The live tagging app for one tagger (and optionally a track index for similar tracks).

    Args:
        model: A tagger (put in eval mode).
        index: Tracks to search for the nearest neighbours of each upload; its embeddings must
            come from ``model`` (same size, see ``musictag index``).
        hop: Hop between windows in samples at the model's rate; default: the hop the index
            was built with, else the model's input length.
        batch_size: Windows per forward pass, and so per streamed ``windows`` event.
        top_k: Default number of top tags in a result.
        n_similar: Default number of similar tracks in a result.
        max_upload_bytes: Larger uploads are refused with status 413.
        checkpoint_name: Shown on the page and in ``/api/info``.

    Returns:
        A Starlette application (run it with ``uvicorn.run(app)``).

    Raises:
        ValueError: if the index's embeddings do not have the model's embedding size.
    """
    model.eval()
    layers = _check_index(model, index) if index is not None else None
    if hop is None and index is not None:
        hop = index.set.meta.get("protocol", {}).get("hop")
    window = int(model.crop_samples)
    hop = int(hop) if hop else window
    rate = int(model.sample_rate)
    # validates hop and batch size now rather than at the first upload; reads the model's tta
    aggregation = Inference(model, hop=hop, batch_size=batch_size).aggregation
    tags = list(model.tags)
    uploads = Path(tempfile.mkdtemp(prefix="musictag-serve-"))
    info = {
        "model": {
            "class": type(model).__name__,
            "checkpoint": checkpoint_name,
            "tags": tags,
            "sample_rate": rate,
            "window_s": round(window / rate, 4),
            "hop_s": round(hop / rate, 4),
            "aggregation": aggregation,
        },
        "index": None
        if index is None
        else {
            "tracks": len(index),
            "dim": index.set.dim,
            "backend": index.backend,
            "layers": layers,
        },
        "defaults": {"top_k": top_k, "similar": n_similar if index is not None else 0},
        "max_upload_bytes": int(max_upload_bytes),
    }

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def api_info(request: Request) -> Response:
        return JSONResponse(info)

    async def api_analyze(request: Request) -> Response:
        name = Path(request.query_params.get("filename") or "upload").name or "upload"
        try:
            k = _int_param(request, "top_k", top_k, 1, len(tags))
            n_sim = _int_param(request, "similar", info["defaults"]["similar"], 0, 1000)
        except ValueError as e:
            return _error(400, name, str(e))
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes:
            return _error(413, name, _too_large(max_upload_bytes))
        folder = uploads / uuid.uuid4().hex
        folder.mkdir()
        # a plain name that keeps the suffix (some formats are known by it), never "." or ".."
        path = folder / f"upload_{_UNSAFE.sub('_', name)[-120:]}"
        try:
            duration = await _save_upload(request, path, max_upload_bytes)
        except _Refused as e:
            shutil.rmtree(folder, ignore_errors=True)
            return _error(e.status, name, str(e))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        inference = Inference(
            model, hop=hop, batch_size=batch_size, top_k=k, embeddings=layers if n_sim else None
        )
        events = _events(inference, index, path, name, duration, n_sim, info["model"])
        return StreamingResponse(_cleaned(events, folder), media_type=NDJSON)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            shutil.rmtree(uploads, ignore_errors=True)

    routes = [
        Route("/", page),
        Route("/api/info", api_info),
        Route("/api/analyze", api_analyze, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.upload_dir = uploads
    return app


# ---------------------------------------------------------------------------------- helpers
def _check_index(model: Tagger, index: TrackIndex) -> str:
    """The index's embedding layers, after checking the model makes embeddings of its size."""
    layers = str(index.set.meta.get("layers", "last"))
    with torch.inference_mode():
        x = torch.zeros(1, int(model.crop_samples), device=next(model.parameters()).device)
        dim = int(model.embed(x, layers).shape[-1])
    if dim != index.set.dim:
        raise ValueError(
            f"the index holds {index.set.dim}-d embeddings but the model makes {dim}-d ones "
            f"(layers={layers!r}): build the index with this checkpoint (`musictag index`)"
        )
    return layers


def _int_param(request: Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{key} must be an integer, got {raw!r}") from None
    return max(low, min(high, value))


def _error(status: int, name: str, message: str) -> JSONResponse:
    return JSONResponse({"file": name, "error": f"{name}: {message}"}, status_code=status)


def _too_large(limit: int) -> str:
    return (
        f"larger than the upload limit of {limit / 2**20:.0f} MB (musictag serve --max-upload-mb)"
    )


class _Refused(Exception):
    """An upload the API does not analyse: the HTTP status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _save_upload(request: Request, path: Path, limit: int) -> float:
    """Write the request body to ``path`` and check that it is audio.

    Returns:
        The duration of the audio in seconds.

    Raises:
        _Refused: for an upload over ``limit`` bytes, an empty or interrupted one, or a file
            that cannot be decoded.
    """
    size = 0
    try:
        with open(path, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Refused(413, _too_large(limit))
                f.write(chunk)
    except ClientDisconnect:
        raise _Refused(400, "the upload was interrupted") from None
    if size == 0:
        raise _Refused(400, "the upload is empty (send the file as the request body)")
    problem = await run_in_threadpool(_probe, path)
    if isinstance(problem, str):
        raise _Refused(415, f"not an audio file that can be decoded ({problem})")
    return problem


def _probe(path: Path) -> float | str:
    """The file's duration in seconds, or why it cannot be decoded."""
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as e:
        return e.error_string.rstrip(".")
    except (RuntimeError, OSError, TypeError) as e:
        return str(e).replace(str(path), "upload")
    if info.frames <= 0 or info.samplerate <= 0:
        return "no audio frames"
    return info.frames / info.samplerate


def _line(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False) + "\n"


def _events(
    inference: Inference,
    index: TrackIndex | None,
    path: Path,
    name: str,
    duration: float,
    n_similar: int,
    model_info: dict[str, Any],
) -> Iterator[str]:
    """The NDJSON lines of one analysis: start, windows..., then result (or error)."""
    rate = inference.sample_rate
    t0 = time.perf_counter()
    yield _line(
        {
            "type": "start",
            "file": name,
            "duration_s": round(duration, 4),
            "sample_rate": rate,
            "window_s": model_info["window_s"],
            "hop_s": model_info["hop_s"],
            "tags": model_info["tags"],
        }
    )
    try:
        result = None
        for item in inference.stream(path):
            if isinstance(item, WindowScores):
                yield _line(
                    {
                        "type": "windows",
                        "start_s": [round(float(s) / rate, 4) for s in item.starts],
                        "scores": item.scores.astype(np.float64).round(5).tolist(),
                    }
                )
            else:
                result = item
        assert result is not None
        result.source = name
        doc: dict[str, Any] = {"type": "result", **result.to_dict(all_scores=True)}
        doc["windows"] = len(result.starts)
        doc["aggregation"] = result.aggregation
        if index is not None and n_similar and result.embedding is not None:
            [hits] = index.search(result.embedding, top_k=n_similar)
            doc["similar"] = [
                {"rank": h.rank, "score": round(h.score, 6), "row": h.index, **h.track}
                for h in hits
            ]
        # a cut-off upload is analysed as far as it decodes (as `predict` does) and says so
        cut = inference.truncated  # this request's Inference: this upload only
        if cut:
            doc["truncated"] = {
                "decoded_s": round(cut[0].decoded_s, 3),
                "expected_s": round(cut[0].expected_s, 3),
                "detail": cut[0].detail.replace(str(path), name),
            }
        doc["seconds"] = round(time.perf_counter() - t0, 3)
        yield _line(doc)
    except AudioReadError as e:
        yield _line({"type": "error", "file": name, "error": str(e).replace(str(path), name)})
    except Exception:  # noqa: BLE001 - the stream has started: report in it, log the trace
        log.exception("analysis of %s failed", name)
        yield _line({"type": "error", "file": name, "error": f"{name}: internal error (see log)"})


async def _cleaned(lines: Iterator[str], folder: Path) -> AsyncIterator[str]:
    """Stream ``lines`` (made in a worker thread), then remove the upload folder, also when the
    client goes away mid-stream."""
    try:
        while True:
            line = await run_in_threadpool(next, lines, None)
            if line is None:
                break
            yield line
    finally:
        # a generator still running in its thread (client gone mid-batch) cannot be closed here;
        # it then fails on the removed file and ends
        with contextlib.suppress(ValueError):
            lines.close()  # type: ignore[attr-defined]
        shutil.rmtree(folder, ignore_errors=True)
