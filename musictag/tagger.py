"""``Tagger``: frontend + backbone + head as one LightningModule, with loss, metrics, TTA and optimiser.

Everything an architecture needs besides its layers is written once here: multi-label or
single-label loss, per-track metrics after crop averaging, the optimiser and scheduler, embedding
extraction and head reset for fine-tuning. Architectures are plain ``nn.Module`` backbones chosen by
name; named presets (``CRNNTagger`` ...) live in :mod:`musictag.presets`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.aggregation import SumMetric

from .frontend import build_frontend
from .losses import build_loss
from .metrics import per_tag_ap, tagging_metrics
from .models.base import Backbone
from .models.blocks import pool_stage
from .models.nonlocal_block import insert_nonlocal
from .models.registry import build_backbone
from .tta import aggregate

__all__ = ["Tagger", "TagHead"]

log = logging.getLogger(__name__)


class TagHead(nn.Module):
    """Dropout → Linear: embedding to tag logits.

    Shape:
        ``[batch, embed_dim]`` → ``[batch, n_tags]``.
    """

    def __init__(self, embed_dim: int, n_tags: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


class Tagger(pl.LightningModule):
    """A music tagger: ``waveform → frontend → backbone → head → logits``.

    Batches are dicts from :class:`~musictag.data.datamodule.TagDataModule`: training
    ``{"audio": [B, samples], "target": [B, n_tags]}``, validation/test/predict
    ``{"audio": [B, K, samples], "target": [B, n_tags], "key": [B]}`` with K crops per track whose
    probabilities are aggregated (mean by default) before the metrics see them.

    Args:
        backbone: Name of a registered backbone family (see ``musictag.models.BACKBONES``).
        n_tags: Number of output tags.
        tags: Tag names in output order (stored in the checkpoint); default ``tag_0 ...``.
        sample_rate: Sample rate the model expects, in Hz.
        crop_samples: Input length of one crop, in samples (training crop, TTA crop).
        eval_crops: Crops per track for evaluation and file inference.
        frontend: Frontend name (``"logmel"``, ``"waveform"``).
        frontend_kwargs: Frontend settings (see :class:`~musictag.frontend.LogMelFrontend`).
        backbone_kwargs: Backbone settings.
        head_dropout: Dropout before the output layer.
        multi_label: ``False`` for single-label data (softmax, cross-entropy, accuracy).
        loss: ``"bce"``, ``"focal"`` or ``"ce"``; default ``"bce"`` (multi-label) / ``"ce"``.
        pos_weight: Per-tag positive weights for the multi-label losses, ``[n_tags]``.
        focal_gamma: Focal-loss focusing parameter.
        tta: Crop aggregation, ``"mean"`` or ``"max"``.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: Learning rate.
        weight_decay: Weight decay.
        scheduler: ``"plateau"`` (ReduceLROnPlateau on ``monitor``), ``"cosine"`` or ``None``.
        plateau_factor: LR factor of the plateau scheduler.
        plateau_patience: Epochs without improvement before the plateau scheduler decays.
        monitor: Metric the scheduler (and the usual checkpoint callback) follows.
        eval_chunk_size: Maximum crops per forward pass during evaluation (bounds memory).
        nonlocal_after: Backbone stages to follow with a non-local block (Wang et al. 2018), e.g.
            ``["layer2", "layer3"]``; see :func:`~musictag.models.nonlocal_block.insert_nonlocal`.
        channels_last: Keep the backbone in the channels_last memory format, so that its 2D
            convolutions, BatchNorms and pools run on oneDNN's channel-vectorised kernels (faster
            CPU training and inference of the conv models, see ``docs/benchmarks.md``; the
            results agree to float32 round-off, checkpoints are unchanged).
        fused_optimizer: Use the optimiser's fused kernel (one pass over all parameters per step
            instead of a dozen element-wise ops per tensor) where PyTorch has one for the device.
            Off by default: it changes the float round-off of every step, so a seeded run no
            longer repeats an earlier one exactly.
            Lightning refuses gradient clipping with a fused optimiser under
            ``precision="16-mixed"`` (it unscales internally): set ``False`` for that combination.
    """

    def __init__(
        self,
        backbone: str = "crnn",
        n_tags: int = 50,
        tags: Sequence[str] | None = None,
        sample_rate: int = 16000,
        crop_samples: int = 464000,
        eval_crops: int = 16,
        frontend: str = "logmel",
        frontend_kwargs: Mapping[str, Any] | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
        head_dropout: float = 0.5,
        multi_label: bool = True,
        loss: str | None = None,
        pos_weight: Sequence[float] | None = None,
        focal_gamma: float = 2.0,
        tta: str = "mean",
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str | None = "plateau",
        plateau_factor: float = 0.2,
        plateau_patience: int = 5,
        monitor: str = "val/pr_auc_macro",
        eval_chunk_size: int = 64,
        nonlocal_after: Sequence[str] = (),
        channels_last: bool = False,
        fused_optimizer: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        tags = list(tags) if tags is not None else [f"tag_{i}" for i in range(n_tags)]
        if len(tags) != n_tags:
            raise ValueError(f"got {len(tags)} tag names for n_tags={n_tags}")
        if pos_weight is not None and len(pos_weight) != n_tags:
            raise ValueError(f"pos_weight has {len(pos_weight)} entries for n_tags={n_tags}")
        self.tags = tags
        self.frontend = build_frontend(frontend, sample_rate, **dict(frontend_kwargs or {}))
        self.backbone: Backbone = build_backbone(
            backbone, n_mels=getattr(self.frontend, "n_mels", None), **dict(backbone_kwargs or {})
        )
        self.head = TagHead(self.backbone.embed_dim, n_tags, head_dropout)
        if nonlocal_after:  # after the head, so the other weights are drawn as without it
            insert_nonlocal(self.backbone, list(nonlocal_after))
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.loss_name = loss or ("bce" if multi_label else "ce")
        self.criterion = build_loss(self.loss_name, pos_weight, focal_gamma)
        self._build_metrics(n_tags)

    # ------------------------------------------------------------------ model
    @property
    def sample_rate(self) -> int:
        """Sample rate the model expects, in Hz."""
        return int(self.hparams.sample_rate)

    @property
    def crop_samples(self) -> int:
        """Input length of one crop, in samples."""
        return int(self.hparams.crop_samples)

    @property
    def n_tags(self) -> int:
        return len(self.tags)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Tag logits of a batch of waveforms.

        Args:
            waveform: ``[batch, samples]`` mono audio at ``sample_rate``.

        Returns:
            ``[batch, n_tags]`` logits.
        """
        return self.head(self.backbone(self.frontend(waveform)))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from logits: sigmoid (multi-label) or softmax (single-label)."""
        return torch.sigmoid(logits) if self.hparams.multi_label else logits.softmax(-1)

    def predict_proba(self, waveform: torch.Tensor) -> torch.Tensor:
        """Tag probabilities of a batch of single crops: ``[batch, samples]`` → ``[batch, n_tags]``."""
        return self.scores(self(waveform))

    def embed(self, waveform: torch.Tensor, layers: str = "last") -> torch.Tensor:
        """Embeddings of a batch of crops.

        Args:
            waveform: ``[batch, samples]``.
            layers: ``"last"``: the penultimate representation (input of the head);
                ``"all"``: the mean-pooled output of every backbone stage, concatenated (the
                multi-layer transfer features of Choi et al. 2017), followed by the embedding.

        Returns:
            ``[batch, dim]``.
        """
        features = self.frontend(waveform)
        if layers == "last":
            return self.backbone.forward_features(features)
        if layers == "all":
            emb, stages = self.backbone.forward_intermediates(features)
            return torch.cat([pool_stage(s) for s in stages] + [emb], dim=-1)
        raise ValueError(f"layers must be 'last' or 'all', got {layers!r}")

    def track_scores(self, crops: torch.Tensor) -> torch.Tensor:
        """Crop-averaged probabilities of tracks.

        Args:
            crops: ``[tracks, K, samples]``.

        Returns:
            ``[tracks, n_tags]`` aggregated with ``tta`` (mean by default).
        """
        logits = self._crop_logits(crops)
        return aggregate(self.scores(logits), self.hparams.tta)

    def _crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        b, k, n = crops.shape
        flat = crops.reshape(b * k, n)
        chunk = max(1, int(self.hparams.eval_chunk_size))
        logits = torch.cat([self(flat[i : i + chunk]) for i in range(0, b * k, chunk)])
        return logits.reshape(b, k, -1)

    def reset_head(
        self,
        n_tags: int,
        tags: Sequence[str] | None = None,
        *,
        multi_label: bool | None = None,
        pos_weight: Sequence[float] | None = None,
        loss: str | None = None,
    ) -> None:
        """Replace the output layer for a new tag set (fine-tuning); backbone and frontend are kept.

        Logs a warning that names the reset parameters (``head.fc.weight``, ``head.fc.bias``).

        Args:
            n_tags: New number of tags.
            tags: New tag names.
            multi_label: New label kind (default: unchanged); ``False`` switches to softmax,
                cross-entropy and accuracy.
            pos_weight: Per-tag positive weights of the new tags, ``[n_tags]`` (default: none).
            loss: New loss name (default: ``"bce"``/``"ce"`` when ``multi_label`` changes, else
                unchanged).
        """
        tags = list(tags) if tags is not None else [f"tag_{i}" for i in range(n_tags)]
        if len(tags) != n_tags:
            raise ValueError(f"got {len(tags)} tag names for n_tags={n_tags}")
        if pos_weight is not None and len(pos_weight) != n_tags:
            raise ValueError(f"pos_weight has {len(pos_weight)} entries for n_tags={n_tags}")
        old = tuple(self.head.fc.weight.shape)
        log.warning(
            "resetting the head for %d tags: head.fc.weight %s -> %s and head.fc.bias are "
            "trained from scratch; frontend and backbone are kept",
            n_tags,
            list(old),
            [n_tags, old[1]],
        )
        self.head = TagHead(self.backbone.embed_dim, n_tags, self.hparams.head_dropout)
        self.tags = tags
        self.hparams.n_tags = n_tags
        self.hparams.tags = tags
        self.hparams.pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]
        if multi_label is not None and bool(multi_label) != bool(self.hparams.multi_label):
            self.hparams.multi_label = bool(multi_label)
            self.hparams.loss = loss  # None: the default loss of the new label kind
            self.loss_name = loss or ("bce" if multi_label else "ce")
        elif loss is not None:
            self.hparams.loss = self.loss_name = loss
        self.criterion = build_loss(self.loss_name, pos_weight, self.hparams.focal_gamma)
        self._build_metrics(n_tags)

    def _build_metrics(self, n_tags: int) -> None:
        multi = bool(self.hparams.multi_label)
        self.val_metrics = tagging_metrics(n_tags, multi).clone(prefix="val/")
        self.test_metrics = tagging_metrics(n_tags, multi).clone(prefix="test/")
        self.test_tag_ap = per_tag_ap(n_tags)
        # how many tracks the metrics cover (a damaged track is skipped by the data module)
        self.val_tracks, self.test_tracks = SumMetric(), SumMetric()
        self.test_results: dict[str, float] = {}

    def save_preset_hyperparameters(self) -> None:
        """Record a preset's own constructor arguments as the hyperparameters.

        Presets (``CRNNTagger`` ...) call this at the end of ``__init__``: the stored hyperparameters
        are then the preset's arguments plus the Tagger options it forwards, without the ones the
        preset fills in itself (``backbone``, ``backbone_kwargs``, ``frontend``), so that
        ``Preset.load_from_checkpoint(path)`` rebuilds the same model.
        """
        frame = inspect.currentframe()
        self.save_hyperparameters(
            ignore=list(self._PRESET_OWNED), frame=frame.f_back if frame else None
        )

    _PRESET_OWNED = ("backbone", "backbone_kwargs", "frontend")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # lets load_tagger() find the class without unpickling anything
        from . import __version__

        checkpoint["musictag"] = {"tagger_class": type(self).__name__, "version": __version__}

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> Tagger:
        """Lightning's ``load_from_checkpoint``, but with ``weights_only=True`` by default.

        A musictag checkpoint holds only tensors and plain Python values, so it never needs the
        unsafe unpickler; pass ``weights_only=False`` only for a checkpoint you wrote yourself.
        """
        return super().load_from_checkpoint(
            checkpoint_path,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=weights_only,
            **kwargs,
        )

    # --------------------------------------------------------------- training
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        audio, target = batch["audio"], batch["target"]
        if audio.dim() != 2:
            raise ValueError(
                f"training batches hold one crop per track [B, samples], got {tuple(audio.shape)}"
            )
        # float32 loss under bf16 autocast (precision="bf16-mixed"): a no-op in float32
        loss = self.criterion(self(audio).float(), target)
        self.log("train/loss", loss, prog_bar=True, batch_size=audio.shape[0])
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> torch.Tensor:
        audio, target = batch["audio"], batch["target"]
        if audio.dim() == 2:  # one crop per track
            audio = audio.unsqueeze(1)
        logits = self._crop_logits(audio)
        k = logits.shape[1]
        loss = self.criterion(logits.flatten(0, 1), target.repeat_interleave(k, dim=0))
        track = aggregate(self.scores(logits), self.hparams.tta)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(track, target.int())
        (self.val_tracks if stage == "val" else self.test_tracks).update(target.shape[0])
        if stage == "test":
            self.test_tag_ap.update(track, target.int())
        self.log(f"{stage}/loss", loss, batch_size=audio.shape[0], sync_dist=True)
        return track

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        # the crop-averaged scores [B, n_tags] reach callbacks (musictag.callbacks.TagPlots)
        return self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        # compute() already gathered every rank's tracks, so the values agree on all ranks:
        # sync_dist averages equal values and spares a Lightning warning per metric under DDP
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.log("val/tracks_scored", self.val_tracks.compute(), sync_dist=True)
        self.val_metrics.reset()
        self.val_tracks.reset()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        results = {k: float(v) for k, v in self.test_metrics.compute().items()}
        results["test/tracks_scored"] = float(self.test_tracks.compute())
        per_tag = self.test_tag_ap.compute()
        for tag, ap in zip(self.tags, per_tag.tolist()):
            results[f"test/ap/{tag}"] = ap
        self.log_dict(results, sync_dist=True)
        self.test_results = results
        self.test_metrics.reset()
        self.test_tag_ap.reset()
        self.test_tracks.reset()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        audio = batch["audio"]
        if audio.dim() == 2:
            audio = audio.unsqueeze(1)
        return {"key": batch.get("key"), "scores": self.track_scores(audio)}

    # -------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        fused = {"fused": True} if _can_fuse(params, hp.get("fused_optimizer", False)) else {}
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay, **fused)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, **fused)
        elif hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                params,
                lr=hp.lr,
                momentum=0.9,
                nesterov=True,
                weight_decay=hp.weight_decay,
                **fused,
            )
        else:
            raise ValueError(f"unknown optimizer {hp.optimizer!r}; choose adam, adamw or sgd")
        if hp.scheduler is None or hp.scheduler == "none":
            return opt
        if hp.scheduler == "plateau":
            mode = "min" if "loss" in hp.monitor else "max"
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=mode, factor=hp.plateau_factor, patience=hp.plateau_patience
            )
            return {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": hp.monitor, "strict": False},
            }
        if hp.scheduler == "cosine":
            t_max = max(1, int(self.trainer.max_epochs or 1)) if self._trainer else 100
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
            return {"optimizer": opt, "lr_scheduler": sched}
        raise ValueError(f"unknown scheduler {hp.scheduler!r}; choose plateau, cosine or None")


def _can_fuse(params: list[torch.Tensor], wanted: bool) -> bool:
    """Whether the fused optimiser kernels apply: floating-point parameters on CPU or CUDA."""
    return (
        wanted
        and bool(params)
        and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    )
