"""The inference engine's speed machinery keeps its results: decoding ahead on threads, short
clips at their own length, the measured (and cached) batch size and threads, the optimised copy."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from musictag import autotune
from musictag.audio import AudioReadError
from musictag.inference import Inference
from musictag.presets import CRNNTagger
from tests.test_inference import CROP, SR, noise_file, tiny_crnn


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good files (one shorter than a window, one stereo at another rate), a truncated FLAC, a
    FLAC damaged in the middle, text named .wav and a missing file, interleaved."""
    d = tmp_path_factory.mktemp("pipeline")
    good = [noise_file(d / f"g{i}.wav", 0.9 + 0.6 * i, seed=i) for i in range(3)]
    short = noise_file(d / "short.wav", 0.2, seed=5)
    stereo = noise_file(d / "stereo.wav", 1.3, rate=11025, channels=2, seed=6)
    buf = io.BytesIO()
    sf.write(buf, sf.read(good[2], dtype="float32")[0], SR, format="FLAC")
    data = buf.getvalue()
    truncated = d / "truncated.flac"
    truncated.write_bytes(data[: len(data) // 2])
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 2000] = np.random.default_rng(1).bytes(2000)
    (d / "damaged.flac").write_bytes(bytes(damaged))
    (d / "text.wav").write_text("not audio\n" * 50)
    return [
        good[0], d / "text.wav", truncated, short, good[1], d / "missing.flac",
        d / "damaged.flac", stereo, good[2],
    ]  # fmt: skip


def _run(model, files, **kwargs):
    inference = Inference(model, hop=1000, batch_size=3, optimize=False, **kwargs)
    return list(inference.iter_files(files)), inference


def _decoding_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith(("musictag-decode", "musictag-feed"))
    ]


@pytest.mark.parametrize("prefetch", [1, 3])
def test_decoding_ahead_gives_the_serial_results_in_order(files, prefetch):
    model = tiny_crnn()
    serial, serial_inf = _run(model, files, prefetch=0)
    ahead, ahead_inf = _run(model, files, prefetch=prefetch)
    assert [p for p, _ in ahead] == [p for p, _ in serial] == files
    n_errors = 0
    for (path, a), (_, b) in zip(ahead, serial):
        if isinstance(b, Exception):
            n_errors += 1
            assert isinstance(a, AudioReadError) and str(a) == str(b) and str(path) in str(a)
        else:
            assert np.array_equal(a.starts, b.starts)
            np.testing.assert_array_equal(a.window_scores, b.window_scores)
            np.testing.assert_array_equal(a.scores, b.scores)
    assert n_errors == 2  # the text file and the missing one; truncated files are tagged
    # truncations are reported in file order, whichever thread decoded them
    assert [t.path for t in ahead_inf.truncated] == [t.path for t in serial_inf.truncated]
    assert {t.path for t in serial_inf.truncated} == {str(files[2]), str(files[6])}
    assert not _decoding_threads()


def test_stopping_early_stops_the_decoding_threads(files):
    model = tiny_crnn()
    inference = Inference(model, hop=500, batch_size=2, prefetch=2, optimize=False)
    results = inference.iter_files(files * 3)
    next(results)
    results.close()
    assert not _decoding_threads()


def test_a_model_error_surfaces_from_the_pipeline(files):
    model = tiny_crnn()
    inference = Inference(model, batch_size=2, prefetch=1, optimize=False)
    inference.embeddings = "nonsense"  # fails in the forward pass, on the main thread
    with pytest.raises(ValueError, match="nonsense"):
        list(inference.iter_files(files))
    assert not _decoding_threads()


def short_crnn() -> CRNNTagger:
    """A tiny CRNN whose pools leave time alone until the last: it takes clips from 0.1 s."""
    torch.manual_seed(0)
    return CRNNTagger(
        n_tags=4,
        tags=[f"t{i}" for i in range(4)],
        n_mels=32,
        channels=(8, 8, 8, 8),
        pools=((2, 1), (2, 1), (2, 1), (4, 2)),
        sample_rate=SR,
        crop_samples=CROP,
        frontend_kwargs={"f_max": SR / 2},
    ).eval()


def test_short_clips_run_at_their_own_length_unless_padded(files):
    model = short_crnn()
    short = files[3]
    wave = sf.read(short, dtype="float32")[0]
    assert wave.size < CROP
    own = Inference(model, optimize=False, batch_size=4)(short)
    padded = Inference(model, optimize=False, batch_size=4, pad_short=True)(short)
    with torch.no_grad():
        ref_own = model.predict_proba(torch.from_numpy(wave)[None]).numpy()
        ref_pad = model.predict_proba(torch.from_numpy(np.pad(wave, (0, CROP - wave.size)))[None])
    np.testing.assert_allclose(own.window_scores, ref_own, atol=2e-6, rtol=0)
    np.testing.assert_allclose(padded.window_scores, ref_pad.numpy(), atol=2e-6, rtol=0)
    assert np.abs(own.scores - padded.scores).max() > 1e-4  # the padding did change the scores
    # K crops of a short clip: the same, K times
    crops = Inference(model, optimize=False, batch_size=4, crops=3)(short)
    np.testing.assert_allclose(crops.window_scores, np.repeat(ref_own, 3, 0), atol=2e-6, rtol=0)
    # a backbone that declares its input length fixed is padded by default
    model.backbone.fixed_input_length = True
    np.testing.assert_array_equal(
        Inference(model, optimize=False, batch_size=4)(short).scores, padded.scores
    )


