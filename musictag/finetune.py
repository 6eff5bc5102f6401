"""Fine-tuning a trained tagger on another tag set, and linear probes on frozen embeddings.

:func:`finetune_tagger` loads any musictag checkpoint (including published weights converted by
``musictag convert-sota``), keeps its frontend and backbone, and gives it a new head for the new
tags (the reset layers are named in a warning). :class:`BackboneFreeze` is Lightning's
:class:`~pytorch_lightning.callbacks.BackboneFinetuning` over frontend and backbone: frozen for
the first epochs, then trained at a lower learning rate; never unfrozen, it is a linear probe.
``recipes/finetune.py`` puts both behind the recipe command line (``docs/training.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BackboneFinetuning
from torch import nn
from torch.optim import Optimizer

from .checkpoints import load_tagger
from .lightning_compat import refresh_logged_hparams
from .losses import build_loss
from .tagger import Tagger

__all__ = ["BackboneFreeze", "constant_lr", "finetune_tagger"]

log = logging.getLogger(__name__)


def finetune_tagger(
    checkpoint: str | Path,
    n_tags: int,
    tags: Sequence[str] | None = None,
    multi_label: bool = True,
    pos_weight: Sequence[float] | None = None,
    sample_rate: int | None = None,
    crop_samples: int | None = None,
    eval_crops: int | None = None,
    lr: float = 1e-4,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    scheduler: str | None = "plateau",
    plateau_factor: float = 0.2,
    plateau_patience: int = 5,
    head_dropout: float | None = None,
    loss: str | None = None,
) -> Tagger:
    """A trained tagger prepared for fine-tuning on new tags: same frontend and backbone, new head.

    The checkpoint's class (``CRNNTagger`` ...), frontend and backbone weights are kept. If the
    tags (names and order) or the label kind differ, the head is replaced by a freshly
    initialised one, with a warning that names the reset layers; otherwise it is kept too. The
    training settings (``lr`` ...) replace the checkpoint's, and are saved in the new checkpoints
    with the new tags, so :func:`musictag.load_tagger` restores the fine-tuned model.

    Args:
        checkpoint: A musictag checkpoint (``.ckpt``), e.g. from a recipe or
            :func:`musictag.pretrained.save_sota_checkpoint`.
        n_tags: Number of new tags.
        tags: New tag names in output order.
        multi_label: ``False`` for single-label data (softmax, cross-entropy).
        pos_weight: Per-tag positive weights of the new tags for the loss, ``[n_tags]``.
        sample_rate: Sample rate of the data; must be the model's.
        crop_samples: Crop length of the data; replaces the model's (the backbone must accept it,
            which is checked with one forward pass).
        eval_crops: Crops per track for evaluation.
        lr: Learning rate (of the head; see :class:`BackboneFreeze` for the backbone's).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        weight_decay: Weight decay.
        scheduler: ``"plateau"``, ``"cosine"`` or ``None``.
        plateau_factor: LR factor of the plateau scheduler.
        plateau_patience: Epochs without improvement before the plateau scheduler decays.
        head_dropout: Dropout before the new output layer (default: the checkpoint's).
        loss: Loss name (default: ``"bce"`` multi-label, ``"ce"`` single-label).

    Returns:
        The tagger, in training mode.

    Raises:
        ValueError: If the sample rate differs from the model's or the backbone cannot take
            ``crop_samples``.
    """
    model = load_tagger(checkpoint)
    hp = model.hparams
    if sample_rate is not None and int(sample_rate) != model.sample_rate:
        raise ValueError(
            f"{checkpoint}: the model expects {model.sample_rate} Hz audio, the data is at "
            f"{sample_rate} Hz; write the shards at {model.sample_rate} Hz "
            f"(`musictag prepare ... --sample_rate {model.sample_rate}`)"
        )
    tags = list(tags) if tags is not None else [f"tag_{i}" for i in range(n_tags)]
    if head_dropout is not None:
        hp.head_dropout = float(head_dropout)
        model.head.dropout.p = float(head_dropout)
    if tags == list(model.tags) and bool(multi_label) == bool(hp.multi_label):
        log.info("%s: same %d tags, the head is kept", checkpoint, n_tags)
        if loss is not None:
            hp.loss = model.loss_name = loss
        hp.pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]
        model.criterion = build_loss(model.loss_name, pos_weight, hp.focal_gamma)
    else:
        model.reset_head(n_tags, tags, multi_label=multi_label, pos_weight=pos_weight, loss=loss)
    hp.update(
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        scheduler=scheduler,
        plateau_factor=plateau_factor,
        plateau_patience=plateau_patience,
    )
    if eval_crops is not None:
        hp.eval_crops = int(eval_crops)
    if crop_samples is not None and int(crop_samples) != model.crop_samples:
        _check_crop(model, int(crop_samples), checkpoint)
        hp.crop_samples = int(crop_samples)
    # what the loggers report as the model's hyperparameters
    refresh_logged_hparams(model)
    return model.train()


def _check_crop(model: Tagger, crop_samples: int, checkpoint: str | Path) -> None:
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, crop_samples))
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"{checkpoint}: {type(model).__name__} (trained on crops of {model.crop_samples} "
            f"samples) cannot take crops of {crop_samples} samples ({e}); set the data's "
            f"crop_samples to {model.crop_samples}"
        ) from e


def constant_lr(epoch: int) -> float:
    """Backbone learning-rate factor per epoch after unfreezing: 1 (keep the initial rate)."""
    return 1.0


class BackboneFreeze(BackboneFinetuning):
    """Freeze frontend and backbone, then unfreeze them at a lower learning rate.

    Lightning's ``BackboneFinetuning`` applied to ``pl_module.frontend`` and
    ``pl_module.backbone``: only the head trains until epoch ``unfreeze_backbone_at_epoch``; then
    frontend and backbone join the optimiser as a new parameter group at
    ``backbone_initial_ratio_lr`` × the head's learning rate (or ``backbone_initial_lr``),
    multiplied by ``lambda_func(epoch + 1)`` every later epoch (:func:`constant_lr`: unchanged)
    up to the head's rate when ``should_align``. With ``unfreeze_backbone_at_epoch=None`` they
    stay frozen: a linear probe of the frozen embeddings. While frozen (and ``train_bn`` is
    false) they run in eval mode, so BatchNorm uses its stored statistics and dropout is off:
    the head sees exactly the embeddings of the trained model. Checkpoints keep the schedule's
    state, so a fine-tuning run resumes exactly.

    Args:
        unfreeze_backbone_at_epoch: Epoch at which frontend and backbone start training;
            ``None``: never (linear probe).
        backbone_initial_ratio_lr: Their initial learning rate as a fraction of the head's.
        backbone_initial_lr: Their initial learning rate (overrides the ratio).
        lambda_func: Their learning-rate factor per later epoch.
        should_align: Cap their learning rate at the head's.
        train_bn: Train the BatchNorm layers while the rest is frozen.
        verbose: Log the learning rates when they change.
    """

    def __init__(
        self,
        unfreeze_backbone_at_epoch: int | None = 5,
        backbone_initial_ratio_lr: float = 0.1,
        backbone_initial_lr: float | None = None,
        lambda_func: Callable[[int], float] = constant_lr,
        should_align: bool = True,
        train_bn: bool = False,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            unfreeze_backbone_at_epoch=unfreeze_backbone_at_epoch,  # type: ignore[arg-type]
            lambda_func=lambda_func,
            backbone_initial_ratio_lr=backbone_initial_ratio_lr,
            backbone_initial_lr=backbone_initial_lr,
            should_align=should_align,
            train_bn=train_bn,
            verbose=verbose,
        )

    @staticmethod
    def frozen_modules(pl_module: pl.LightningModule) -> list[nn.Module]:
        """The modules this callback freezes: ``[frontend, backbone]``."""
        return [pl_module.frontend, pl_module.backbone]

    def _frozen(self, epoch: int) -> bool:
        return self.unfreeze_backbone_at_epoch is None or epoch < self.unfreeze_backbone_at_epoch

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(self.frozen_modules(pl_module), train_bn=self.train_bn)

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        if self._frozen(epoch):
            return
        if epoch > self.unfreeze_backbone_at_epoch:  # the backbone group's later learning rates
            super().finetune_function(pl_module, epoch, optimizer)
            return
        head_lr = optimizer.param_groups[0]["lr"]
        lr = (
            self.backbone_initial_lr
            if self.backbone_initial_lr is not None
            else head_lr * self.backbone_initial_ratio_lr
        )
        self.previous_backbone_lr = lr
        self.unfreeze_and_add_param_group(
            self.frozen_modules(pl_module), optimizer, lr, train_bn=True
        )
        log.info(
            "epoch %d: frontend and backbone unfrozen at lr %.3g (head %.3g)", epoch, lr, head_lr
        )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        frozen = self._frozen(trainer.current_epoch)
        for module in self.frozen_modules(pl_module):
            module.train(not frozen or self.train_bn)
