"""The input pipeline's speed-up over on-the-fly decoding must not silently disappear.

A loose, same-process ratio (the real figures are in docs/benchmarks.md): musictag's training
loader over FLAC shards against baseline (a) of ``benchmarks/input_pipeline.py`` (decode and
resample each whole compressed file, librosa log-mel, crop), on the same few files, best of a few
interleaved repeats so that a busy CI machine slows both alike.
"""

from __future__ import annotations

import copy
import io
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import musictag
from benchmarks._common import synth_track
from benchmarks.input_pipeline import Mp3MelDataset, numpy_collate
from benchmarks.utilisation import count_flops, inference_work, interleaved_best, matmul_rate
from musictag.data.datamodule import TagDataModule
from musictag.data.shards import AudioItem, write_shards
from musictag.optimize import optimize_for_inference

CROP = 59049
N_FILES, SECONDS, BATCH = 8, 8.0, 4


def _lossy_format() -> tuple[str, str] | None:
    """MP3 where libsndfile can write it (>= 1.1), else Ogg Vorbis: a compressed codec."""
    for ext, fmt in (("mp3", "MP3"), ("ogg", "OGG")):
        try:
            sf.write(io.BytesIO(), np.zeros((2048, 2), np.float32), 44100, format=fmt)
        except Exception:  # noqa: BLE001 - any codec failure means "not available"
            continue
        return ext, fmt
    return None


def _best_rate(loader: DataLoader, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["target"])
        best = max(best, n / (time.perf_counter() - start))
    return best


