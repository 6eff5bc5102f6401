"""Training compact CNNs from scratch within a time budget (``musictag train`` without
``--pretrained``, and beside the probe with it).

Why this beats the recipes on small collections (see ``docs/train.md``):

* log-mel features are computed **once** per track (the frontend is fixed), not every epoch;
* the input is standardised **per mel band** with training-set statistics, instead of one
  ``BatchNorm2d(1)`` over all dB values;
* a compact CNN (~100k parameters) whose readout keeps the frequency bands left after the
  pools (the register an instrument plays in reaches the head), light head dropout, AdamW with a
  short warm-up and a cosine decay over 40 epochs (or the time budget, when that is shorter);
* bf16 mixed precision where the device runs it natively (about 1.9x the float32 speed on a
  Zen 4 CPU, the same figures at equal epochs);
* several such models with other seeds while the budget holds another, their logits averaged
  when that is better on validation;
* augmentation on the device is available (random gain, time shift, SpecAugment masks, mixup)
  but off by default: on both development sets it lowered the test figure at equal epochs;
* crops as long as the clips (no zero padding), and the weights kept are those of the best
  validation macro PR-AUC.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..frontend import build_frontend
from ..precision import autocast, training_precision
from ..tagger import Tagger
from .augment import Augment
from .data import TrackSet
from .probe import macro_pr_auc

__all__ = [
    "ScratchConfig",
    "ScratchInputs",
    "crop_logits",
    "mel_crops",
    "train_scratch",
    "train_scratch_members",
]

log = logging.getLogger(__name__)


@dataclass
class ScratchConfig:
    """Settings of the scratch model and its training (the defaults are what ``train`` uses).

    Attributes:
        channels: Conv channels of :class:`~musictag.models.compact.CompactCNN`.
        n_mels: Mel bands.
        hop_length: Frontend hop in samples (320: 20 ms at 16 kHz; instruments need no finer
            time grid, and it halves the cost of a step against 96 bands at 256).
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup: Fraction of the budget spent warming the learning rate up.
        batch_size: Crops per step.
        head_dropout: Dropout before the output layer.
        augment: The augmentation; none by default: at 40 epochs, gain and shift cost 0.01 test
            macro PR-AUC on both development sets and SpecAugment masks another 0.01-0.05
            (``docs/train.md``).
        eval_every: Seconds between validations (checked after each epoch; one at the end).
        band_norm: ``"band"``: standardise each mel band; ``"global"``: one mean and std for all
            (what a ``BatchNorm2d(1)`` on dB values learns), for the ablation.
        max_epochs: Stop after this many epochs even if time is left (ablations; in an
            ensemble, the epochs of each member).
        precision: ``"auto"``: bf16 mixed precision where the device runs bf16 natively
            (:func:`musictag.precision.training_precision`), else float32; or ``"bf16-mixed"``
            / ``"32-true"``.
        readout: The CNN's readout over frequency (:class:`~musictag.models.compact.CompactCNN`).
        members: Most models :func:`train_scratch_members` trains (different seeds), each for
            ``max_epochs``, while the budget holds another; their logits are averaged.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    n_mels: int = 64
    hop_length: int = 320
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup: float = 0.05
    batch_size: int = 32
    head_dropout: float = 0.1
    augment: Augment = field(default_factory=Augment.off)
    eval_every: float = 20.0
    band_norm: str = "band"
    max_epochs: int | None = 40
    members: int = 8
    readout: str = "bands"
    precision: str = "auto"


@dataclass
class ScratchInputs:
    """What scratch models train on.

    Attributes:
        train: Training tracks.
        val: Validation tracks (the model kept is the best on them).
        tags: Output tags.
        sample_rate: Sample rate of the tracks.
        crop: Crop length in samples.
        k: Evaluation crops per track.
        device: Where to train.
        frontend: A dB log-mel frontend to train on instead of the one the
            :class:`ScratchConfig` describes (its hop replaces the config's; when it has more mel
            bands than ``ScratchConfig.n_mels``, the CNN resamples them to ``n_mels`` first, so
            that it costs what it costs on its own frontend): the shared frontend of a transfer
            tagger, when the models join it as ensemble members.
    """

    train: TrackSet
    val: TrackSet
    tags: list[str]
    sample_rate: int
    crop: int
    k: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    frontend: torch.nn.Module | None = None

    def own_frontend(self, cfg: ScratchConfig) -> torch.nn.Module:
        """``frontend``, or the one ``cfg`` describes, on ``device``."""
        fe = self.frontend
        if fe is None:
            fe = build_frontend(
                "logmel", self.sample_rate, **_frontend_kwargs(self.sample_rate, cfg)
            )
        return fe.to(self.device)


