"""Tests for the synthetic collection (musictag.data.sources.synth)."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from musictag.data.sources import synth
from musictag.data.sources.synth import (
    HARMONIC,
    INSTRUMENTS,
    MODES,
    ROOTS,
    SPLITS,
    TAGS,
    TEMPO_RANGES,
    ClipSpec,
    generate_collection,
    load_labels,
    render_clip,
    sample_spec,
    spec_tags,
    tempo_class,
)

SR = 16000
N_CLIPS = 60
DURATION = 1.5
SEED = 3


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    return generate_collection(out, n_clips=N_CLIPS, duration=DURATION, seed=SEED)


@pytest.fixture(scope="module")
def specs() -> list[ClipSpec]:
    return [sample_spec(np.random.default_rng([11, i]), i, 4.0) for i in range(1000)]


def _spec(sources: tuple[str, ...], **kw) -> ClipSpec:
    base = dict(index=0, seed=5, duration=3.0, gains_db=(0.0,) * len(sources), bpm=100.0)
    base.update(root=0, mode="major")
    base.update(kw)
    return ClipSpec(sources=sources, **base)


def _rows(labels: Path) -> list[dict[str, str]]:
    with open(labels, newline="") as f:
        return list(csv.DictReader(f))


def test_tag_set() -> None:
    assert 10 <= len(TAGS) <= 15
    assert len(set(TAGS)) == len(TAGS)
    assert set(INSTRUMENTS) | set(TEMPO_RANGES) | set(MODES) <= set(TAGS)
    assert 2 <= len(ROOTS) <= 4


def test_mixtures_have_one_to_four_sources(specs: list[ClipSpec]) -> None:
    counts = Counter(len(s.sources) for s in specs)
    assert set(counts) == {1, 2, 3, 4}
    # the number of sources is uniform over 1..4
    for k in range(1, 5):
        assert 0.2 < counts[k] / len(specs) < 0.3
    for s in specs:
        assert any(src in HARMONIC for src in s.sources)  # mode is always audible
        assert len(set(s.sources)) == len(s.sources)


def test_tag_frequencies(specs: list[ClipSpec]) -> None:
    counts = Counter(t for s in specs for t in spec_tags(s))
    freq = {t: counts[t] / len(specs) for t in TAGS}
    for tag, f in freq.items():
        assert 0.15 <= f <= 0.85, (tag, f)
    for tempo in TEMPO_RANGES:
        assert freq[tempo] == pytest.approx(1 / 3, abs=0.04)
    assert freq["major"] == pytest.approx(0.5, abs=0.04)
    assert freq["major"] + freq["minor"] == pytest.approx(1.0)
    # exactly one tempo and one mode tag per clip
    for s in specs[:200]:
        tags = spec_tags(s)
        assert sum(t in TEMPO_RANGES for t in tags) == 1
        assert sum(t in MODES for t in tags) == 1
        assert TEMPO_RANGES[tempo_class(s.bpm)][0] <= s.bpm <= TEMPO_RANGES[tempo_class(s.bpm)][1]


def test_generation_is_deterministic_and_independent_of_workers(
    collection: Path, tmp_path: Path
) -> None:
    one = generate_collection(tmp_path / "a", n_clips=12, duration=DURATION, seed=SEED)
    two = generate_collection(tmp_path / "b", n_clips=12, duration=DURATION, seed=SEED, workers=2)
    assert one.read_bytes() == two.read_bytes()
    for row in _rows(one):
        a = (one.parent / row["path"]).read_bytes()
        assert a == (two.parent / row["path"]).read_bytes(), row["path"]
        # the clips of a small collection are the first clips of a larger one
        assert a == (collection.parent / row["path"]).read_bytes(), row["path"]
    other = generate_collection(tmp_path / "c", n_clips=1, duration=DURATION, seed=SEED + 1)
    first = (other.parent / "audio/synth_00000.wav").read_bytes()
    assert first != (one.parent / "audio/synth_00000.wav").read_bytes()


def test_labels_file_and_splits(collection: Path) -> None:
    rows = _rows(collection)
    assert list(rows[0]) == ["track_id", "split", "path", "tags"]
    assert [r["track_id"] for r in rows] == [f"synth_{i:05d}" for i in range(N_CLIPS)]
    sizes = Counter(r["split"] for r in rows)
    assert sizes == {"train": 42, "val": 9, "test": 9}
    for split in SPLITS:
        present = {t for r in rows if r["split"] == split for t in r["tags"].split(";")}
        assert present == set(TAGS), (split, set(TAGS) - present)
    for r in rows:
        spec = synth._clip_spec(SEED, int(r["track_id"][-5:]), DURATION)
        assert tuple(r["tags"].split(";")) == spec_tags(spec)
        info = sf.info(collection.parent / r["path"])
        assert (info.samplerate, info.channels, info.frames) == (SR, 1, int(DURATION * SR))
        assert info.subtype == "PCM_16"


def test_generation_speed_and_validation(tmp_path: Path) -> None:
    import time

    t0 = time.perf_counter()
    generate_collection(tmp_path / "speed", n_clips=10, duration=4.0, seed=0)
    # ~20 ms per 4-s clip on one core; a generous bound for busy CI machines
    assert time.perf_counter() - t0 < 5.0
    with pytest.raises(ValueError, match="split_fractions"):
        generate_collection(tmp_path / "x", n_clips=10, split_fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="n_clips"):
        generate_collection(tmp_path / "x", n_clips=0)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5])
def test_rendered_audio(index: int) -> None:
    spec = synth._clip_spec(SEED, index, 2.5)
    x = render_clip(spec, SR)
    assert x.dtype == np.float32 and x.shape == (int(2.5 * SR),)
    assert np.isfinite(x).all()
    peak = np.abs(x).max()
    assert peak <= 1.0
    assert peak == pytest.approx(spec.peak, abs=0.01)
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    assert rms > 0.03 * spec.peak  # non-silent
    np.testing.assert_array_equal(x, render_clip(spec, SR))


@pytest.mark.parametrize("sample_rate", [8000, 22050, 44100])
def test_other_sample_rates(sample_rate: int) -> None:
    spec = _spec(("pluck", "pad", "lead", "drums"), distorted=True, reverb=True, duration=1.0)
    x = render_clip(spec, sample_rate)
    assert x.shape == (sample_rate,) and np.isfinite(x).all() and np.abs(x).max() <= 1.0
    with pytest.raises(ValueError, match="sample_rate"):
        render_clip(spec, 4000)


def _magnitude(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| as [freq, frames] (scipy, so the tests need no numba warm-up)."""
    _, _, z = signal.stft(
        x, fs=SR, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False
    )
    return np.abs(z)