def test_a_clip_too_short_for_the_model_is_padded(tmp_path):
    model = short_crnn()
    tiny = noise_file(tmp_path / "tiny.wav", 0.01)  # 80 samples: less than the STFT's padding
    with pytest.raises(RuntimeError):
        model(torch.from_numpy(sf.read(tiny, dtype="float32")[0])[None])
    own = Inference(model, optimize=False, batch_size=4)(tiny)
    padded = Inference(model, optimize=False, batch_size=4, pad_short=True)(tiny)
    np.testing.assert_array_equal(own.window_scores, padded.window_scores)


def test_the_optimised_copy_scores_as_the_model(files, monkeypatch, tmp_path):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    model = tiny_crnn()
    fast = Inference(model, hop=1000, batch_size=3, prefetch=0)
    exact = Inference(model, hop=1000, batch_size=3, prefetch=0, optimize=False)
    for (_, a), (_, b) in zip(fast.iter_files(files), exact.iter_files(files)):
        if not isinstance(b, Exception):
            np.testing.assert_allclose(a.window_scores, b.window_scores, atol=1e-5, rtol=0)
    assert fast._runner() is not model and exact._runner() is model
    # the layout (timed once) is cached: every later Inference computes with the same one
    [entry] = [
        e
        for e in json.loads(autotune.tuning_cache_path().read_text()).values()
        if "channels_last" in e
    ]
    again = Inference(model, hop=1000, batch_size=3, prefetch=0)
    for (_, a), (_, b) in zip(again.iter_files(files), fast.iter_files(files)):
        if not isinstance(b, Exception):
            np.testing.assert_array_equal(a.window_scores, b.window_scores)
    # one copy per model while its weights stay as they are (a server makes an Inference per
    # request); changed weights make a new one
    assert Inference(model)._runner() is fast._runner()
    with torch.no_grad():
        model.head.fc.bias.add_(0.5)
    changed = Inference(model)._runner()
    assert changed is not fast._runner()
    torch.testing.assert_close(changed.head.fc.bias, model.head.fc.bias)


# ---------------------------------------------------------------------------- measured settings
def test_batch_size_and_threads_are_measured_once_cached_and_overridable(
    files, monkeypatch, tmp_path
):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    calls = []
    real = autotune.measure_settings

    def measure(forward, window, device, **kw):
        calls.append(window)
        return real(forward, window, device, batch_sizes=[1, 2, 4], threads=[1])

    monkeypatch.setattr(autotune, "measure_settings", measure)
    model = tiny_crnn()
    first = Inference(model, hop=1000)
    assert first.settings.source == "measured" and calls == [CROP]
    assert first.settings.batch_size in (1, 2, 4) and first.settings.threads == 1
    cache = json.loads((tmp_path / "inference-tuning.json").read_text())
    [entry] = [e for e in cache.values() if "batch_size" in e]
    assert entry["batch_size"] == first.batch_size and set(entry["rates"]) >= {"b1t1"}
    # the cached choice is used (no new measurement) and gives the same results
    again = Inference(model, hop=1000)
    assert again.settings.source == "cache" and again.batch_size == first.batch_size
    assert calls == [CROP]
    # given values win; a given batch size needs no measurement
    assert Inference(model, batch_size=7).settings == autotune.InferenceSettings(7, None)
    assert Inference(model, threads=2).settings.threads == 2
    assert calls == [CROP]
    # the threads are set for the forward passes only, and the results do not depend on them
    before = torch.get_num_threads()
    seen = []
    forward = model.forward
    monkeypatch.setattr(
        model, "forward", lambda x: seen.append(torch.get_num_threads()) or forward(x)
    )
    one = dict(
        Inference(model, hop=1000, batch_size=3, threads=1, optimize=False).iter_files(files[:1])
    )
    assert set(seen) == {1} and torch.get_num_threads() == before
    ref = dict(Inference(model, hop=1000, batch_size=3, optimize=False).iter_files(files[:1]))
    np.testing.assert_allclose(one[files[0]].scores, ref[files[0]].scores, atol=1e-6)


def test_the_cache_is_measured_again_for_another_model_or_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    calls = []

    def measure(forward, window, device, **kw):
        calls.append(window)
        return autotune.InferenceSettings(2, 1, 10.0, "measured"), {"b2t1": 10.0}

    monkeypatch.setattr(autotune, "measure_settings", measure)
    a = tiny_crnn(seed=0)
    assert Inference(a).settings.batch_size == 2
    assert (
        Inference(tiny_crnn(seed=1)).settings.batch_size == 2
    )  # other weights, same structure: cached
    assert len(calls) == 1
    assert Inference(a, optimize=False).settings.batch_size == 2  # another forward pass: measured
    wider = tiny_crnn(n_tags=6)  # another head
    assert Inference(wider).settings.batch_size == 2
    assert len(calls) == 3
    assert len(json.loads((tmp_path / "inference-tuning.json").read_text())) == 3
    # a damaged cache file is measured again and rewritten
    (tmp_path / "inference-tuning.json").write_text("{not json")
    assert Inference(a).settings.source == "measured" and len(calls) == 4


def test_measure_settings_picks_the_fastest_batch():
    def forward(x):  # a fixed cost per pass and per window: bigger batches pay until 8
        time.sleep(0.004 + 0.0005 * x.shape[0] + (0.02 if x.shape[0] > 8 else 0))

    best, rates = autotune.measure_settings(forward, 16, torch.device("cpu"), threads=[1])
    assert best.batch_size == 8 and best.threads == 1
    assert list(rates) == ["b1t1", "b2t1", "b4t1", "b8t1", "b16t1"]  # stopped after the drop