def mel_crops(
    frontend: torch.nn.Module, waves: list[np.ndarray], crop: int, k: int, device: torch.device
) -> torch.Tensor:
    """dB log-mel features of ``k`` evenly spaced crops of every track.

    Returns:
        ``[tracks, k, 1, n_mels, frames]`` on ``device``.
    """
    from ..tta import extract_crops

    out = []
    with torch.inference_mode():
        for i in range(0, len(waves), 32):
            crops = [extract_crops(torch.from_numpy(w), crop, k) for w in waves[i : i + 32]]
            x = torch.stack(crops).to(device)
            feats = frontend(x.flatten(0, 1))
            out.append(feats.reshape(x.shape[0], k, *feats.shape[1:]))
    return torch.cat(out)


def _frontend_kwargs(sample_rate: int, cfg: ScratchConfig) -> dict:
    return {
        "n_mels": cfg.n_mels,
        "hop_length": cfg.hop_length,
        "f_max": min(8000.0, sample_rate / 2),
        "standardize": False,
    }


def build_scratch_tagger(
    tags: list[str],
    sample_rate: int,
    crop: int,
    k: int,
    cfg: ScratchConfig,
    bands: int | None = None,
) -> Tagger:
    """The scratch tagger: dB log-mel frontend (no BatchNorm), CompactCNN, linear head.

    ``bands``: the CNN resamples the frontend's bands to this many (``CompactCNN(bands=)``).
    """
    backbone_kwargs = {"channels": list(cfg.channels), "readout": cfg.readout}
    if bands:
        backbone_kwargs["bands"] = bands
    return Tagger(
        backbone="compact_cnn",
        n_tags=len(tags),
        tags=tags,
        sample_rate=sample_rate,
        crop_samples=crop,
        eval_crops=k,
        frontend="logmel",
        frontend_kwargs=_frontend_kwargs(sample_rate, cfg),
        backbone_kwargs=backbone_kwargs,
        head_dropout=cfg.head_dropout,
        optimizer="adamw",
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        scheduler=None,
    )


