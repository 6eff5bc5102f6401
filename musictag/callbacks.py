"""Lightning callbacks of the training recipes: diagnostic figures, staged LR decay, exact resume.

- :class:`TagPlots` draws, after validation, the precision-recall curves of the best and the worst
  tags and the tag activity over time of one validation track, and logs the figures through
  whichever logger is active (wandb image, TensorBoard figure, PNG file beside CSV logs).
- :class:`StagedLRDecay` is the SampleCNN schedule (Lee et al. 2017): multiply the learning rate
  by ``factor`` when the monitored metric stops improving, and stop after ``max_decays`` decays.
- :class:`ExactResume` stores the random number generator states in checkpoints, so that
  ``--ckpt_path last`` continues an interrupted run exactly as if it had not stopped.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason

from .lightning_compat import (
    DecisionAmendingEarlyStopping,
    fit_restarting,
    state_key,
)
from .plots import pr_curves, tags_over_time

__all__ = ["ExactResume", "StagedLRDecay", "TagPlots", "log_figure"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ figures
def _figure_pixels(fig: Any) -> np.ndarray:
    """RGB pixels ``[height, width, 3]`` (uint8) of a matplotlib figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")


def log_figure(trainer: pl.Trainer, key: str, fig: Any) -> list[str]:
    """Log a matplotlib figure through every logger of ``trainer`` (global rank 0 only).

    ``WandbLogger``: a ``wandb.Image`` under ``key``; ``TensorBoardLogger``: ``add_figure``; any
    other logger (``CSVLogger`` ...) or none: a PNG ``<log_dir>/figures/<key>-epoch=<NNN>.png``.

    Args:
        trainer: The trainer (gives loggers, step and epoch).
        key: Name of the figure, e.g. ``"val/pr_curves"``.
        fig: A ``matplotlib.figure.Figure``.

    Returns:
        What was written, one entry per logger (``"wandb"``, ``"tensorboard"`` or a PNG path).
    """
    if not trainer.is_global_zero:
        return []
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    done: list[str] = []
    loggers = list(trainer.loggers)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[_figure_pixels(fig)], step=trainer.global_step)
            done.append("wandb")
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, fig, global_step=trainer.global_step, close=False)
            done.append("tensorboard")
        else:
            done.append(
                _save_png(getattr(logger, "log_dir", None) or logger.save_dir, key, fig, trainer)
            )
    if not loggers:
        done.append(_save_png(trainer.default_root_dir, key, fig, trainer))
    return done


def _save_png(folder: str | None, key: str, fig: Any, trainer: pl.Trainer) -> str:
    out = Path(folder or trainer.default_root_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_file_name(key)}-epoch={trainer.current_epoch:03d}.png"
    fig.savefig(path, dpi=80)
    return str(path)


