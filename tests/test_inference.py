"""Streamed sliding-window inference and the predict command (and the helpers other tests use)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from musictag.audio import AudioReadError, load_audio
from musictag.cli import main
from musictag.inference import Inference, tag_file
from musictag.presets import CRNNTagger
from musictag.results import TagResult, WindowScores
from musictag.search import embed_file
from musictag.tta import extract_crops, window_starts

SR = 8000
CROP = 4000
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_crnn(n_tags: int = 4, seed: int = 0, tags: list[str] | None = None) -> CRNNTagger:
    """A CRNN small enough for tests: 8 kHz, 0.5-s windows (tags ``t0, t1, ...`` by default)."""
    torch.manual_seed(seed)
    tags = tags or [f"t{i}" for i in range(n_tags)]
    return CRNNTagger(
        n_tags=len(tags),
        tags=tags,
        n_mels=32,
        channels=(8, 8, 8, 8),
        pools=((2, 2), (2, 2), (2, 2), (4, 2)),
        sample_rate=SR,
        crop_samples=CROP,
        eval_crops=4,
        frontend_kwargs={"f_max": SR / 2},
    ).eval()


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Write ``model`` as a Lightning checkpoint that ``load_tagger`` reads."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=path.parent,
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path, weights_only=True)
    return path


def noise_file(path: Path, seconds: float, rate: int = SR, channels: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
    x = x[:, None] + 0.05 * rng.standard_normal((t.size, channels))
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")
    return path


def hand_scores(model: CRNNTagger, wave: np.ndarray, starts) -> np.ndarray:
    windows = []
    for s in starts:
        w = wave[s : s + model.crop_samples]
        windows.append(np.pad(w, (0, model.crop_samples - w.size)))
    with torch.no_grad():
        return model.predict_proba(torch.from_numpy(np.stack(windows))).numpy()


# ------------------------------------------------------------------------------- inference
def test_long_file_window_scores_equal_hand_cut_windows(tmp_path):
    model = tiny_crnn()
    path = noise_file(tmp_path / "long.wav", 12.3)  # at the model's rate: no resampling
    wave, _ = sf.read(path, dtype="float32")
    hop = 3000
    result = Inference(model, hop=hop, batch_size=7, block_frames=1000)(path)
    starts = window_starts(wave.size, CROP, hop)
    assert result.starts.tolist() == starts and len(starts) == 33
    ref = hand_scores(model, wave, starts)
    np.testing.assert_allclose(result.window_scores, ref, atol=2e-6, rtol=0)
    np.testing.assert_allclose(result.scores, ref.mean(0), atol=1e-6, rtol=0)
    high = tag_file(model, path, hop=hop, how="max")
    np.testing.assert_allclose(high.scores, ref.max(0), atol=2e-6, rtol=0)
    assert result.times[1] == pytest.approx(hop / SR)


def test_resampled_stereo_file_and_crops(tmp_path):
    model = tiny_crnn()
    path = noise_file(tmp_path / "st.wav", 3.1, rate=22050, channels=2, seed=1)
    mono = load_audio(path, SR)
    result = tag_file(model, path, hop=1500)
    ref = hand_scores(model, mono, window_starts(mono.size, CROP, 1500))
    np.testing.assert_allclose(result.window_scores, ref, atol=2e-6, rtol=0)
    # K crops: the evaluation protocol of Tagger.track_scores
    crops = tag_file(model, path, crops=4)
    with torch.no_grad():
        track = model.track_scores(extract_crops(torch.from_numpy(mono), CROP, 4)[None])[0]
    np.testing.assert_allclose(crops.scores, track.numpy(), atol=1e-6, rtol=0)
    assert len(crops.starts) == 4
    # a waveform in memory at another rate gives the same as the file
    again = Inference(model, hop=1500)(sf.read(path, dtype="float32")[0], sample_rate=22050)
    np.testing.assert_array_equal(again.window_scores, result.window_scores)
    # shorter than one window: one zero-padded window
    short = noise_file(tmp_path / "short.wav", 0.2)
    assert tag_file(model, short).window_scores.shape == (1, 4)


def test_stereo_mp3_and_mono_wav_of_the_same_music_score_alike(tmp_path, shared_dir):
    """Published MTAT musicnn on synthetic music: 44.1 kHz stereo (wav, mp3) vs 16 kHz mono wav."""
    from musictag.data.sources.synth import render_clip, sample_spec
    from musictag.pretrained import convert_sota

    model = convert_sota(
        shared_dir / "pretrained/sota/mtat/musicnn/best_model.pth", "musicnn", "mtat"
    )
    for i in (0,):  # the clip with the largest mp3 difference of the six measured
        x = render_clip(sample_spec(np.random.default_rng([1, i]), i, 6.0), 44100)
        stereo = 0.9 * np.stack([x, 0.9 * x], axis=1)
        sf.write(tmp_path / f"{i}.mp3", stereo, 44100, compression_level=0.0)  # ~200 kbit/s VBR
        sf.write(tmp_path / f"{i}s.wav", stereo, 44100, subtype="PCM_16")
        mono = soxr.resample(stereo.mean(axis=1), 44100, 16000, quality="HQ")
        sf.write(tmp_path / f"{i}m.wav", mono, 16000, subtype="PCM_16")
        ref = tag_file(model, tmp_path / f"{i}m.wav")
        wav = tag_file(model, tmp_path / f"{i}s.wav")
        mp3 = tag_file(model, tmp_path / f"{i}.mp3")
        assert ref.window_scores.shape == (2, 50)
        # lossless: the pipeline (downmix, resampling) costs only 16-bit rounding
        assert np.abs(wav.scores - ref.scores).max() < 2e-3
        # mp3 is lossy (measured: max |diff| 0.029 over 6 clips)
        assert np.abs(mp3.scores - ref.scores).max() < 0.05
        assert mp3.top(1)[0][0] == ref.top(1)[0][0]


def test_iter_files_shares_batches_and_reports_bad_files(tmp_path):
    model = tiny_crnn()
    good = [noise_file(tmp_path / f"{i}.wav", 0.7 + 0.5 * i, seed=i) for i in range(3)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not audio")
    files = [good[0], bad, good[1], tmp_path / "missing.flac", good[2]]
    out = list(Inference(model, hop=1000, batch_size=5).iter_files(files))
    assert [p for p, _ in out] == files
    for path, result in out:
        if path in good:
            alone = tag_file(model, path, hop=1000)
            np.testing.assert_allclose(result.window_scores, alone.window_scores, atol=2e-6)
        else:
            assert isinstance(result, AudioReadError) and str(path) in str(result)


def test_stream_reports_batches_then_the_track(tmp_path):
    model = tiny_crnn()
    path = noise_file(tmp_path / "a.wav", 3.3)
    inference = Inference(model, hop=1000, batch_size=4, embeddings="last")
    whole = inference(path)
    *batches, last = list(inference.stream(path))
    n = len(whole.starts)  # 24 windows: batches of 4
    assert [len(b.starts) for b in batches] == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    assert all(isinstance(b, WindowScores) for b in batches) and isinstance(last, TagResult)
    np.testing.assert_array_equal(np.concatenate([b.starts for b in batches]), whole.starts)
    np.testing.assert_allclose(np.concatenate([b.scores for b in batches]), whole.window_scores)
    np.testing.assert_allclose(last.scores, whole.scores)
    np.testing.assert_allclose(last.embedding, whole.embedding)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not audio")
    with pytest.raises(AudioReadError, match="bad.wav"):
        list(inference.stream(bad))


# ------------------------------------------------------------------------------ commands, API
@pytest.mark.slow
def test_predict_command_and_tagger_api(tmp_path, capsys, caplog):
    model = tiny_crnn()
    ckpt = save_checkpoint(model, tmp_path / "m.ckpt")
    music = tmp_path / "music"
    (music / "sub").mkdir(parents=True)
    noise_file(music / "one.wav", 2.0)
    noise_file(music / "sub" / "two.wav", 1.2, rate=16000, channels=2, seed=1)
    (music / "broken.wav").write_bytes(b"RIFF....WAVE")
    plot = tmp_path / "plots" / "act.png"
    args = ["predict", str(ckpt), str(music), "--quiet", "--format", "json", "--top-k", "2"]
    with caplog.at_level(logging.ERROR, logger="musictag"):
        rc = main([*args, "--hop-seconds", "0.25", "--windows", "--plot", str(plot)])
    assert rc == 0
    docs = json.loads(capsys.readouterr().out)
    assert [Path(d["file"]).name for d in docs] == ["one.wav", "two.wav"]
    assert all(len(d["tags"]) == 2 for d in docs)
    assert len(docs[0]["windows"]["start_s"]) == len(window_starts(2 * SR, CROP, 2000))
    assert "broken.wav" in caplog.text
    for stem in ("one", "two"):
        assert (plot.parent / f"act_{stem}.png").read_bytes()[:8] == PNG
    # the Python API gives the same scores
    loaded = CRNNTagger.load_from_checkpoint(ckpt)
    result = tag_file(loaded, music / "one.wav", top_k=2, hop=2000)
    assert [t for t, _ in result.labels] == [d["tag"] for d in docs[0]["tags"]]
    assert result.labels[0][1] == pytest.approx(docs[0]["tags"][0]["score"], abs=1e-6)
    np.testing.assert_allclose(
        embed_file(loaded, music / "one.wav"), embed_file(model, music / "one.wav"), atol=1e-6
    )
    # CSV, threshold, file list, output file
    lst = tmp_path / "l.txt"
    lst.write_text("music/one.wav\n")
    out = tmp_path / "r.csv"
    assert (
        main(
            [
                "predict",
                str(ckpt),
                f"@{lst}",
                "--quiet",
                "--format",
                "csv",
                "--threshold",
                "0",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    rows = out.read_text().splitlines()
    assert rows[0] == "file,rank,tag,score" and len(rows) == 1 + 4
    # nothing readable: non-zero exit
    assert main(["predict", str(ckpt), str(music / "broken.wav"), "--quiet"]) == 1
    assert main(["predict", str(ckpt), str(tmp_path / "empty_dir_missing"), "--quiet"]) == 1
