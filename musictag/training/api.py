"""``train_tagger``: from prepared shards to the best tagger within a wall-clock budget.

Without pretrained checkpoints it trains a compact CNN from scratch
(:mod:`musictag.training.scratch`); with them it fits a probe on their cached multi-layer features
(:mod:`musictag.training.transfer`), then fine-tunes the whole model when the budget leaves time
(:mod:`musictag.training.endtoend`). Either way the result is chosen on the validation split and
written as a normal musictag checkpoint (``predict``, ``embed``, ``evaluate``, the recipes).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import save_tagger
from ..data.shards import load_manifest
from ..pretrained import file_sha256
from ..tagger import Tagger
from .data import TrackSet, choose_window, load_split, manifest_hash, train_vocab
from .endtoend import FinetuneConfig, FinetuneResult, finetune_transfer
from .probe import macro_pr_auc, select_probe
from .scratch import ScratchConfig, ScratchInputs, train_scratch_members
from .transfer import (
    BudgetExceeded,
    build_transfer_tagger,
    cached_features,
    combine_taggers,
)

__all__ = ["TrainConfig", "TrainResult", "train_tagger"]

log = logging.getLogger(__name__)

_VAL_SPLITS = ("val", "valid", "validation")
_SAVE_RESERVE_S = 3.0  # writing the checkpoint (at most 5 % of the budget)


@dataclass
class TrainConfig:
    """What ``musictag train`` does.

    Attributes:
        shards: Shard folder with ``train`` and ``val`` splits.
        output: Checkpoint to write.
        max_minutes: Wall-clock budget, reading the shards included.
        pretrained: Checkpoints to transfer from (empty: from scratch).
        device: Torch device; default ``cuda`` when available, else ``cpu``.
        cache_dir: Transfer-feature cache folder (default: ``~/.cache/musictag/features``).
        seed: Seed.
        progress: Show progress on stderr.
        pool: Stage pooling of the transfer features (``"mean"`` or ``"meanmax"``).
        scratch: Settings of the scratch model.
        ensemble: With ``pretrained``: settings of a compact CNN trained on the collection after
            the probe, on the transfer model's frontend, whose logits are blended with the
            probe's at a weight chosen on validation (``None``: the probe alone).
        finetune: Settings of the end-to-end fine-tuning after the probe (``None``: probe only).
    """

    shards: str | Path
    output: str | Path
    max_minutes: float = 10.0
    pretrained: list[str] = field(default_factory=list)
    device: str | None = None
    cache_dir: str | Path | None = None
    seed: int = 0
    progress: bool = True
    pool: str = "meanmax"
    scratch: ScratchConfig = field(default_factory=ScratchConfig)
    ensemble: ScratchConfig | None = field(default_factory=lambda: ScratchConfig(members=6))
    finetune: FinetuneConfig | None = field(default_factory=FinetuneConfig)


@dataclass
class TrainResult:
    """What ``train_tagger`` made.

    Attributes:
        checkpoint: The checkpoint written.
        model: The tagger (eval mode).
        val_pr_auc: Validation macro PR-AUC of the chosen model.
        n_train: Training tracks.
        n_val: Validation tracks.
        seconds: Wall time.
        summary: One line: what was trained.
        finetune: What the fine-tuning stage after the probe did (transfer only).
    """

    checkpoint: Path
    model: Tagger
    val_pr_auc: float
    n_train: int
    n_val: int
    seconds: float
    summary: str
    finetune: FinetuneResult | None = None


def _say(cfg: TrainConfig, msg: str) -> None:
    # `musictag train` logs at INFO to stderr: these lines are its progress report
    log.info(msg)


def train_tagger(cfg: TrainConfig) -> TrainResult:
    """Train the best tagger the budget allows and write it to ``cfg.output``.

    Args:
        cfg: The settings.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: if the shards lack a train or validation split, or the checkpoints cannot be
            combined.
    """
    t0 = time.monotonic()
    budget = cfg.max_minutes * 60.0
    if budget <= 0:
        raise ValueError(f"max_minutes must be positive, got {cfg.max_minutes}")
    deadline = t0 + budget - min(_SAVE_RESERVE_S, 0.05 * budget)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(_cpu_threads(threads))
    try:
        return _train(cfg, t0, deadline, device)
    finally:
        torch.set_num_threads(threads)


def _cpu_threads(default: int) -> int:
    """As many threads as there are CPUs that other work leaves free now (at least one).

    On a machine whose CPUs are taken, OpenMP threads wait for each other at every barrier: a
    training step of the scratch model took 2.0-2.6 s with two threads and 1.3 s with one (load
    11 on 2 cores), and a probe fit 20 s against 1.4 s. The CPUs' idle time is sampled for a
    moment (``/proc/stat``), not read from the load average: that lags by a minute, so a run
    started right after another job (``train`` from scratch, then ``train --pretrained``) used
    to see the finished job's load and train on one thread of an idle machine.
    """
    busy = _busy_cpus()
    if busy is None:
        return default
    free = max(1, int((os.cpu_count() or 1) - busy + 0.5))
    if free < default:
        log.info("%.1f of %d CPUs busy with other work: training on %d thread(s)",
                 busy, os.cpu_count(), free)  # fmt: skip
    return min(default, free)


def _busy_cpus(seconds: float = 0.3) -> float | None:
    """CPUs busy over the next ``seconds`` (``/proc/stat``; ``None`` where it cannot be read)."""

    def times() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(seconds)
        total1, idle1 = times()
    except (OSError, ValueError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def _train(cfg: TrainConfig, t0: float, deadline: float, device: torch.device) -> TrainResult:
    manifest = load_manifest(cfg.shards)
    val_name = next((s for s in _VAL_SPLITS if s in manifest["splits"]), None)
    if val_name is None:
        raise ValueError(
            f"{cfg.shards}: no validation split (it has {sorted(manifest['splits'])}); "
            "`musictag train` chooses its model on one"
        )
    vocab = train_vocab(cfg.shards)
    tags = list(vocab.tags)
    sample_rate = int(manifest["sample_rate"])
    train = load_split(cfg.shards, "train", vocab)
    val = load_split(cfg.shards, val_name, vocab)
    crop, k = choose_window([len(w) for w in train.waves], sample_rate)
    _say(
        cfg,
        f"{len(train)} training and {len(val)} validation tracks, {len(tags)} tags; crops of "
        f"{crop / sample_rate:.2f} s, {k} per track; read in {time.monotonic() - t0:.0f} s",
    )
    tuned = None
    if cfg.pretrained:
        model, score, summary, probe_logits = _transfer(
            cfg, deadline, train, val, tags, crop, k, val_name, device
        )
        if cfg.ensemble is not None:
            model, score, summary = _ensemble(
                cfg, model, score, summary, probe_logits, train, val, deadline, device
            )
        if cfg.finetune is not None:
            model, tuned = finetune_transfer(
                model, train, val, deadline, cfg.finetune, cfg.seed, lambda m: _say(cfg, m)
            )
            if tuned.ran:
                score = tuned.val_pr_auc
            if tuned.kept == "finetuned":
                summary += f", fine-tuned end to end ({tuned.epochs:g} epochs)"
    else:
        # compact CNN(s) from scratch; several are averaged when that is better on validation
        data = ScratchInputs(train, val, tags, sample_rate, crop, k, device)
        members, logits = train_scratch_members(
            data, deadline, cfg.scratch, cfg.seed, lambda m: _say(cfg, m)
        )
        model, score, summary = _average_best(cfg, members, logits, val)
    elapsed = time.monotonic() - t0
    info = {"summary": summary, "val_pr_auc_macro": float(score), "seconds": round(elapsed, 1)}
    if tuned is not None:
        info["finetune"] = {
            "ran": tuned.ran,
            "kept": tuned.kept,
            "probe_val": tuned.probe_val,
            "history": tuned.history or [],
        }
    out = save_tagger(model, cfg.output, {"train": info})
    seconds = time.monotonic() - t0
    _say(cfg, f"{summary}: validation pr_auc_macro {score:.4f}; {seconds:.0f} s")
    return TrainResult(
        Path(out), model, float(score), len(train), len(val), seconds, summary, tuned
    )


def _transfer(
    cfg: TrainConfig,
    deadline: float,
    train: TrackSet,
    val: TrackSet,
    tags: list[str],
    crop: int,
    k: int,
    val_name: str,
    device: torch.device,
) -> tuple[Tagger, float, str, torch.Tensor]:
    """Probe on the cached multi-layer features of the pretrained checkpoints.

    Returns:
        ``(tagger, validation macro PR-AUC, summary, the probe's validation logits [N, tags])``.
    """
    tagger = build_transfer_tagger(cfg.pretrained, tags, crop, k, pool=cfg.pool).to(device)
    manifest = manifest_hash(cfg.shards)
    # features may take most of the budget; the probe needs seconds, a minute at load 15
    feature_deadline = deadline - min(60.0, 0.1 * (deadline - time.monotonic()))
    parts: dict[str, list] = {"train": [], val_name: []}
    used = list(cfg.pretrained)
    for i, ckpt in enumerate(cfg.pretrained):
        key = {"checkpoint": file_sha256(ckpt), "manifest": manifest, "crop": crop, "crops": k}
        key["pool"] = cfg.pool
        try:
            for name, tracks in (("train", train), (val_name, val)):
                t = time.monotonic()
                bar = _bar(cfg, len(tracks), f"{Path(ckpt).stem} {name}")
                parts[name].append(
                    cached_features(
                        tagger,
                        i,
                        tracks,
                        {**key, "split": name},
                        cfg.cache_dir,
                        feature_deadline,
                        progress=bar,
                    )
                )
                _say(
                    cfg,
                    f"{Path(ckpt).stem}: {name} features {parts[name][-1].shape} "
                    f"in {time.monotonic() - t:.0f} s",
                )
        except BudgetExceeded as e:
            if i == 0:
                raise ValueError(
                    f"the budget ran out computing the features of {ckpt} ({e}); they are "
                    "cached: run again to continue, or raise --max-minutes"
                ) from None
            log.warning(
                "the budget ran out computing the features of %s (%s, cached for the next run): "
                "using %s only",
                ckpt,
                e,
                ", ".join(used[:i]),
            )
            used = used[:i]
            parts = {name: p[:i] for name, p in parts.items()}
            tagger = build_transfer_tagger(used, tags, crop, k, pool=cfg.pool).to(device)
            break
    feats = {name: np.concatenate(p, axis=1) for name, p in parts.items()}
    x_train = torch.from_numpy(feats["train"])
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-5)
    x_train = (x_train - mean) / std
    x_val = (torch.from_numpy(feats[val_name]) - mean) / std
    y_train = torch.from_numpy(train.targets)
    t = time.monotonic()
    fit = select_probe(x_train, y_train, x_val, val.targets, seed=cfg.seed, deadline=deadline)
    kind = f"MLP probe ({fit.hidden} units)" if fit.hidden else "logistic-regression probe"
    _say(cfg, f"{kind}, L2 {fit.weight_decay:g}, chosen in {time.monotonic() - t:.0f} s")
    if fit.hidden:
        tagger = build_transfer_tagger(used, tags, crop, k, pool=cfg.pool, hidden=fit.hidden)
        tagger = tagger.to(device)
        tagger.backbone.projection.load_state_dict(fit.state["projection"])
    tagger.backbone.set_feature_stats(mean, std)
    tagger.head.load_state_dict(fit.state["head"])
    with torch.inference_mode():
        proj = tagger.backbone.projection
        h = x_val.to(device)
        logits = tagger.head.fc(proj(h) if proj is not None else h).float().cpu()
    names = "+".join(Path(p).stem for p in used)
    return tagger.eval(), fit.val_pr_auc, f"{kind} on {names} multi-layer features", logits


_MIN_ENSEMBLE_S = 20.0  # less time than this after the probe: not worth starting a model


def _ensemble(
    cfg: TrainConfig,
    probe: Tagger,
    probe_val: float,
    summary: str,
    probe_logits: torch.Tensor,
    train: TrackSet,
    val: TrackSet,
    deadline: float,
    device: torch.device,
) -> tuple[Tagger, float, str]:
    """Train compact CNNs on the probe's frontend and blend their logits with the probe's.

    The probe's weight is chosen on validation from 1, 0.9, ..., 0 (1: the probe alone, kept on
    ties), so the blend is never worse than the probe on validation.
    """
    left = deadline - time.monotonic()
    if left < _MIN_ENSEMBLE_S:
        _say(cfg, f"no compact CNN beside the probe: {max(left, 0):.0f} s left")
        return probe, probe_val, summary
    crop, k = probe.crop_samples, int(probe.hparams.eval_crops)
    data = ScratchInputs(
        train, val, list(probe.tags), probe.sample_rate, crop, k, device, probe.frontend
    )
    members, logits = train_scratch_members(
        data, deadline, cfg.ensemble, cfg.seed, lambda m: _say(cfg, f"compact CNN {m}")
    )
    cnn = logits.mean(0)
    best_alpha, best = 1.0, -1.0
    for alpha in np.linspace(1.0, 0.0, 11):
        blend = torch.sigmoid(alpha * probe_logits + (1 - alpha) * cnn)
        score = macro_pr_auc(blend.numpy(), val.targets)
        if score > best + 1e-9:
            best_alpha, best = float(alpha), score
    cnn_val = macro_pr_auc(torch.sigmoid(cnn).numpy(), val.targets)
    what = f"{len(members)} compact CNN{'s' if len(members) > 1 else ''}"
    _say(
        cfg,
        f"validation pr_auc_macro: probe {probe_val:.4f}, {what} {cnn_val:.4f}, "
        f"blend {best:.4f} at probe weight {best_alpha:.1f}",
    )
    if best_alpha >= 1.0:
        return probe, probe_val, summary
    share = (1 - best_alpha) / len(members)
    model = combine_taggers(probe, members, [best_alpha] + [share] * len(members))
    return model, best, f"{summary} blended with {what} (probe weight {best_alpha:.1f})"


def _average_best(
    cfg: TrainConfig, members: list[Tagger], logits: torch.Tensor, val: TrackSet
) -> tuple[Tagger, float, str]:
    """The average of the first n scratch models, n chosen on validation (the fewest on ties)."""
    scores = [
        macro_pr_auc(torch.sigmoid(logits[:n].mean(0)).numpy(), val.targets)
        for n in range(1, len(members) + 1)
    ]
    n = 1 + max(range(len(scores)), key=lambda i: scores[i] - 1e-9 * i)
    n_params = sum(p.numel() for p in members[0].parameters())
    if len(members) > 1:
        figures = ", ".join(f"{x:.4f}" for x in scores)
        _say(cfg, f"validation pr_auc_macro of the average of 1..{len(members)} models: {figures}")
    if n == 1:
        return members[0], scores[0], f"compact CNN from scratch ({n_params:,} parameters)"
    model = combine_taggers(None, members[:n], [1.0 / n] * n)
    return (
        model,
        scores[n - 1],
        f"{n} compact CNNs from scratch, averaged ({n_params:,} parameters each)",
    )


def _bar(cfg: TrainConfig, total: int, desc: str):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="track", file=sys.stderr, disable=None)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)
        if done >= _total:
            bar.close()

    return update
