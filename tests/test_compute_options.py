"""The Tagger's speed options and the utilisation benchmark's GPU paths, exercised on CPU."""

from __future__ import annotations

import copy
import json

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import musictag
from benchmarks import train_speedup, utilisation
from musictag import precision


def _tiny(**options):
    torch.manual_seed(0)
    return musictag.create_model(
        "short", n_tags=4, channels=[8, 8, 16], n_mels=32, crop_samples=16000, **options
    )


def test_channels_last_and_fused_optimizer_keep_the_results():
    plain = _tiny(channels_last=False, fused_optimizer=False)
    fast = _tiny(channels_last=True, fused_optimizer=True)
    assert fast.backbone.layer1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    opt_plain, opt_fast = (
        plain.configure_optimizers()["optimizer"],
        fast.configure_optimizers()["optimizer"],
    )
    assert opt_fast.defaults["fused"] and not opt_plain.defaults.get("fused")
    x = 0.3 * torch.randn(4, 16000, generator=torch.Generator().manual_seed(1))
    plain.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)
    target = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]]).float()
    losses = {"plain": [], "fast": []}
    for step in range(3):
        for label, model, opt in (("plain", plain, opt_plain), ("fast", fast, opt_fast)):
            model.train()
            torch.manual_seed(step)  # same dropout masks
            loss = model.criterion(model(x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[label].append(loss.item())
    assert losses["fast"][-1] < losses["fast"][0]  # it learns
    for a, b in zip(losses["plain"], losses["fast"]):
        assert abs(a - b) <= 1e-3 * abs(a)  # float32 round-off through Adam, 3 steps


def test_old_hyperparameters_without_the_options_still_configure():
    model = _tiny()
    del model.hparams["fused_optimizer"]  # a checkpoint written before the option existed
    opt = model.configure_optimizers()["optimizer"]
    assert not opt.defaults.get("fused")  # as it was trained


def test_utilisation_benchmark_writes_its_rows(tmp_path):
    out = tmp_path / "u.json"
    rows = utilisation.main(
        [
            "--models", "musicnn",
            "--batch", "1",
            "--train-batch", "2",
            "--repeats", "1",
            "--matmul", "256",
            "--optimize",
            "--json", str(out),
        ]
    )  # fmt: skip
    modes = [r["mode"] for r in rows]
    assert modes == ["inference", "inference, optimised", "training step"]
    saved = json.loads(out.read_text())
    assert saved["precision"] == "fp32" and saved["rows"] == json.loads(json.dumps(rows))
    for row in rows:
        assert row["gflop_per_sample"] > 0 and row["matmul_gflops"] > 0
        assert 0 < row["share"] == row["gflops"] / row["matmul_gflops"]
    assert rows[0]["gflop_per_sample"] == rows[1]["gflop_per_sample"]  # same convolutions
    # training counts forward and backward: about 3x the inference FLOPs
    assert 2.0 < rows[2]["gflop_per_sample"] / rows[0]["gflop_per_sample"] < 4.0


def test_bf16_autocast_paths_run_on_cpu():
    """What ``--device cuda`` runs (bf16 autocast inference and training), checked on CPU."""
    model = _tiny().eval()
    x = 0.3 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    got = utilisation.inference_work(model, x, "bf16")()
    assert got.dtype == torch.bfloat16  # the head ran in bf16
    assert float((got.float() - want).abs().max()) < 0.05 * float(want.abs().max()) + 0.05
    rate = utilisation.matmul_rate(128, "cpu", torch.bfloat16)()
    assert rate > 0
    before = model.backbone.layer1.conv.weight.detach().clone()
    step = utilisation.training_work(model, x, "bf16")
    losses = torch.tensor([float(step()) for _ in range(2)])
    assert torch.isfinite(losses).all()
    assert model.backbone.layer1.conv.weight.dtype == torch.float32  # autocast: fp32 weights
    assert not torch.equal(model.backbone.layer1.conv.weight, before)  # the step updated them


def test_train_speedup_compares_the_same_steps():
    small = {"channels": [8, 8, 16], "n_mels": 32, "crop_samples": 16000}
    row = train_speedup.compare("short", batch=2, steps=1, warmup=1, after="fp32", **small)
    assert len(row["before_losses"]) == len(row["after_losses"]) == len(row["current_losses"]) == 2
    assert row["max_loss_rel_diff"] < 1e-3 and row["speedup"] > 0
    # the c401046 copy only moves the ReLU after the pool back: the same float32 losses
    assert row["current_loss_rel_diff"] < 1e-6 and row["speedup_vs_current"] > 0
    row = train_speedup.compare("short", batch=2, steps=1, warmup=1, current=False, **small)
    assert "current_samples_s" not in row  # bf16-mixed against the c401046 copy only
    assert row["after"]["precision"] == "bf16-mixed" and row["after"]["channels_last"]
    assert 0 < row["max_loss_rel_diff"] < BF16_LOSS_TOLERANCE
    assert not train_speedup.after_options("musicnn")["channels_last"]  # no 2D conv to gain


def test_c401046_baseline_runs_the_blocks_of_then_with_the_same_values():
    """``as_of_c401046`` restores the forward of the blocks that changed since issue 14 was filed.
    Checked once against that commit's own code: bit-identical float32 losses over 3 steps of
    fcn, musicnn, short and short_res (docs/benchmarks.md)."""
    torch.manual_seed(0)
    now = musictag.create_model("musicnn", n_tags=4, backend_channels=8, embed_dim=16).eval()
    then = train_speedup.as_of_c401046(copy.deepcopy(now))
    conv_v = then.backbone.layers[0]
    assert conv_v.forward.__func__ is train_speedup.FORWARD_C401046[type(conv_v)]
    assert (
        then.backbone.layer1.forward.__func__
        is train_speedup.FORWARD_C401046[type(then.backbone.layer1)]
    )
    x = 0.3 * torch.randn(2, now.crop_samples, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(then(x), now(x), rtol=1e-5, atol=1e-5)


BF16_LOSS_TOLERANCE = 0.10
"""Largest relative difference of a bf16-mixed loss curve from float32's over the first 8 Adam
steps (lr 1e-3) of the same model on the same batches: measured 4.6 % for the tiny model and batch
below (1 or 2 threads) and 5-7.5 % for four other batches (float32 with channels_last and the fused
optimiser: 1e-5), 2-7 % over the first 4 steps of the zoo's fcn, musicnn, short and short_res
(docs/benchmarks.md)."""


def _loss_curve(model, x, target, mode: str, steps: int) -> list[float]:
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    model.train()
    losses = []
    for step in range(steps):
        torch.manual_seed(step)  # same dropout masks
        with precision.autocast("cpu", mode):
            loss = model.criterion(model(x).float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_bf16_mixed_training_keeps_the_loss_curve():
    x = 0.3 * torch.randn(4, 16000, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]]).float()
    fp32 = _loss_curve(_tiny(), x, target, "32-true", 8)
    fast = _tiny(channels_last=True, fused_optimizer=True)
    dtypes = {}

    def record(name):
        def hook(module, inputs, output):  # returns None: the output is kept
            dtypes.setdefault(name, output.dtype)

        return hook

    fast.frontend.register_forward_hook(record("frontend"))
    fast.backbone.layer1.conv.register_forward_hook(record("conv"))
    bf16 = _loss_curve(fast, x, target, "bf16-mixed", 8)
    assert dtypes == {"frontend": torch.float32, "conv": torch.bfloat16}  # log-mel stays fp32
    assert fast.backbone.layer1.conv.weight.dtype == torch.float32  # fp32 master weights
    assert abs(bf16[0] - fp32[0]) <= 0.01 * fp32[0]  # same weights: bf16 forward round-off only
    for a, b in zip(fp32, bf16):
        assert abs(a - b) <= BF16_LOSS_TOLERANCE * a, (fp32, bf16)
    assert bf16[-1] < 0.6 * bf16[0] and fp32[-1] < 0.6 * fp32[0]  # both learn the batch


def test_training_precision_follows_the_hardware(monkeypatch):
    cpu_native = precision.has_native_bf16("cpu")
    assert precision.training_precision("cpu") == ("bf16-mixed" if cpu_native else "32-true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, want in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert precision.training_precision(torch.device("cuda", 0)) == want
    assert precision.training_precision("meta") == "32-true"
    with pytest.raises(ValueError, match="16-mixed"):
        with precision.autocast("cpu", "16-mixed"):
            pass


def test_lightning_trains_a_tagger_in_bf16_mixed(tmp_path):
    """The option as users set it: ``Trainer(precision="bf16-mixed")`` on the CPU."""
    model = _tiny(fused_optimizer=True, scheduler=None)
    g = torch.Generator().manual_seed(2)
    batches = [
        {"audio": 0.3 * torch.randn(2, 16000, generator=g), "target": torch.eye(4)[[0, 2]]}
        for _ in range(3)
    ]
    before = model.head.fc.weight.detach().clone()
    trainer = pl.Trainer(
        accelerator="cpu", precision="bf16-mixed", max_steps=3, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    loss = trainer.callback_metrics["train/loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert model.head.fc.weight.dtype == torch.float32
    assert not torch.equal(model.head.fc.weight, before)