@pytest.mark.slow
def test_shard_pipeline_beats_on_the_fly_decoding(tmp_path):
    codec = _lossy_format()
    if codec is None:
        pytest.skip("libsndfile can write neither MP3 nor Ogg Vorbis here")
    ext, fmt = codec
    items = []
    for i in range(N_FILES):  # two distinct tracks (encoding is slow), copied
        path = tmp_path / f"{i}.{ext}"
        if i < 2:
            sf.write(path, synth_track(SECONDS, 44100, seed=i), 44100, format=fmt)
        else:
            shutil.copyfile(items[i % 2].path, path)
        items.append(AudioItem(path, tags=("rock",) if i % 2 else ("jazz", "pop")))
    write_shards(items, tmp_path / "shards", max_samples_per_shard=4, progress=False)

    dm = TagDataModule(root=str(tmp_path / "shards"), crop_samples=CROP, batch_size=BATCH)
    ours = dm.train_dataloader()
    baseline = DataLoader(
        Mp3MelDataset(items, dm.vocab, CROP), batch_size=BATCH, collate_fn=numpy_collate
    )
    batch = next(iter(ours))  # warm-up both (codecs, librosa's filter caches)
    assert batch["audio"].shape == (BATCH, CROP)
    assert next(iter(baseline))["mel"].shape == (BATCH, 96, 1 + CROP // 256)

    rates = {"ours": 0.0, "baseline": 0.0}
    for _ in range(3):  # interleaved: a burst of load hits both
        rates["ours"] = max(rates["ours"], _best_rate(ours, 3))
        rates["baseline"] = max(rates["baseline"], _best_rate(baseline, 1))
    ratio = rates["ours"] / rates["baseline"]
    # measured ~10-15x on 8-s files (more on 30-s tracks: docs/benchmarks.md); 3x is the floor
    assert ratio >= 3.0, f"{rates} (ratio {ratio:.1f}x)"


@pytest.mark.slow
def test_inference_decodes_while_the_model_runs(tmp_path):
    """``Inference`` decodes the next files on a thread while the model scores: the wall time
    is near the longer of decoding and the model, not their sum. The model here sleeps (a
    stand-in for work on other cores) as long as decoding takes, so a busy machine slows both
    modes alike; decoding in turn takes about twice as long as decoding ahead."""
    import torch

    from musictag.audio import stream_audio
    from musictag.inference import Inference
    from tests.test_inference import tiny_crnn

    codec = _lossy_format()
    if codec is None:
        pytest.skip("libsndfile can write neither MP3 nor Ogg Vorbis here")
    ext, fmt = codec
    files = []
    for i in range(6):  # three encodings (slow), each twice
        files.append(tmp_path / f"{i}.{ext}")
        if i < 3:
            sf.write(files[-1], synth_track(20.0, 48000, seed=i), 48000, format=fmt)
        else:
            shutil.copyfile(files[i - 3], files[-1])
    model = tiny_crnn()  # 0.5-s windows at 8 kHz: 240 windows, 15 batches of 16
    start = time.perf_counter()
    for f in files:
        sum(chunk.size for chunk in stream_audio(f, model.sample_rate))
    pause = (time.perf_counter() - start) / 15
    # the model's own work is left out: on a loaded machine its threads' waits dwarf decoding
    model.forward = lambda x: time.sleep(pause) or torch.zeros(len(x), model.n_tags)

    def wall(prefetch: int) -> float:
        inference = Inference(model, batch_size=16, prefetch=prefetch, optimize=False)
        start = time.perf_counter()
        assert all(not isinstance(r, Exception) for _, r in inference.iter_files(files))
        return time.perf_counter() - start

    walls = {0: float("inf"), 1: float("inf")}
    for _ in range(2):  # interleaved, best of 2
        for prefetch in walls:
            walls[prefetch] = min(walls[prefetch], wall(prefetch))
    # ideal 0.5; measured ~0.55-0.6 (docs/benchmarks.md); 0.8 is the floor
    assert walls[1] < 0.8 * walls[0], walls


def test_fcn_inference_keeps_a_share_of_the_matmul_rate():
    """The optimised FCN's GFLOP/s against a 1024² matmul timed in between (best of a few).

    Measured 44 % of the matmul rate for 29-s crops at batch 16 (docs/benchmarks.md) and 18-117 %
    for this small 5-s batch against a 1024² matmul, depending on the load; the floor only catches
    a collapse (a lost layout or folding), and the optimised copy must stay clearly faster than
    the eager tagger timed alongside (2.5-5.8× measured).
    """
    torch.manual_seed(0)
    model = musictag.create_model("fcn", n_tags=8).eval()
    x = 0.3 * torch.randn(4, 5 * model.sample_rate)
    fast = optimize_for_inference(model, x[:1], channels_last=True)
    matmul = matmul_rate(1024)
    eager_work = inference_work(model, x, "fp32")
    fast_work = inference_work(fast, x, "fp32")
    flops = count_flops(fast_work)
    best = {"eager": 0.0, "fast": 0.0, "share": 0.0}
    for _ in range(3):  # a burst of load on the shared machine hits the neighbours alike
        eager_s, _ = interleaved_best(eager_work, matmul, 2, torch.device("cpu"))
        fast_s, rate = interleaved_best(fast_work, matmul, 2, torch.device("cpu"))
        best["share"] = max(best["share"], flops / fast_s / 1e9 / rate)
        best["eager"], best["fast"] = max(best["eager"], 1 / eager_s), max(best["fast"], 1 / fast_s)
        if best["share"] >= 0.12 and best["fast"] >= 1.3 * best["eager"]:
            break
    print(
        f"optimised FCN: {100 * best['share']:.0f} % of the matmul rate, "
        f"{best['fast'] / best['eager']:.2f}x the eager tagger"
    )
    assert best["share"] >= 0.12, best
    assert best["fast"] >= 1.3 * best["eager"], best


def test_bf16_mixed_training_step_beats_float32_where_native():
    """The bf16-mixed training step against float32 of the same small short-chunk CNN, alternated.

    docs/benchmarks.md measured 1.5-3.6x for the zoo's CNNs at batch 16 on a CPU with AVX512-BF16;
    2.5x best-of for this model at load 7. The floor, 1.2x, only catches a lost bf16 kernel or
    layout. Where bf16 is emulated, musictag must not choose it.
    """
    from musictag.precision import autocast, has_native_bf16, training_precision

    if not has_native_bf16("cpu"):
        assert training_precision("cpu") == "32-true"
        return
    x = 0.3 * torch.randn(4, 48000, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(4, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()

    def step_of(precision: str, **options):
        torch.manual_seed(0)
        model = musictag.create_model(
            "short", n_tags=8, channels=[32] * 4 + [64] * 3, crop_samples=48000, scheduler=None,
            **options,
        )  # fmt: skip
        model.train()
        opt = model.configure_optimizers()

        def step() -> None:
            with autocast("cpu", precision):
                loss = model.criterion(model(x).float(), target)
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()  # warm-up: oneDNN primitives
        return step

    fp32 = step_of("32-true")
    bf16 = step_of(training_precision("cpu"), channels_last=True, fused_optimizer=True)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(4):  # alternated, so that a burst of load hits both
        for name, step in (("fp32", fp32), ("bf16", bf16)):
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
        if best["fp32"] >= 1.2 * best["bf16"]:
            break
    print(f"bf16-mixed training step: {best['fp32'] / best['bf16']:.2f}x float32")
    assert best["fp32"] >= 1.2 * best["bf16"], best


def test_musicnn_vertical_filters_train_faster_than_as_a_2d_convolution():
    """Musicnn's vertical filter (``vertical_conv``, a 1D convolution over frequency windows)
    against the same filter as the published 2D convolution with ``amax``, forward and backward
    in float32, alternated. docs/benchmarks.md: 3-4x for the zoo's 204 filters at batch 16; 1.6x
    (2 threads, load 3) and 2.9x (1 thread) for this small one. The floor catches a lost rewrite.
    """
    from musictag.models.musicnn import ConvV

    torch.manual_seed(0)
    block = ConvV(1, 64, (67, 7)).train()
    conv2d = copy.deepcopy(block)
    x = torch.randn(4, 1, 96, 188, requires_grad=True)
    steps = {
        "conv2d": lambda: conv2d.relu(conv2d.bn(conv2d.conv(x))).amax(dim=2).sum().backward(),
        "vertical_conv": lambda: block(x).sum().backward(),
    }
    best = dict.fromkeys(steps, float("inf"))
    for step in steps.values():
        step()  # warm-up: oneDNN primitives
    for _ in range(4):  # alternated, so that a burst of load hits both
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
        if best["conv2d"] >= 1.3 * best["vertical_conv"]:
            break
    assert best["conv2d"] >= 1.3 * best["vertical_conv"], best
