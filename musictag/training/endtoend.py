"""End-to-end fine-tuning of a transfer tagger after its probe, when the budget leaves time for it.

The probe (:mod:`musictag.training.probe`) is fitted on frozen, cached features. When the time
left allows at least one epoch and two validations, :func:`finetune_transfer` trains the whole
tagger (every member backbone and the head) on crops as long as the clips:

* the head starts from the probe and learns at a higher rate than the pretrained backbones
  (AdamW, ``head_lr`` against ``backbone_lr``), after a linear warm-up and along a cosine decay
  that ends at the deadline;
* BatchNorm statistics stay those of the pretrained backbones (small batches of a small
  collection would only add noise to them); dropout is active;
* the validation macro PR-AUC is measured with the evaluation protocol (crop-averaged, as
  ``musictag evaluate`` scores) before the first step, after every epoch and when time runs out;
  the best weights are kept, and when no epoch beats the probe, the probe is what is returned.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation import track_score_batches
from ..tagger import Tagger
from .data import TrackSet
from .probe import macro_pr_auc

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune_transfer"]

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Settings of the fine-tuning stage.

    Attributes:
        head_lr: Peak learning rate of the head (and of an MLP probe's hidden layer).
        backbone_lr: Peak learning rate of the pretrained backbones: lower, so that the features
            the probe was fitted on move slowly.
        weight_decay: AdamW weight decay.
        warmup: Fraction of the fine-tuning time spent warming the learning rates up.
        batch_size: Crops per step.
        min_epochs: Fine-tune only when the time left allows this many epochs (estimated from a
            timed forward pass) and the validations around them.
    """

    head_lr: float = 5e-4
    backbone_lr: float = 5e-5
    weight_decay: float = 1e-2
    warmup: float = 0.1
    batch_size: int = 16
    min_epochs: float = 1.0


@dataclass
class FinetuneResult:
    """What the fine-tuning stage did.

    Attributes:
        ran: Whether any fine-tuning step was taken.
        reason: Why it did not run (empty when it did).
        probe_val: Validation macro PR-AUC of the probe (evaluation protocol); ``nan`` when the
            stage did not run.
        best_val: Best validation macro PR-AUC of a fine-tuned epoch (``nan`` if none).
        kept: ``"finetuned"`` or ``"probe"``: the model returned.
        epochs: Epochs (the last one possibly partial) trained.
        history: Validation macro PR-AUC after each epoch.
    """

    ran: bool
    reason: str = ""
    probe_val: float = float("nan")
    best_val: float = float("nan")
    kept: str = "probe"
    epochs: float = 0.0
    history: list[float] | None = None

    @property
    def val_pr_auc(self) -> float:
        """The validation figure of the model kept."""
        return self.best_val if self.kept == "finetuned" else self.probe_val


def validation_score(model: Tagger, tracks: TrackSet, crops: int | None = None) -> float:
    """Validation macro PR-AUC with the evaluation protocol (crop-averaged track scores)."""
    model.eval()
    scores = [s for _, s in track_score_batches(model, zip(tracks.keys, tracks.waves), crops)]
    return macro_pr_auc(torch.cat(scores).numpy(), tracks.targets)


def _random_crops(
    waves: list[np.ndarray], idx: torch.Tensor, crop: int, g: torch.Generator
) -> torch.Tensor:
    """One crop per track at a random position (a short track is zero-padded): ``[B, crop]``."""
    out = torch.zeros(len(idx), crop)
    for row, i in enumerate(idx.tolist()):
        w = torch.from_numpy(waves[i])
        if len(w) <= crop:
            out[row, : len(w)] = w
        else:
            start = int(torch.randint(0, len(w) - crop + 1, (1,), generator=g))
            out[row] = w[start : start + crop]
    return out


