"""A real 2-process DDP run on CPU (gloo) through a recipe: equal steps per rank (one training
track damaged: skipped and logged), every validation and test track counted exactly once, and
the same test figure as one process."""

from __future__ import annotations

import json
import logging
import sys
import tarfile
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from musictag import CRNNTagger, TagDataModule
from musictag.lightning_cli import main
from tests.recipes.miniature import (
    one_torch_thread,  # noqa: F401 (autouse fixture)
    write_miniature,
)
from tests.recipes.test_recipes import CASES, QUIET, load_recipe

N_TRAIN, N_VAL, N_TEST, BATCH = 11, 6, 10, 2
DAMAGED = "train005"  # in the second training shard


class RankRecorder(pl.Callback):
    """Writes what each rank saw (and the tracks it skipped, and warned of) to
    ``<out>/<stage>-rank<r>.json``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen: dict[str, list] = {}
        self.warnings: list[str] = []

    def setup(self, trainer, pl_module, stage):
        recorder = self

        class Handler(logging.Handler):
            def emit(self, record):
                recorder.warnings.append(record.getMessage())

        self.handler = Handler(logging.WARNING)
        logging.getLogger("musictag").addHandler(self.handler)

    def teardown(self, trainer, pl_module, stage):
        logging.getLogger("musictag").removeHandler(self.handler)

    def _add(self, stage: str, keys) -> None:
        self.seen.setdefault(stage, []).extend(keys)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._add("train", batch["key"])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        if not trainer.sanity_checking:
            self._add("val", batch["key"])

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self._add("test", batch["key"])

    def _dump(self, trainer, stage: str) -> None:
        record = {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "keys": self.seen,
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
            "skipped": [
                t.key for t in getattr(trainer.datamodule.read_report("train"), "skipped", [])
            ],
            "warnings": self.warnings,
        }
        path = self.out / f"{stage}-rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))
        self.seen = {}

    def on_fit_end(self, trainer, pl_module):
        self._dump(trainer, "fit")

    def on_test_end(self, trainer, pl_module):
        self._dump(trainer, "test")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ddp_fork needs fork (Linux)")
def test_two_process_ddp_run(tmp_path, monkeypatch):
    # shards of 4 tracks: 11 train tracks in 3 shards (rank 0 streams 7, rank 1 streams 4),
    # 10 test tracks in 3 shards (6 / 4): nothing divides evenly
    root = write_miniature(
        tmp_path / "gtzan",
        10,
        single_label=True,
        n_tracks={"train": N_TRAIN, "val": N_VAL, "test": N_TEST},
    )
    # one damaged training track: skipped and logged by the rank that reads it, and both ranks
    # still run the same number of steps
    shard = root / "train-000001.tar"
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith(f"{DAMAGED}."))
    data = bytearray(shard.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gtzan_crnn.py"])
    out = tmp_path / "ranks"
    out.mkdir()
    args = [
        "--data.root", str(root), *QUIET, *CASES["gtzan_crnn"][4],
        "--data.batch_size", str(BATCH), "--trainer.max_epochs", "1",
        "--trainer.devices", "2", "--trainer.strategy", "ddp_fork", "--trainer.logger", "false",
        "--checkpoint.dirpath", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    # no subcommand: fit one epoch on 2 processes, then test the best checkpoint on 2 processes
    config = load_recipe("gtzan_crnn").CONFIG
    cli = main(config, args, trainer_defaults={"callbacks": [RankRecorder(out)]})
    fit = [json.loads((out / f"fit-rank{r}.json").read_text()) for r in range(2)]
    test = [json.loads((out / f"test-rank{r}.json").read_text()) for r in range(2)]

    # every rank ran N // (world * batch) = 2 steps, although rank 0 holds 7 tracks, rank 1 4
    assert [f["world_size"] for f in fit] == [2, 2]
    assert [f["global_step"] for f in fit] == [N_TRAIN // (2 * BATCH)] * 2
    assert [len(f["keys"]["train"]) for f in fit] == [BATCH * (N_TRAIN // (2 * BATCH))] * 2
    # ... from disjoint shards: no training track on both ranks (a rank short of tracks for
    # the common step count cycles over its own shards)
    train0, train1 = (set(f["keys"]["train"]) for f in fit)
    assert train0 and train1 and not train0 & train1
    assert train0 | train1 <= {f"train{i:03d}" for i in range(N_TRAIN)} - {DAMAGED}
    # the damaged track: skipped by one rank, and logged there naming its shard and key
    assert {k for f in fit for k in f["skipped"]} == {DAMAGED}  # (met again when cycling)
    (reader,) = [f for f in fit if f["skipped"]]
    logged = [w for w in reader["warnings"] if f"skipping track {DAMAGED} of " in w]
    assert len(logged) == 1 and f"{shard.name}: checksum mismatch" in logged[0], logged
    # validation and test: each track on exactly one rank
    for stage, n, records in (("val", N_VAL, fit), ("test", N_TEST, test)):
        per_rank = [r["keys"][stage] for r in records]
        assert all(per_rank), f"a rank saw no {stage} track"
        keys = per_rank[0] + per_rank[1]
        assert sorted(keys) == [f"{stage}{i:03d}" for i in range(n)]
    assert sorted(len(r["keys"]["test"]) for r in test) == [4, 6]

    # the metrics are synchronised: both ranks report one value, that of a single process
    ddp = [r["metrics"]["test/pr_auc_macro"] for r in test]
    assert ddp[0] == ddp[1]
    best = cli.trainer.checkpoint_callback.best_model_path
    assert Path(best).is_file()
    model = CRNNTagger.load_from_checkpoint(best)
    dm = TagDataModule(root=str(root), crop_samples=model.crop_samples, eval_crops=2, batch_size=2)
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    single.test(model, datamodule=dm, verbose=False)
    assert single.callback_metrics["test/pr_auc_macro"].item() == pytest.approx(ddp[0], abs=1e-6)
    assert torch.isfinite(torch.tensor(ddp[0]))