class TagPlots(Callback):
    """Diagnostic figures after each validation: PR curves and tag activity over time.

    Two figures per validation epoch (every ``every_n_epochs``; never during the sanity check),
    logged with :func:`log_figure`:

    - ``val/pr_curves``: precision-recall curves of the ``n_best`` tags with the highest and the
      ``n_worst`` with the lowest average precision (tags with at least one positive track);
    - ``val/tags_over_time``: the scores of one validation track's evenly spaced crops for its
      ``n_track_tags`` highest-scoring tags and its true tags (marked ``*``), crop by crop.

    The model's ``validation_step`` must return the crop-averaged scores ``[B, n_tags]`` (as
    :class:`~musictag.tagger.Tagger` does). Under DDP the figures show the tracks of rank 0.

    Args:
        n_best: Best tags to draw.
        n_worst: Worst tags to draw.
        n_track_tags: Tags in the over-time plot.
        every_n_epochs: Draw every this many epochs.
        track: Index, within the first validation batch, of the track drawn over time.
    """

    def __init__(
        self,
        n_best: int = 3,
        n_worst: int = 3,
        n_track_tags: int = 10,
        every_n_epochs: int = 1,
        track: int = 0,
    ) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.n_best = n_best
        self.n_worst = n_worst
        self.n_track_tags = n_track_tags
        self.every_n_epochs = every_n_epochs
        self.track = track
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._track: tuple[str, torch.Tensor, torch.Tensor] | None = None
        self.logged: list[str] = []  # where the last figures went (see log_figure)

    def _active(self, trainer: pl.Trainer) -> bool:
        return (
            trainer.is_global_zero
            and not trainer.sanity_checking
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._scores, self._targets, self._track = [], [], None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer) or not isinstance(outputs, torch.Tensor):
            return
        self._scores.append(outputs.detach().float().cpu())
        self._targets.append(batch["target"].detach().int().cpu())
        if self._track is None and len(batch["audio"]) > self.track:
            crops = batch["audio"][self.track]
            crops = crops if crops.dim() == 2 else crops.unsqueeze(0)  # [K, samples]
            with torch.no_grad():
                per_crop = pl_module.predict_proba(crops).float().cpu()  # [K, n_tags]
            key = batch.get("key", [str(self.track)] * len(batch["audio"]))[self.track]
            self._track = (str(key), per_crop, batch["target"][self.track].cpu())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer) or not self._scores:
            return
        from matplotlib.figure import Figure

        tags = list(getattr(pl_module, "tags", [])) or [
            f"tag_{i}" for i in range(self._scores[0].shape[1])
        ]
        scores, targets = torch.cat(self._scores), torch.cat(self._targets)
        self.logged = []
        fig = Figure(figsize=(10, 4))
        if pr_curves(fig, scores, targets, tags, self.n_best, self.n_worst):
            self.logged += log_figure(trainer, "val/pr_curves", fig)
        if self._track is not None:
            fig = Figure(figsize=(8, 4))
            tags_over_time(fig, *self._track, tags, self.n_track_tags)
            self.logged += log_figure(trainer, "val/tags_over_time", fig)
        self._scores, self._targets, self._track = [], [], None


# ------------------------------------------------------------------------------- LR decay
class StagedLRDecay(DecisionAmendingEarlyStopping):
    """Staged learning-rate decay (Lee et al. 2017, SampleCNN): decay on plateau, stop after N.

    When ``monitor`` has not improved for ``patience`` validations, every parameter group's
    learning rate is multiplied by ``factor`` and the count restarts; after ``max_decays`` decays
    the next plateau stops training. This is Lightning's :class:`EarlyStopping` (whose options
    and checkpointed state it keeps) with the decays in between. Use it with the tagger's own
    scheduler off (``scheduler: null``).

    Args:
        monitor: Metric to follow.
        mode: ``"max"`` or ``"min"``.
        patience: Validations without improvement before a decay (or the stop).
        factor: Learning-rate factor of one decay.
        max_decays: Decays before the next plateau stops training.
        min_delta: Smallest change that counts as an improvement.
        verbose: Log every decision.
    """

    def __init__(
        self,
        monitor: str = "val/pr_auc_macro",
        mode: str = "max",
        patience: int = 3,
        factor: float = 0.2,
        max_decays: int = 4,
        min_delta: float = 0.0,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            monitor=monitor, mode=mode, patience=patience, min_delta=min_delta, verbose=verbose
        )
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.factor = factor
        self.max_decays = max_decays
        self.decays = 0
        self._trainer: pl.Trainer | None = None

    @property
    def state_key(self) -> str:
        return state_key(self, monitor=self.monitor, mode=self.mode, factor=self.factor)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "decays": self.decays}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.decays = int(state_dict.get("decays", 0))

    def amend_stop(self, should_stop: bool, reason: str | None) -> tuple[bool, str | None]:
        if (
            should_stop
            and self.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED
            and self.decays < self.max_decays
        ):
            self.decays += 1
            self.wait_count = 0
            self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
            lrs = []
            for optimizer in self._trainer.optimizers if self._trainer is not None else []:
                for group in optimizer.param_groups:
                    group["lr"] *= self.factor
                    lrs.append(group["lr"])
            return False, (
                f"{self.monitor} did not improve in {self.patience} validations: learning rate "
                f"x{self.factor} -> {lrs} (decay {self.decays} of {self.max_decays})"
            )
        return should_stop, reason


