"""``musictag serve``: a local web page that tags an audio file live, and its JSON API.

Needs the ``serve`` extra (``pip install 'musictag[serve]'``: Starlette and uvicorn). Every asset
the page uses is in ``musictag/serve/static`` (no CDN), so it works offline. See docs/serve.md.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

try:
    import uvicorn

    from .app import DEFAULT_MAX_UPLOAD_MB, create_app
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"musictag serve needs the 'serve' extra ({e.name} is missing): "
        "pip install 'musictag[serve]'"
    ) from e

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "create_app", "load_app", "run"]

log = logging.getLogger(__name__)


def load_app(
    checkpoint: str | Path,
    index: str | Path | None = None,
    *,
    hop_seconds: float | None = None,
    batch_size: int = 8,
    top_k: int = 10,
    n_similar: int = 10,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    device: str | None = None,
) -> Any:
    """The app of :func:`create_app` for a checkpoint file and an index folder.

    Args:
        checkpoint: A musictag checkpoint (``.ckpt``).
        index: A folder written by ``musictag index`` (or ``musictag embed``) with embeddings
            of this checkpoint; enables similar tracks.
        hop_seconds: Hop between windows; default: the index's, else the model's input length.
        batch_size: Windows per forward pass (and per streamed event).
        top_k: Default number of top tags.
        n_similar: Default number of similar tracks.
        max_upload_mb: Upload size limit in MiB.
        device: ``cpu``, ``cuda`` ...; default: cpu.

    Raises:
        FileNotFoundError: for a missing checkpoint or index.
        ValueError: for a file that is not a checkpoint or an index of another model.
    """
    from ..checkpoints import load_tagger
    from ..search import TrackIndex

    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb must be positive, got {max_upload_mb}")
    model = load_tagger(checkpoint)
    if device:
        model.to(device)
    track_index = TrackIndex.load(index) if index is not None else None
    if track_index is not None:
        made_with = track_index.set.meta.get("checkpoint")
        if made_with and Path(made_with).resolve() != Path(checkpoint).resolve():
            log.warning("the index was built with %s, not %s", made_with, checkpoint)
    hop = round(hop_seconds * model.sample_rate) if hop_seconds else None
    return create_app(
        model,
        track_index,
        hop=hop,
        batch_size=batch_size,
        top_k=top_k,
        n_similar=n_similar,
        max_upload_bytes=int(max_upload_mb * 2**20),
        checkpoint_name=Path(checkpoint).name,
    )


def run(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` with uvicorn until interrupted (Ctrl+C)."""
    if not _is_loopback(host):
        log.warning("serving on %s: anyone who can reach this machine can upload files to it", host)
    uvicorn.run(app, host=host, port=port, log_level="info")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