def _onset_bpm(x: np.ndarray, hop: int = 128) -> float:
    """Tempo from the median interval between spectral-flux peaks."""
    mag = _magnitude(x, 512, hop)
    flux = np.maximum(np.diff(np.log(mag + 1e-3 * mag.max()), axis=1), 0.0).sum(axis=0)
    floor = np.median(flux)
    peaks, _ = signal.find_peaks(
        flux, height=floor + 0.4 * (flux.max() - floor), distance=int(0.25 * SR / hop)
    )
    return 60.0 / (np.median(np.diff(peaks)) * hop / SR)


def _chroma(x: np.ndarray) -> np.ndarray:
    """Energy per pitch class (0 = C) of the 80 Hz - 5 kHz spectrum, [12]."""
    power = (_magnitude(x, 4096, 1024) ** 2).mean(axis=1)
    freqs = np.fft.rfftfreq(4096, 1.0 / SR)
    keep = (freqs > 80.0) & (freqs < 5000.0)
    pitch_class = np.round(12.0 * np.log2(freqs[keep] / 440.0) + 69.0).astype(int) % 12
    return np.bincount(pitch_class, weights=power[keep], minlength=12)


@pytest.mark.parametrize("source", ["drums", "pluck", "bass", "pad", "lead"])
@pytest.mark.parametrize("tempo", list(TEMPO_RANGES))
def test_tempo_tag_matches_onset_rate(source: str, tempo: str) -> None:
    lo, hi = TEMPO_RANGES[tempo]
    for bpm in (lo, hi):
        spec = _spec((source,), bpm=bpm, duration=4.0)
        assert tempo in spec_tags(spec)
        measured = _onset_bpm(render_clip(spec, SR))
        assert measured == pytest.approx(bpm, rel=0.03)
        assert tempo_class(measured) == tempo