# --------------------------------------------------------------------------------- resume
def _rng_states() -> dict[str, Any]:
    # plain lists and tensors only: checkpoints must load with torch.load(weights_only=True)
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(Callback):
    """Make ``fit(ckpt_path=...)`` continue a run exactly where its checkpoint left it.

    Lightning restores weights, optimiser, schedulers, loops and callback states, but not the
    random number generators; and resuming from a checkpoint written at the end of an epoch it
    never takes that epoch's ``ReduceLROnPlateau`` step, which comes after the checkpoint and
    needs a metric the checkpoint does not hold. This callback stores the torch, numpy and
    Python RNG states (and CUDA's when in use) and the plateau schedulers' monitored values with
    every checkpoint. On resume it restores the RNG states before the first training batch is
    drawn, where the uninterrupted run stood when it saved, and takes the missing plateau step. The
    data module seeds crops and shuffling from ``(seed, epoch, rank, worker)``, so an interrupted
    run resumed from an end-of-epoch checkpoint (``last.ckpt`` of the recipes) ends with the
    same weights as an uninterrupted one, on deterministic hardware. A mid-epoch checkpoint
    restarts its epoch from the beginning (a stream has no position to restore).
    """

    def __init__(self) -> None:
        super().__init__()
        self._trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None  # loaded, until the next epoch starts
        self._epoch_ended = False  # this epoch's training ended, its plateau step not yet taken
        self._stepped = False  # this callback took this epoch's plateau step itself

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _due_plateau_values(self) -> list[list[Any]]:
        """``[[scheduler index, monitored value]]`` of the plateau schedulers due this epoch."""
        trainer = self._trainer
        if trainer is None or self._stepped:
            return []
        due = []
        for i, config in enumerate(trainer.lr_scheduler_configs):
            if not config.reduce_on_plateau or config.interval != "epoch":
                continue
            value = trainer.callback_metrics.get(config.monitor)
            if value is not None and (trainer.current_epoch + 1) % config.frequency == 0:
                due.append([i, float(value)])
        return due

    def _step_plateau(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, due: list, current: bool
    ) -> None:
        configs = trainer.lr_scheduler_configs
        for i, saved in due:
            config = configs[i]
            value = trainer.callback_metrics.get(config.monitor) if current else None
            pl_module.lr_scheduler_step(config.scheduler, saved if value is None else value)

    def state_dict(self) -> dict[str, Any]:
        pending = self._pending or {}
        return {
            "rng": pending.get("rng") or _rng_states(),
            "plateau": self._due_plateau_values(),
            "epoch_ended": self._epoch_ended,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # (before ModelCheckpoint, a monitoring callback, saves at the end of the epoch)
        self._epoch_ended = True
        if fit_restarting(trainer) and self._pending is not None:
            # Lightning re-runs the end of a restored epoch without the plateau step: take it,
            # with this epoch's validation if it ran again, else with the saved values
            self._step_plateau(trainer, pl_module, self._pending.get("plateau", []), current=True)
            self._pending["plateau"] = []
            self._stepped = True

    # The RNG states go back just before Lightning creates the first training iterator (which
    # draws a seed from torch's generator, as the uninterrupted run's next epoch does): after
    # the sanity check if there is one (it draws too), else when fit starts.
    def _restore_rng(self) -> None:
        if self._pending is not None and self._pending.get("rng"):
            _set_rng_states(self._pending["rng"])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_rng()

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_rng()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.get("epoch_ended"):
            # saved after its epoch ended, before the plateau step: the step is still due
            self._step_plateau(trainer, pl_module, pending.get("plateau", []), current=False)
        self._epoch_ended = self._stepped = False