def train_scratch(
    data: ScratchInputs,
    deadline: float,
    cfg: ScratchConfig | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[Tagger, float]:
    """Train the scratch tagger until ``deadline`` (``time.monotonic()``), keep the best on val.

    Args:
        data: The tracks, tags, crop settings, device and (optionally) shared frontend.
        deadline: ``time.monotonic()`` by which training stops.
        cfg: Settings (default :class:`ScratchConfig`).
        seed: Seed of weights, crops and augmentation.
        progress: Called with a one-line status after each validation.

    Returns:
        ``(tagger in eval mode with the best weights, its validation macro PR-AUC)``.
    """
    cfg = cfg or ScratchConfig()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train, val, crop, k, device = data.train, data.val, data.crop, data.k, data.device
    frontend = data.own_frontend(cfg)
    if data.frontend is None:
        model = build_scratch_tagger(data.tags, data.sample_rate, crop, k, cfg)
    else:
        bands = cfg.n_mels if cfg.n_mels < frontend.n_mels else None
        cfg = dataclasses.replace(cfg, n_mels=frontend.n_mels, hop_length=frontend.hop_length)
        model = build_scratch_tagger(data.tags, data.sample_rate, crop, k, cfg, bands)
        model.frontend = copy.deepcopy(frontend)
    model = model.to(device)
    # training crops: up to 3 per track (long tracks), computed once; validation: the eval crops
    train_k = 1 if np.median([len(w) for w in train.waves]) <= crop else 3
    x_train = mel_crops(frontend, train.waves, crop, train_k, device)  # [N, kt, 1, F, T]
    x_val = mel_crops(frontend, val.waves, crop, k, device)
    y_train = torch.from_numpy(train.targets).to(device)
    band = x_train.transpose(0, 3).reshape(cfg.n_mels, -1)  # [F, everything else]
    if cfg.band_norm == "band":
        model.backbone.set_band_stats(band.mean(1), band.std(1))
    elif cfg.band_norm == "global":
        model.backbone.set_band_stats(band.mean().expand(cfg.n_mels), band.std().expand(cfg.n_mels))
    else:
        raise ValueError(f"band_norm must be 'band' or 'global', got {cfg.band_norm!r}")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    precision = training_precision(device) if cfg.precision == "auto" else cfg.precision
    start = time.monotonic()
    span = max(1.0, deadline - start)
    best, best_state, step, last_eval = -1.0, None, 0, start
    loss = torch.tensor(float("nan"))
    n = x_train.shape[0]
    epoch, eval_cost = 0, 0.0
    # stop early enough for the last validation to end by the deadline
    while time.monotonic() + eval_cost < deadline and epoch < (cfg.max_epochs or 1 << 30):
        model.train()
        order = torch.randperm(n, generator=g)
        # drop a short last batch (noisy BatchNorm statistics), unless it is the only one
        stop = n - cfg.batch_size // 2 if n > cfg.batch_size else 1
        for i in range(0, stop, cfg.batch_size):
            now = time.monotonic()
            if now + eval_cost >= deadline:
                break
            frac = (now - start) / span
            if cfg.max_epochs:  # the schedule follows epochs when they, not time, end training
                frac = max(frac, (epoch + i / n) / cfg.max_epochs)
            lr = cfg.lr * (
                frac / cfg.warmup if frac < cfg.warmup else 0.5 * (1 + math.cos(math.pi * frac))
            )
            for group in opt.param_groups:
                group["lr"] = lr
            idx = order[i : i + cfg.batch_size]
            pick = torch.randint(0, x_train.shape[1], (len(idx),), generator=g)
            x = x_train[idx.to(device), pick.to(device)]
            y = y_train[idx.to(device)]
            x = cfg.augment.before_standardize(x, g)
            x, y = cfg.augment.after_standardize(model.backbone.standardize(x), y, g)
            with autocast(device, precision):
                logits = model.head(model.backbone.forward_standardized(x)[0])
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        epoch += 1
        now = time.monotonic()
        last = now + eval_cost >= deadline or epoch == cfg.max_epochs
        if now - last_eval >= cfg.eval_every or last:
            score = macro_pr_auc(_val_scores(model, x_val), val.targets)
            last_eval = time.monotonic()
            eval_cost = max(eval_cost, last_eval - now)
            if score > best:
                best, best_state = score, copy.deepcopy(model.state_dict())
            if progress:
                progress(
                    f"epoch {epoch} step {step}: loss {loss.item():.3f}, val pr_auc_macro "
                    f"{score:.4f} (best {best:.4f}), {time.monotonic() - start:.0f} s"
                )
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, best


def crop_logits(model: Tagger, x: torch.Tensor) -> torch.Tensor:
    """Logits averaged over crops, from precomputed features ``[N, K, 1, F, T]``: ``[N, tags]``."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], 64):
            b = x[i : i + 64]
            logits = model.head(model.backbone(b.flatten(0, 1))).float()
            out.append(logits.reshape(b.shape[0], b.shape[1], -1).mean(1).cpu())
    return torch.cat(out)


def train_scratch_members(
    data: ScratchInputs,
    deadline: float,
    cfg: ScratchConfig,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Tagger], torch.Tensor]:
    """Up to ``cfg.members`` scratch models (seeds ``seed, seed + 1, ...``) within the budget.

    The first model trains until ``deadline`` or ``cfg.max_epochs``; another one starts when
    the time left holds what the first one took (plus 10 %), so a slow machine gets one model
    trained for the whole budget, as :func:`train_scratch` alone. When the time left holds at
    least half of that, a last model trains for the epochs that fit (its learning-rate schedule
    shortened to match), so the budget is used rather than left idle.

    Returns:
        ``(models, their validation logits [models, N, tags])``, logits averaged over crops
        (the evaluation crops of the validation tracks).
    """
    say = progress or (lambda m: None)
    models: list[Tagger] = []
    logits: list[torch.Tensor] = []
    x_val = took = None
    member_cfg = cfg
    for i in range(max(1, cfg.members)):
        start = time.monotonic()
        fits = (deadline - start) / (1.1 * took) if took else 1.0
        if fits < 1.0:
            epochs = int(cfg.max_epochs * fits) if cfg.max_epochs else 0
            if epochs < max(1, cfg.max_epochs // 2 if cfg.max_epochs else 1):
                say(
                    f"{i} model(s): no time for another ({deadline - start:.0f} s left, "
                    f"one took {took:.0f} s)"
                )
                break
            member_cfg = dataclasses.replace(cfg, max_epochs=epochs)
            say(f"model {i + 1}: {epochs} epochs fit in the {deadline - start:.0f} s left")
        tag = (lambda m, i=i: say(f"model {i + 1}: {m}")) if cfg.members > 1 else say
        model, _ = train_scratch(data, deadline, member_cfg, seed + i, tag)
        if not i:
            took = time.monotonic() - start
            x_val = mel_crops(
                data.own_frontend(cfg), data.val.waves, data.crop, data.k, data.device
            )
        models.append(model)
        logits.append(crop_logits(model, x_val))
        if member_cfg is not cfg:  # the last one, shortened to the time left
            break
    return models, torch.stack(logits)


def _val_scores(model: Tagger, x_val: torch.Tensor) -> np.ndarray:
    """Crop-averaged validation probabilities from precomputed features ``[N, K, 1, F, T]``."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, x_val.shape[0], 64):
            x = x_val[i : i + 64]
            b, kk = x.shape[:2]
            logits = model.head(model.backbone(x.flatten(0, 1)))
            out.append(torch.sigmoid(logits).reshape(b, kk, -1).mean(1).cpu())
    return torch.cat(out).numpy()