def test_tempo_of_random_mixtures(specs: list[ClipSpec]) -> None:
    dry = [s for s in specs if not s.reverb][:30]
    hits = sum(tempo_class(_onset_bpm(render_clip(s, SR))) == s.tempo for s in dry)
    assert hits >= 27


@pytest.mark.parametrize("source", ["pad", "pluck", "lead"])
@pytest.mark.parametrize("root", ROOTS)
def test_mode_shows_in_chroma(source: str, root: int) -> None:
    for seed in (5, 6):
        ratio = {}
        for mode in MODES:
            spec = _spec((source,), root=root, mode=mode, duration=2.0, seed=seed)
            chroma = _chroma(render_clip(spec, SR))
            ratio[mode] = chroma[(root + 4) % 12] / chroma[(root + 3) % 12]  # major / minor third
        assert ratio["major"] > 10.0, ratio
        assert ratio["minor"] < 0.3, ratio


def test_spec_tags_and_validation() -> None:
    spec = _spec(("pad", "drums"), bpm=170.0, mode="minor", distorted=True, reverb=True)
    assert spec_tags(spec) == ("pad", "drums", "fast", "minor", "distorted", "reverb")
    # without a pitched source neither mode nor distortion can be heard, so they are not tags
    assert spec_tags(_spec(("drums",), distorted=True)) == ("drums", "medium")
    assert spec.track_id == "synth_00000"
    with pytest.raises(ValueError, match="unknown source"):
        _spec(("violin",))
    with pytest.raises(ValueError, match="1 to 4"):
        _spec(("pad", "pad"))
    with pytest.raises(ValueError, match="1 to 4"):
        _spec(tuple(INSTRUMENTS))
    with pytest.raises(ValueError, match="gains_db"):
        ClipSpec(0, 0, 1.0, ("pad",), (0.0, 1.0), 100.0, 0, "major")
    with pytest.raises(ValueError, match="mode"):
        _spec(("pad",), mode="dorian")
    with pytest.raises(ValueError, match="peak"):
        _spec(("pad",), peak=1.5)


def test_sources_render_independently() -> None:
    # each source has its own random stream: removing one does not change what the others play
    both = _spec(("pluck", "bass"), gains_db=(0.0, -60.0), peak=0.5, noise_db=-200.0)
    alone = _spec(("pluck",), peak=0.5, noise_db=-200.0)
    a, b = render_clip(both, SR), render_clip(alone, SR)
    assert np.corrcoef(a, b)[0, 1] > 0.999


def test_load_labels_round_trip(collection: Path) -> None:
    from musictag.data.shards import AudioItem

    items = load_labels(collection)
    rows = _rows(collection)
    assert list(items) == list(SPLITS)
    assert sum(len(v) for v in items.values()) == N_CLIPS
    by_id = {r["track_id"]: r for r in rows}
    for split, split_items in items.items():
        for item in split_items:
            assert isinstance(item, AudioItem)
            row = by_id[item.track_id]
            assert row["split"] == split
            assert item.tags == tuple(row["tags"].split(";"))
            assert Path(item.path).is_absolute() and Path(item.path).is_file()
            assert Path(item.path) == (collection.parent / row["path"]).resolve()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"labels\.csv:1: expected header"),
        ("id,split,path,tags\n", r"labels\.csv:1: expected header"),
        (
            "track_id,split,path,tags\na,train,a.wav,pad\nb,train,b.wav\n",
            r"labels\.csv:3: expected 4",
        ),
        ("track_id,split,path,tags\na,dev,a.wav,pad\n", r"labels\.csv:2: unknown split"),
        ("track_id,split,path,tags\na,train,a.wav,pad;violin\n", r"labels\.csv:2: unknown tag"),
        ("track_id,split,path,tags\na,train,a.wav,\n", r"labels\.csv:2: no tags"),
        ("track_id,split,path,tags\n,train,a.wav,pad\n", r"labels\.csv:2: empty track_id"),
    ],
)
def test_load_labels_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_labels(path)


def test_load_labels_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generate_collection"):
        load_labels(tmp_path / "nope.csv")


def test_spec_is_hashable_and_replaceable() -> None:
    spec = _spec(("lead",))
    assert hash(spec) == hash(dataclasses.replace(spec))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.bpm = 1.0  # type: ignore[misc]
