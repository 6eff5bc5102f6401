"""Transfer from pretrained taggers (``musictag train --pretrained``): cached multi-layer features
and a probe.

1. The backbones of the given checkpoints are combined into one
   :class:`~musictag.models.transfer.TransferBackbone` behind the shared log-mel frontend (their
   frontends must agree up to their own input BatchNorm, which moves into the backbone).
2. The pooled output of every stage (Choi et al. 2017) is computed once per track, on crops as
   long as the clips, and cached on disk under a key made of the checkpoints' SHA-256, the shard
   set's :func:`~musictag.training.data.manifest_hash` and the crop settings.
3. A probe (logistic regression or a one-hidden-layer MLP, L2 chosen on validation) is fitted on
   the standardised features in seconds, and written into the tagger's projection and head.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import load_tagger
from ..frontend import LogMelFrontend
from ..models.registry import BACKBONES
from ..tagger import Tagger
from .data import TrackSet

__all__ = [
    "FEATURE_VERSION",
    "BudgetExceeded",
    "combine_taggers",
    "build_transfer_tagger",
    "cached_features",
    "default_cache_dir",
    "member_spec",
]

log = logging.getLogger(__name__)

FEATURE_VERSION = 1  # bump when the feature computation changes: old cache entries are ignored


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/musictag/features`` (``~/.cache/musictag/features``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "musictag" / "features"


def member_spec(model: Tagger) -> dict:
    """``{"backbone", "backbone_kwargs", "input_bn"}`` that rebuild ``model``'s backbone.

    The backbone family is found by class in the registry; its arguments are the
    hyperparameters named in its constructor (presets record them that way) or the tagger's
    ``backbone_kwargs``.
    """
    cls = type(model.backbone)
    names = [n for n, c in BACKBONES.items() if c is cls]
    if not names or not isinstance(model.frontend, LogMelFrontend):
        raise ValueError(
            f"{type(model).__name__} ({cls.__name__} on {type(model.frontend).__name__}) cannot be "
            "transferred: only registered backbones on a log-mel frontend can"
        )
    hp = dict(model.hparams)
    params = inspect.signature(cls).parameters
    kwargs = dict(hp.get("backbone_kwargs") or {})
    kwargs.update({k: hp[k] for k in params if k in hp and k != "n_mels"})
    return {
        "backbone": names[0],
        "backbone_kwargs": _plain(kwargs),
        "input_bn": model.frontend.bn is not None,
    }


def _plain(x):
    """Tuples → lists, recursively (hyperparameters stay plain YAML/JSON values)."""
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _frontend_settings(model: Tagger) -> dict:
    fe = model.frontend
    mel = fe.mel
    return {
        "sample_rate": int(fe.sample_rate),
        "n_fft": int(fe.n_fft),
        "hop_length": int(fe.hop_length),
        "n_mels": int(fe.n_mels),
        "amin": float(fe.amin),
        "top_db": fe.top_db,
        "power": float(fe.power),
        "mel_basis": hashlib.sha256(mel.mel_basis.detach().cpu().numpy().tobytes()).hexdigest(),
    }


def build_transfer_tagger(
    checkpoints: Sequence[str | Path],
    tags: list[str],
    crop: int,
    k: int,
    pool: str = "mean",
    hidden: int = 0,
) -> Tagger:
    """A tagger whose backbone combines the backbones of ``checkpoints`` (weights copied).

    Args:
        checkpoints: musictag checkpoints (converted published ones included).
        tags: Output tags (the head is new).
        crop: Crop length in samples.
        k: Evaluation crops per track.
        pool: Stage pooling of the transfer features.
        hidden: Hidden units of the probe (0: linear).

    Raises:
        ValueError: if the checkpoints' frontends or sample rates differ.
    """
    sources = [load_tagger(c) for c in checkpoints]
    first = sources[0]
    settings = _frontend_settings(first)
    for path, m in zip(checkpoints, sources):
        if _frontend_settings(m) != settings:
            raise ValueError(
                f"{path}: its log-mel frontend differs from {checkpoints[0]}'s; transferred "
                "models must share sample rate, FFT, hop and mel bands"
            )
    frontend_kwargs = dict(first.hparams.get("frontend_kwargs") or {})
    frontend_kwargs.update(n_mels=settings["n_mels"], standardize=False)
    members = [member_spec(m) for m in sources]
    frames = 1 + crop // settings["hop_length"]
    tagger = Tagger(
        backbone="transfer",
        n_tags=len(tags),
        tags=tags,
        sample_rate=settings["sample_rate"],
        crop_samples=crop,
        eval_crops=k,
        frontend="logmel",
        frontend_kwargs=frontend_kwargs,
        backbone_kwargs={
            "members": members,
            "pool": pool,
            "hidden": hidden,
            "probe_frames": frames,
        },
        head_dropout=0.0,
        optimizer="adamw",
        lr=1e-4,
        scheduler=None,
    )
    bb = tagger.backbone
    for i, m in enumerate(sources):
        bb.members[i].load_state_dict(m.backbone.state_dict())
        if m.frontend.bn is not None:
            bb.input_bns[i].load_state_dict(m.frontend.bn.state_dict())
    tagger.frontend.mel.load_state_dict(first.frontend.mel.state_dict())
    return tagger.eval()


def combine_taggers(
    base: Tagger | None, members: Sequence[Tagger], weights: Sequence[float]
) -> Tagger:
    """One tagger whose logits are the weighted sum of ``base``'s and ``members``' logits.

    The members' backbones are appended to ``base``'s :class:`TransferBackbone` as
    ``role="embedding"`` members and the head is the weighted concatenation of the heads, so the
    result is a normal tagger (one checkpoint, one forward pass). Without ``base``, the members
    alone make a plain ensemble behind the first member's frontend.

    Args:
        base: A probed transfer tagger (:func:`build_transfer_tagger`), or ``None``.
        members: Taggers trained on ``base``'s (or the first member's) frontend output, such as
            the compact CNN of :func:`~musictag.training.scratch.train_scratch`; their own
            frontends are not used.
        weights: One weight per tagger, ``base`` first when given.

    Returns:
        A new tagger in eval mode; the inputs are unchanged.
    """
    parts = ([base] if base is not None else []) + list(members)
    if len(weights) != len(parts) or not members:
        raise ValueError(
            f"need members and one weight per tagger, got {len(weights)} for {len(parts)}"
        )
    specs = [{**member_spec(m), "input_bn": False, "role": "embedding"} for m in members]
    if base is not None:
        hp = dict(base.hparams)
        kwargs = dict(hp["backbone_kwargs"])
        kwargs["members"] = [*kwargs["members"], *specs]
        out = Tagger(**{**hp, "backbone_kwargs": kwargs})
        state = {k: v for k, v in base.state_dict().items() if not k.startswith("head.")}
        missing, unexpected = out.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(("backbone.members.", "head.")) for k in missing):
            raise RuntimeError(f"cannot extend the transfer tagger: {missing=}, {unexpected=}")
        first = len(kwargs["members"]) - len(members)
    else:
        m0 = members[0]
        out = Tagger(
            backbone="transfer",
            n_tags=len(m0.tags),
            tags=list(m0.tags),
            sample_rate=m0.sample_rate,
            crop_samples=m0.crop_samples,
            eval_crops=int(m0.hparams.eval_crops),
            frontend="logmel",
            frontend_kwargs=dict(m0.hparams.get("frontend_kwargs") or {}),
            backbone_kwargs={"members": specs},
            head_dropout=0.0,
            optimizer="adamw",
            lr=float(m0.hparams.lr),
            scheduler=None,
        )
        out.frontend.load_state_dict(m0.frontend.state_dict())
        first = 0
    for i, m in enumerate(members):
        out.backbone.members[first + i].load_state_dict(m.backbone.state_dict())
    with torch.no_grad():
        out.head.fc.weight.copy_(
            torch.cat([w * p.head.fc.weight for w, p in zip(weights, parts)], 1)
        )
        out.head.fc.bias.copy_(sum(w * p.head.fc.bias for w, p in zip(weights, parts)))
    return out.to(next(parts[0].parameters()).device).eval()


class BudgetExceeded(RuntimeError):
    """The deadline passed while features were computed (the finished part is cached)."""


def cached_features(
    tagger: Tagger,
    member: int,
    tracks: TrackSet,
    cache_key: dict,
    cache_dir: str | Path | None,
    deadline: float | None = None,
    batch_crops: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Raw transfer features of one member for every track (mean over its crops), cached.

    Finished batches are saved as they come, so an interrupted or over-budget run resumes where
    it stopped.

    Args:
        tagger: A transfer tagger (:func:`build_transfer_tagger`).
        member: Index of the member backbone.
        tracks: The tracks.
        cache_key: Everything the features depend on (the member checkpoint's SHA-256, the
            manifest hash, split, crops, pooling); its SHA-256 names the cache file, which also
            stores the track keys.
        cache_dir: Cache folder; ``None``: :func:`default_cache_dir`.
        deadline: ``time.monotonic()`` after which :class:`BudgetExceeded` is raised.
        batch_crops: Crops per forward pass.
        progress: Called with ``(done, total)`` tracks.

    Returns:
        ``[tracks, member_dim]`` float32.
    """
    import time

    from ..tta import extract_crops

    key = {**cache_key, "version": FEATURE_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path, partial = folder / f"{digest}.npz", folder / f"{digest}.partial.npz"
    done = _read_cache(path, tracks.keys)
    if done is not None and len(done) == len(tracks):
        log.info("transfer features from the cache: %s", path)
        return done
    done = _read_cache(partial, tracks.keys[: _cached_rows(partial)]) if partial.is_file() else None
    out: list[np.ndarray] = list(done) if done is not None else []
    if out:
        log.info(
            "resuming transfer features at track %d of %d (%s)", len(out), len(tracks), partial
        )
    crop, k = tagger.crop_samples, int(tagger.hparams.eval_crops)
    device = next(tagger.parameters()).device
    bb = tagger.backbone
    per_batch = max(1, batch_crops // k)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for i in range(len(out), len(tracks), per_batch):
            if deadline is not None and time.monotonic() > deadline:
                if out:
                    _write_cache(partial, np.stack(out), tracks.keys[: len(out)])
                raise BudgetExceeded(f"{len(out)} of {len(tracks)} tracks done")
            waves = tracks.waves[i : i + per_batch]
            kk = [1 if len(w) <= crop else k for w in waves]
            crops = torch.cat(
                [extract_crops(torch.from_numpy(w), crop, n) for w, n in zip(waves, kk)]
            )
            feats = bb.raw_features(tagger.frontend(crops.to(device)), member).float().cpu()
            out.extend(part.mean(0).numpy() for part in feats.split(kk))
            if progress:
                progress(len(out), len(tracks))
            if (i // per_batch) % 8 == 7:
                _write_cache(partial, np.stack(out), tracks.keys[: len(out)])
    features = np.stack(out).astype(np.float32)
    _write_cache(path, features, tracks.keys)
    partial.unlink(missing_ok=True)
    return features


def _cached_rows(path: Path) -> int:
    try:
        with np.load(path, allow_pickle=False) as z:
            return len(z["keys"])
    except (OSError, ValueError, KeyError):
        return 0


def _read_cache(path: Path, keys: list[str]) -> np.ndarray | None:
    """The cached features if the file holds exactly these track keys, else ``None``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if list(z["keys"]) == list(keys):
                return z["features"]
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring the unreadable cache file %s: %s", path, e)
    return None


def _write_cache(path: Path, features: np.ndarray, keys: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, features=features.astype(np.float32), keys=np.asarray(keys))
    os.replace(tmp, path)