def _freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _param_groups(model: Tagger, cfg: FinetuneConfig) -> list[dict]:
    bb = model.backbone
    head = list(model.head.parameters())
    if getattr(bb, "projection", None) is not None:
        head += list(bb.projection.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return [
        {"params": backbone, "peak": cfg.backbone_lr},
        {"params": head, "peak": cfg.head_lr},
    ]


def _seconds_per_crop(model: Tagger, tracks: TrackSet, batch: int, device: torch.device) -> float:
    """Time of a forward pass per crop, measured on one batch (inference mode)."""
    x = _random_crops(tracks.waves, torch.arange(min(batch, len(tracks))), model.crop_samples,
                      torch.Generator().manual_seed(0)).to(device)  # fmt: skip
    model.eval()
    with torch.inference_mode():
        t = time.monotonic()
        model(x)
        return (time.monotonic() - t) / len(x)


def finetune_transfer(
    model: Tagger,
    train: TrackSet,
    val: TrackSet,
    deadline: float,
    cfg: FinetuneConfig | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[Tagger, FinetuneResult]:
    """Fine-tune a probed transfer tagger end to end until ``deadline`` if time allows.

    Args:
        model: A transfer tagger with its probe fitted (head, feature statistics), on its device.
        train: Training tracks.
        val: Validation tracks.
        deadline: ``time.monotonic()`` by which the stage ends (its last validation included).
        cfg: Settings (default :class:`FinetuneConfig`).
        seed: Seed of crops and batches.
        progress: Called with one-line status messages.

    Returns:
        ``(tagger in eval mode, result)``: the fine-tuned weights of the best validation epoch
        when it beats the probe on validation, else the probe unchanged.
    """
    cfg = cfg or FinetuneConfig()
    say = progress or (lambda m: None)
    device = next(model.parameters()).device
    crop, k = model.crop_samples, int(model.hparams.eval_crops)
    per_crop = _seconds_per_crop(model, train, cfg.batch_size, device)
    val_crops = sum(1 if len(w) <= crop else k for w in val.waves)
    val_cost = per_crop * val_crops
    epoch_cost = 3.0 * per_crop * len(train)  # forward and backward: about three forwards
    need = 2 * val_cost + cfg.min_epochs * epoch_cost
    left = deadline - time.monotonic()
    if need > left:
        reason = (
            f"fine-tuning skipped: {cfg.min_epochs:g} epoch and its validations would take about "
            f"{need:.0f} s, {max(left, 0):.0f} s are left"
        )
        say(reason)
        return model.eval(), FinetuneResult(ran=False, reason=reason)
    t = time.monotonic()
    probe_val = validation_score(model, val)
    val_cost = max(val_cost, time.monotonic() - t)
    probe_state = copy.deepcopy(model.state_dict())
    say(
        f"fine-tuning the backbones end to end: probe validation pr_auc_macro {probe_val:.4f}; "
        f"about {epoch_cost:.0f} s per epoch, {deadline - time.monotonic():.0f} s left"
    )
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    groups = _param_groups(model, cfg)
    opt = torch.optim.AdamW(groups, lr=0.0, weight_decay=cfg.weight_decay)
    start = time.monotonic()
    span = max(1.0, deadline - val_cost - start)
    best, best_state, history = -1.0, None, []
    n, epoch, step = len(train), 0, 0
    targets = torch.from_numpy(train.targets)
    loss = torch.tensor(float("nan"))
    while time.monotonic() + val_cost < deadline:
        model.train()
        _freeze_batchnorm(model)
        order = torch.randperm(n, generator=g)
        done = 0
        for i in range(0, n, cfg.batch_size):
            now = time.monotonic()
            if now + val_cost >= deadline:
                break
            frac = (now - start) / span
            scale = frac / cfg.warmup if frac < cfg.warmup else 0.5 * (1 + math.cos(math.pi * frac))
            for group in opt.param_groups:
                group["lr"] = group["peak"] * scale
            idx = order[i : i + cfg.batch_size]
            x = _random_crops(train.waves, idx, crop, g).to(device)
            with torch.no_grad():
                spec = model.frontend(x)
            loss = F.binary_cross_entropy_with_logits(
                model.head(model.backbone(spec)), targets[idx].to(device)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            done = min(n, i + len(idx))
        if done == 0:
            break
        epoch += 1
        t = time.monotonic()
        score = validation_score(model, val)
        val_cost = max(val_cost, time.monotonic() - t)
        history.append(score)
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
        partial = "" if done == n else f" ({done} of {n} tracks)"
        say(
            f"fine-tuning epoch {epoch}{partial}, step {step}: loss {loss.item():.3f}, val "
            f"pr_auc_macro {score:.4f} (probe {probe_val:.4f}), {time.monotonic() - start:.0f} s"
        )
        if done < n:
            break
    kept = "finetuned" if best_state is not None and best > probe_val else "probe"
    model.load_state_dict(best_state if kept == "finetuned" else probe_state)
    result = FinetuneResult(
        ran=step > 0,
        probe_val=probe_val,
        best_val=best if best_state is not None else float("nan"),
        kept=kept,
        epochs=float(len(history)),
        history=history,
    )
    say(
        "kept the fine-tuned model" if kept == "finetuned" else
        "kept the probe: fine-tuning did not beat it on validation"
    )  # fmt: skip
    return model.eval(), result
