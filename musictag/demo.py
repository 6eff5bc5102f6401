"""``musictag demo``: the whole path on the embedded synthetic collection, on a laptop CPU.

synthetic audio + labels → shards → TagDataModule → CRNNTagger → best checkpoint → test metrics
→ top tags of a few test clips. Every step is the one a real collection goes through.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl

from .data.datamodule import TagDataModule
from .data.shards import write_shards
from .data.sources.synth import generate_collection, load_labels
from .inference import tag_file
from .presets import CRNNTagger
from .results import TagResult

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Settings of the demo; the defaults finish in a few minutes on 2 CPU cores.

    Attributes:
        out_dir: Where audio, shards, logs and the checkpoint go.
        n_clips: Synthetic clips in the collection (split 70/15/15).
        clip_seconds: Length of each clip.
        crop_seconds: Training / evaluation crop length.
        eval_crops: Crops per track for validation and test.
        sample_rate: Sample rate of shards and model.
        n_mels: Mel bands of the frontend.
        n_fft: FFT size of the frontend (1024 at 16 kHz resolves the thirds that tell the mode).
        hop_length: Frame hop of the frontend.
        channels: Conv channels of the CRNN.
        batch_size: Training batch size.
        lr: Adam learning rate.
        max_epochs: Upper bound on epochs.
        max_minutes: Training time budget (the best checkpoint so far is used when it runs out);
            ``None``: no time limit, only ``max_epochs`` (deterministic, for tests).
        num_workers: Data-loader worker processes.
        val_every: Validate every this many epochs (validation picks the checkpoint).
        seed: Seed of data generation and training.
        progress: Show progress bars.
    """

    out_dir: Path = Path("musictag-demo")
    n_clips: int = 400
    clip_seconds: float = 4.0
    crop_seconds: float = 2.0
    eval_crops: int = 4
    sample_rate: int = 16000
    n_mels: int = 96
    channels: tuple[int, ...] = (16, 32, 32, 32)
    n_fft: int = 1024
    hop_length: int = 512
    batch_size: int = 16
    lr: float = 3e-3
    max_epochs: int = 60
    max_minutes: float | None = 3.5
    num_workers: int = 1
    val_every: int = 1
    seed: int = 0
    progress: bool = True


@dataclass
class DemoResult:
    """What the demo produced."""

    metrics: dict[str, float]
    checkpoint: Path
    examples: list[tuple[str, list[str], TagResult]] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0


def run_demo(cfg: DemoConfig | None = None) -> DemoResult:
    """Run the demo end to end.

    Returns:
        Test metrics, the checkpoint path and the top tags of three test clips.
    """
    cfg = cfg or DemoConfig()
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    log.info("generating %d synthetic clips in %s", cfg.n_clips, out / "synth")
    labels = generate_collection(
        out / "synth",
        n_clips=cfg.n_clips,
        duration=cfg.clip_seconds,
        sample_rate=cfg.sample_rate,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    splits = load_labels(labels)
    log.info("writing shards to %s", out / "shards")
    write_shards(
        splits,
        out / "shards",
        sample_rate=cfg.sample_rate,
        max_samples_per_shard=64,
        workers=1,
        provenance={"source": "synth", "seed": cfg.seed, "n_clips": cfg.n_clips},
        progress=cfg.progress,
    )

    crop = int(cfg.crop_seconds * cfg.sample_rate)
    dm = TagDataModule(
        root=str(out / "shards"),
        crop_samples=crop,
        eval_crops=cfg.eval_crops,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        shuffle_buffer=256,
        seed=cfg.seed,
    )
    model = CRNNTagger(
        n_tags=dm.n_tags,
        tags=dm.tags,
        n_mels=cfg.n_mels,
        channels=cfg.channels,
        frontend_kwargs={"n_fft": cfg.n_fft, "hop_length": cfg.hop_length},
        pools=((2, 2), (2, 2), (2, 2), (2, 1)),
        # keep which mel bands are active (the mode is a pitch pattern) and read the whole
        # sequence (tempo): the published last-step, max-over-frequency CRNN learns these
        # about twice as slowly, too slowly for a few-minute CPU budget
        freq_reduce="flatten",
        readout="mean_max",
        sample_rate=cfg.sample_rate,
        crop_samples=crop,
        eval_crops=cfg.eval_crops,
        lr=cfg.lr,
        plateau_patience=3,
        head_dropout=0.3,
    )
    ckpt_cb = pl.callbacks.ModelCheckpoint(
        dirpath=out / "checkpoints", monitor="val/pr_auc_macro", mode="max", save_last=False
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=cfg.max_epochs,
        max_time=None if cfg.max_minutes is None else {"minutes": cfg.max_minutes},
        callbacks=[ckpt_cb],
        logger=pl.loggers.CSVLogger(out, name="logs"),
        enable_progress_bar=cfg.progress,
        enable_model_summary=cfg.progress,
        default_root_dir=out,
        check_val_every_n_epoch=cfg.val_every,
    )
    trainer.fit(model, datamodule=dm)
    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else None
    if best is None:
        raise RuntimeError("training produced no checkpoint (no validation ran within the budget)")
    trainer.test(model, datamodule=dm, ckpt_path=str(best), verbose=False)
    metrics = {k: v for k, v in model.test_results.items() if "/ap/" not in k}
    final = out / "demo.ckpt"
    final.write_bytes(best.read_bytes())

    tagged = CRNNTagger.load_from_checkpoint(final).eval()
    examples = []
    for item in splits["test"][:3]:
        examples.append((str(item.track_id), list(item.tags), tag_file(tagged, item.path)))
    return DemoResult(
        metrics=metrics,
        checkpoint=final,
        examples=examples,
        epochs=trainer.current_epoch,
        seconds=time.perf_counter() - t0,
    )
