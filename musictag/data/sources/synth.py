"""Deterministic synthetic multi-label music collection: the data ``musictag demo`` trains on.

Each clip is a short 4/4 loop built from one to four of five synthetic instruments (a Karplus-Strong
plucked string, a detuned-saw pad, a bass, a vibrato lead and noise drums), played in one key and
mode at one tempo, optionally distorted and/or reverberated. Every tag is audible in a log-mel
spectrogram:

* instruments (``pluck``, ``pad``, ``bass``, ``lead``, ``drums``) have distinct registers, envelopes
  and spectra;
* tempo (``slow`` 60-72 BPM, ``medium`` 96-112 BPM, ``fast`` 160-184 BPM, with wide gaps between
  the ranges) is the onset rate: every source articulates every beat and nothing plays between beats;
* mode (``major``/``minor``) is the third of the tonic triad, which the pad, the pluck arpeggio, the
  lead (on strong beats) and the bass all play; there are only three roots, so each (root, mode) is a
  fixed spectral pattern;
* ``distorted`` (tanh saturation of every pitched source) and ``reverb`` (a long, loud diffuse tail).

:func:`render_clip` turns a :class:`ClipSpec` into audio from the spec alone (its ``seed`` drives
note patterns, voicings and noise). Usage: ``docs/datasets.md#synthetic-collection-the-embedded-default``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm.auto import tqdm

from musictag.data.shards import AudioItem, ShardWriteReport, write_shards

logger = logging.getLogger(__name__)

__all__ = [
    "TAGS",
    "INSTRUMENTS",
    "PITCHED",
    "HARMONIC",
    "TEMPO_RANGES",
    "MODES",
    "ROOTS",
    "SPLITS",
    "ClipSpec",
    "sample_spec",
    "render_clip",
    "spec_tags",
    "tempo_class",
    "generate_collection",
    "load_labels",
]

INSTRUMENTS: tuple[str, ...] = ("pluck", "pad", "bass", "lead", "drums")
"""Instrument tags, also the source names a :class:`ClipSpec` may contain."""
PITCHED: tuple[str, ...] = ("pluck", "pad", "bass", "lead")
"""Sources that play notes of the key (and that ``distorted`` applies to)."""
HARMONIC: tuple[str, ...] = ("pluck", "pad", "lead")
"""Mid-register pitched sources; :func:`sample_spec` puts at least one in every clip."""
TEMPO_RANGES: dict[str, tuple[float, float]] = {
    "slow": (60.0, 72.0),
    "medium": (96.0, 112.0),
    "fast": (160.0, 184.0),
}
"""Tempo tag -> BPM range that :func:`sample_spec` draws from (the gaps keep the labels clean)."""
MODES: tuple[str, ...] = ("major", "minor")
ROOTS: tuple[int, ...] = (0, 4, 8)
"""Pitch classes of the possible keys (C, E, G#); few roots keep the mode a learnable pattern."""
TAGS: tuple[str, ...] = (
    *INSTRUMENTS,
    *TEMPO_RANGES,
    *MODES,
    "distorted",
    "reverb",
)
"""All tags of the collection, in a fixed order."""
SPLITS: tuple[str, ...] = ("train", "val", "test")

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_THIRD = {"major": 4, "minor": 3}
# Tempo class boundaries: about the geometric middle of the gaps between the sampling ranges.
_SLOW_MAX_BPM = 84.0
_MEDIUM_MAX_BPM = 135.0
# MIDI ranges per pitched source: separated registers make each instrument easy to spot.
_REGISTERS = {"bass": (33, 52), "pad": (52, 76), "pluck": (57, 81), "lead": (69, 93)}
_SOURCE_IDS = {name: i for i, name in enumerate(INSTRUMENTS)}
_DISTORTED_P = 0.4
_REVERB_P = 0.4
_PREROLL_S = 0.6  # rendered before the clip starts, so clips start mid-bar with a reverb tail
_BEATS_PER_BAR = 4
_HARMONIC_COUNTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128)
_TABLE_SIZE = 8192  # power of two (wrap-around by bit mask)


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip.

    Attributes:
        index: Position of the clip in its collection (names the track).
        seed: Seed of the render-time randomness (note patterns, voicings, drum noise, noise floor).
        duration: Clip length in seconds.
        sources: Instrument names from :data:`INSTRUMENTS`, 1 to 4 distinct ones.
        gains_db: Level of each source relative to the others, in dB (one per source).
        bpm: Tempo in beats per minute; the tempo tag is :func:`tempo_class` of it.
        root: Pitch class of the key (0 = C ... 11 = B).
        mode: ``"major"`` or ``"minor"``.
        distorted: Whether pitched sources go through a tanh saturator.
        drive: Saturator gain (used when ``distorted``).
        reverb: Whether the mix gets a diffuse reverb tail.
        reverb_time: Reverb RT60 in seconds (used when ``reverb``).
        reverb_wet: Reverb level as RMS ratio wet/dry (used when ``reverb``).
        peak: Peak amplitude of the rendered clip (before the noise floor), in (0, 1).
        noise_db: Level of the white noise floor in dBFS.
    """

    index: int
    seed: int
    duration: float
    sources: tuple[str, ...]
    gains_db: tuple[float, ...]
    bpm: float
    root: int
    mode: str
    distorted: bool = False
    drive: float = 6.0
    reverb: bool = False
    reverb_time: float = 2.0
    reverb_wet: float = 0.8
    peak: float = 0.8
    noise_db: float = -55.0

    def __post_init__(self) -> None:
        # Tuples keep the spec hashable even when lists are passed.
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "gains_db", tuple(float(g) for g in self.gains_db))
        unknown = [s for s in self.sources if s not in INSTRUMENTS]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; choose from {INSTRUMENTS}")
        if not 1 <= len(self.sources) <= 4 or len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources must be 1 to 4 distinct instruments, got {self.sources}")
        if len(self.gains_db) != len(self.sources):
            raise ValueError(
                f"gains_db needs one value per source ({len(self.sources)}), got {self.gains_db}"
            )
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0 <= self.root < 12:
            raise ValueError(f"root must be a pitch class 0..11, got {self.root}")
        if not (self.bpm > 0 and self.duration > 0):
            raise ValueError(f"bpm and duration must be positive, got {self.bpm}, {self.duration}")
        if not 0 < self.peak < 1:
            raise ValueError(f"peak must be in (0, 1), got {self.peak}")

    @property
    def tempo(self) -> str:
        """The tempo tag of this clip (``slow``, ``medium`` or ``fast``)."""
        return tempo_class(self.bpm)

    @property
    def track_id(self) -> str:
        """Track id used in file names and labels, e.g. ``synth_00042``."""
        return f"synth_{self.index:05d}"


def tempo_class(bpm: float) -> str:
    """Map a tempo in BPM to its tag.

    Args:
        bpm: Tempo in beats per minute.

    Returns:
        ``"slow"`` below 84 BPM, ``"medium"`` below 135 BPM, else ``"fast"``.
    """
    if bpm < _SLOW_MAX_BPM:
        return "slow"
    if bpm < _MEDIUM_MAX_BPM:
        return "medium"
    return "fast"


def sample_spec(rng: np.random.Generator, index: int, duration: float) -> ClipSpec:
    """Draw a random clip description.

    One to four instruments (uniform count, at least one of :data:`HARMONIC` so the mode is always
    audible), a tempo class then a BPM inside its range, a root from :data:`ROOTS`, a mode, and
    independent ``distorted``/``reverb`` flags (40 % each).

    Args:
        rng: Source of randomness; seed it from ``(seed, index)`` for reproducible collections.
        index: Position of the clip in its collection.
        duration: Clip length in seconds.

    Returns:
        The clip description.
    """
    n_sources = int(rng.integers(1, 5))
    while True:
        picked = rng.choice(len(INSTRUMENTS), size=n_sources, replace=False)
        sources = tuple(INSTRUMENTS[i] for i in sorted(picked))
        if any(s in HARMONIC for s in sources):
            break
    tempo = tuple(TEMPO_RANGES)[int(rng.integers(len(TEMPO_RANGES)))]
    lo, hi = TEMPO_RANGES[tempo]
    return ClipSpec(
        index=index,
        seed=int(rng.integers(2**62)),
        duration=float(duration),
        sources=sources,
        gains_db=tuple(float(g) for g in rng.uniform(-6.0, 0.0, size=n_sources)),
        bpm=float(rng.uniform(lo, hi)),
        root=int(ROOTS[int(rng.integers(len(ROOTS)))]),
        mode=MODES[int(rng.integers(len(MODES)))],
        distorted=bool(rng.random() < _DISTORTED_P),
        drive=float(rng.uniform(5.0, 12.0)),
        reverb=bool(rng.random() < _REVERB_P),
        reverb_time=float(rng.uniform(1.5, 3.0)),
        reverb_wet=float(rng.uniform(0.7, 1.1)),
        peak=float(rng.uniform(0.3, 0.95)),
        noise_db=float(rng.uniform(-65.0, -50.0)),
    )


def spec_tags(spec: ClipSpec) -> tuple[str, ...]:
    """The tags of a clip, in :data:`TAGS` order.

    Mode and ``distorted`` are only reported when a pitched source makes them audible (always the
    case for specs from :func:`sample_spec`).

    Args:
        spec: The clip description.

    Returns:
        Tag names, a subset of :data:`TAGS`.
    """
    pitched = any(s in PITCHED for s in spec.sources)
    tags = set(spec.sources) | {spec.tempo}
    if pitched:
        tags.add(spec.mode)
        if spec.distorted:
            tags.add("distorted")
    if spec.reverb:
        tags.add("reverb")
    return tuple(t for t in TAGS if t in tags)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Timing and harmony shared by all sources of one clip."""

    sr: int
    n: int  # samples including the preroll
    beat: float  # seconds per beat
    start: float  # time of the first beat (<= 0, relative to the render start)
    n_beats: int
    root: int
    mode: str

    def beat_time(self, k: int) -> float:
        return self.start + k * self.beat

    def pitches(self, intervals: Iterable[int], register: tuple[int, int]) -> np.ndarray:
        """MIDI notes in ``register`` whose pitch class is root + one of ``intervals``."""
        pcs = {(self.root + i) % 12 for i in intervals}
        lo, hi = register
        return np.array([m for m in range(lo, hi + 1) if m % 12 in pcs])

    @property
    def triad(self) -> tuple[int, int, int]:
        return (0, _THIRD[self.mode], 7)


def _midi_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


@functools.lru_cache(maxsize=64)
def _wavetable(kind: str, n_harm: int) -> np.ndarray:
    """One band-limited period (``_TABLE_SIZE`` samples) of a saw or square, peak 1."""
    k = np.arange(1, n_harm + 1)
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=np.complex128)
    # irfft of -j*N/2 at bin k is sin(2*pi*k*x): a sum of harmonics with 1/k amplitudes.
    spectrum[k] = -0.5j * _TABLE_SIZE / k
    if kind == "square":
        spectrum[k[k % 2 == 0]] = 0.0
    table = np.fft.irfft(spectrum, n=_TABLE_SIZE)
    table /= np.abs(table).max()
    table.flags.writeable = False
    return table


def _osc(freq: np.ndarray, sr: int, kind: str, phase0: float) -> np.ndarray:
    """Band-limited oscillator following a per-sample frequency track (Hz)."""
    n_harm = int((0.45 * sr) // float(np.max(freq)))
    # Few distinct harmonic counts keep the table cache small.
    n_harm = max(h for h in _HARMONIC_COUNTS if h <= max(n_harm, 1))
    table = _wavetable(kind, n_harm)
    # Nearest-sample lookup in a long table: cheap, and the phase error is inaudible.
    pos = (phase0 + np.cumsum(freq) / sr) * _TABLE_SIZE
    return table[pos.astype(np.int64) & (_TABLE_SIZE - 1)]


def _exp_env(n: int, sr: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / sr
    return (1.0 - np.exp(-t / attack)) * np.exp(-t / decay)


def _gate(n: int, sr: int, length: int, release: float = 0.015) -> np.ndarray:
    """1 for ``length`` samples then a short linear release to 0."""
    env = np.zeros(n)
    env[:length] = 1.0
    r = max(int(release * sr), 1)
    tail = np.linspace(1.0, 0.0, r + 2)[1:-1]
    env[length : length + r] = tail[: max(0, min(r, n - length))]
    return env


def _place(out: np.ndarray, note: np.ndarray, t: float, sr: int) -> None:
    """Add ``note`` into ``out`` starting at time ``t`` (seconds, may be negative)."""
    start = int(round(t * sr))
    lo = max(start, 0)
    hi = min(start + len(note), len(out))
    if hi > lo:
        out[lo:hi] += note[lo - start : hi - start]


def _karplus_strong(
    f0: float, n: int, sr: int, rng: np.random.Generator, t60: float, bright: float
) -> np.ndarray:
    """A plucked-string note: Karplus-Strong with an allpass fractional delay for exact tuning."""
    period = sr / f0
    delay = int(math.floor(period - 0.6))  # the averaging filter adds half a sample
    frac = period - 0.5 - delay  # in [0.1, 1.1): keeps the allpass coefficient well-behaved
    c = (1.0 - frac) / (1.0 + frac)
    g = 10.0 ** (-3.0 / (f0 * t60))  # loop gain for the requested decay time
    a = np.zeros(delay + 3)
    a[0] = 1.0
    a[1] += c
    a[delay] -= 0.5 * g * c
    a[delay + 1] -= 0.5 * g * (c + 1.0)
    a[delay + 2] -= 0.5 * g
    excitation = np.zeros(n)
    burst = rng.uniform(-1.0, 1.0, size=min(delay + 1, n))
    # One-pole low-pass on the burst: lower ``bright`` -> mellower pluck.
    excitation[: len(burst)] = signal.lfilter([bright], [1.0, bright - 1.0], burst)
    return signal.lfilter([1.0, c], a, excitation)


def _render_pluck(g: _Grid, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(g.n)
    thirds = g.pitches([g.triad[1]], _REGISTERS["pluck"])
    others = g.pitches([0, 7], _REGISTERS["pluck"])
    # A one-bar arpeggio, repeated with variations; the third sounds every other beat so that
    # the mode is audible in any two beats.
    pattern = [rng.choice(thirds if k % 2 else others) for k in range(_BEATS_PER_BAR)]
    t60 = rng.uniform(0.8, 1.5)
    bright = rng.uniform(0.5, 0.9)
    length = int(min(2.0 * g.beat, 1.2) * g.sr)
    for k in range(g.n_beats):
        note = pattern[k % _BEATS_PER_BAR]
        if rng.random() < 0.25:
            note = rng.choice(thirds if k % 2 else others)
        tone = _karplus_strong(float(_midi_hz(note)), length, g.sr, rng, t60, bright)
        tone *= _gate(length, g.sr, length - int(0.02 * g.sr), 0.02)
        _place(out, rng.uniform(0.75, 1.0) * tone, g.beat_time(k), g.sr)
    return out


def _render_pad(g: _Grid, rng: np.random.Generator) -> np.ndarray:
    chord = g.pitches(g.triad, _REGISTERS["pad"])
    n_voices = int(rng.integers(3, 5))
    detune = rng.uniform(3.0, 6.0)  # cents
    bar = _BEATS_PER_BAR * g.beat
    n_bars = int(math.ceil((g.n / g.sr - g.start) / bar)) + 1
    # A new voicing (inversion) each bar: a window of consecutive chord tones.
    first = rng.integers(0, len(chord) - n_voices + 1, size=n_bars)
    t = np.arange(g.n) / g.sr
    bar_of_sample = np.clip(((t - g.start) // bar).astype(np.int64), 0, n_bars - 1)
    out = np.zeros(g.n)
    chord_hz = _midi_hz(chord)
    for v in range(n_voices):
        f = chord_hz[first[bar_of_sample] + v]
        for cents in (-detune, 0.0, detune):
            out += _osc(f * 2.0 ** (cents / 1200.0), g.sr, "saw", rng.random())
    cutoff = min(rng.uniform(1500.0, 2800.0), 0.45 * g.sr)
    out = signal.sosfilt(signal.butter(2, cutoff, "lowpass", fs=g.sr, output="sos"), out)
    # The chord is re-articulated on every beat: a soft attack (slower than the other sources),
    # held for most of the beat, released before the next one, over a quiet sustained floor.
    attack = rng.uniform(0.03, 0.06)
    beat_len = int(round(g.beat * g.sr))
    swell = _exp_env(beat_len, g.sr, attack, 2.0 * g.beat)
    swell *= _gate(beat_len, g.sr, int(0.8 * beat_len), release=0.1 * g.beat) / swell.max()
    env = np.full(g.n, 0.05)
    for k in range(g.n_beats):
        _place(env, 0.95 * swell, g.beat_time(k), g.sr)
    return out * env


def _render_bass(g: _Grid, rng: np.random.Generator) -> np.ndarray:
    notes = g.pitches(g.triad, _REGISTERS["bass"])
    roots = notes[notes % 12 == g.root]
    root = roots[0] if roots[0] >= 36 or len(roots) == 1 else roots[1]
    kind = "saw" if rng.random() < 0.5 else "square"
    decay = rng.uniform(0.3, 0.6) * g.beat
    length = int(round(0.9 * g.beat * g.sr))
    cutoff = min(rng.uniform(500.0, 1000.0), 0.45 * g.sr)
    sos = signal.butter(4, cutoff, "lowpass", fs=g.sr, output="sos")
    out = np.zeros(g.n)
    for k in range(g.n_beats):
        if k % 2 == 0:
            note = root
        else:
            note = root + rng.choice([_THIRD[g.mode], 7, 12])
        f = np.full(length, float(_midi_hz(note)))
        tone = _osc(f, g.sr, kind, 0.0) * _exp_env(length, g.sr, 0.004, decay)
        tone *= _gate(length, g.sr, length - int(0.015 * g.sr))
        _place(out, tone, g.beat_time(k), g.sr)
    return signal.sosfilt(sos, out)


def _render_lead(g: _Grid, rng: np.random.Generator) -> np.ndarray:
    scale = g.pitches(_SCALES[g.mode], _REGISTERS["lead"])
    chord_tones = np.flatnonzero(np.isin(scale % 12, [(g.root + i) % 12 for i in g.triad]))
    thirds = np.flatnonzero(scale % 12 == (g.root + g.triad[1]) % 12)
    kind = "saw" if rng.random() < 0.5 else "square"
    rate = rng.uniform(4.5, 6.5)
    depth = rng.uniform(8.0, 15.0)  # cents
    gate = rng.uniform(0.7, 0.9)
    length = int(round(g.beat * g.sr))
    t = np.arange(length) / g.sr
    # Delayed vibrato: it fades in after the attack, so that note onsets stay sharp.
    fade = np.clip((t - 0.12) / 0.2, 0.0, 1.0)
    vibrato = 2.0 ** (depth * fade * np.sin(2 * np.pi * rate * t) / 1200.0)
    out = np.zeros(g.n)
    pos = int(rng.choice(chord_tones))
    for k in range(g.n_beats):
        if k % 2 == 0:
            # Strong beats land on the third (mostly the nearest one): the mode is audible in
            # any two beats, and the weak beats step around it.
            order = np.argsort(np.abs(thirds - pos))
            pos = int(thirds[order[0] if rng.random() < 0.8 else order[-1]])
        else:
            pos = int(np.clip(pos + rng.choice([-2, -1, 1, 2]), 0, len(scale) - 1))
        f = float(_midi_hz(scale[pos])) * vibrato
        tone = _osc(f, g.sr, kind, 0.0) * _exp_env(length, g.sr, 0.01, 4.0 * g.beat)
        tone *= _gate(length, g.sr, int(gate * length))
        _place(out, tone, g.beat_time(k), g.sr)
    return out


def _render_drums(g: _Grid, rng: np.random.Generator) -> np.ndarray:
    sr = g.sr
    nyq = 0.5 * sr
    t = np.arange(int(0.4 * sr)) / sr
    f_kick = 45.0 + 110.0 * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(f_kick) / sr) * np.exp(-t / rng.uniform(0.12, 0.2))
    kick[: int(0.003 * sr)] += rng.uniform(-0.5, 0.5, size=int(0.003 * sr))
    snare_sos = signal.butter(2, [1500.0, min(6000.0, 0.9 * nyq)], "bandpass", fs=sr, output="sos")
    hat_sos = signal.butter(2, min(6000.0, 0.75 * nyq), "highpass", fs=sr, output="sos")
    snare_decay = rng.uniform(0.06, 0.1)
    ts = t[: int(0.25 * sr)]
    th = t[: int(0.1 * sr)]
    out = np.zeros(g.n)
    for k in range(g.n_beats):
        when = g.beat_time(k)
        vel = rng.uniform(0.8, 1.0)
        if k % 2 == 0:
            _place(out, vel * kick, when, sr)
        else:
            noise = signal.sosfilt(snare_sos, rng.standard_normal(len(ts)))
            body = 0.4 * np.sin(2 * np.pi * 185.0 * ts) * np.exp(-ts / 0.04)
            _place(out, vel * (noise * np.exp(-ts / snare_decay) + body), when, sr)
        hat = signal.sosfilt(hat_sos, rng.standard_normal(len(th))) * np.exp(-th / 0.025)
        _place(out, 0.35 * rng.uniform(0.6, 1.0) * hat, when, sr)
    return out


_RENDERERS = {
    "pluck": _render_pluck,
    "pad": _render_pad,
    "bass": _render_bass,
    "lead": _render_lead,
    "drums": _render_drums,
}


def _reverb(
    x: np.ndarray, sr: int, rng: np.random.Generator, rt60: float, wet: float
) -> np.ndarray:
    """Add a diffuse tail: exponentially decaying, slightly low-passed noise, 20 ms pre-delay."""
    n_ir = int(min(rt60, 3.0) * sr)
    t = np.arange(n_ir) / sr
    ir = rng.standard_normal(n_ir) * np.exp(-6.91 * t / rt60)
    ir = signal.lfilter([0.4], [1.0, -0.6], ir)
    ir = np.concatenate([np.zeros(int(0.02 * sr)), ir])
    tail = signal.fftconvolve(x, ir)[: len(x)]
    scale = wet * np.sqrt(np.mean(x**2) / max(np.mean(tail**2), 1e-20))
    return x + scale * tail


def render_clip(spec: ClipSpec, sample_rate: int = 16000) -> np.ndarray:
    """Render a clip.

    Deterministic: the same spec and sample rate give the same samples. Each source draws from
    its own random stream (seeded by ``spec.seed`` and the source), so adding or removing a source
    does not change what the others play.

    Args:
        spec: The clip description.
        sample_rate: Output sample rate in Hz (at least 8000).

    Returns:
        Mono float32 audio, shape ``[round(spec.duration * sample_rate)]``, peak at most 1.
    """
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
    sr = int(sample_rate)
    pre = int(round(_PREROLL_S * sr))
    n_out = int(round(spec.duration * sr))
    beat = 60.0 / spec.bpm
    # Random beat phase: the clip starts anywhere in a bar.
    phase_rng = np.random.default_rng([spec.seed, 100])
    start = -phase_rng.uniform(0.0, _BEATS_PER_BAR * beat)
    n = pre + n_out
    grid = _Grid(
        sr=sr,
        n=n,
        beat=beat,
        start=start,
        n_beats=int(math.ceil((n / sr - start) / beat)),
        root=spec.root,
        mode=spec.mode,
    )
    mix = np.zeros(n)
    for name, gain_db in zip(spec.sources, spec.gains_db):
        rng = np.random.default_rng([spec.seed, _SOURCE_IDS[name]])
        x = _RENDERERS[name](grid, rng)
        x /= max(np.abs(x).max(), 1e-12)
        if spec.distorted and name in PITCHED:
            x = np.tanh(spec.drive * x) / np.tanh(spec.drive)
        rms = np.sqrt(np.mean(x[pre:] ** 2))
        mix += 10.0 ** (gain_db / 20.0) * x / max(rms, 1e-12)
    if spec.reverb:
        fx_rng = np.random.default_rng([spec.seed, 101])
        mix = _reverb(mix, sr, fx_rng, spec.reverb_time, spec.reverb_wet)
    out = mix[pre:]
    out *= spec.peak / max(np.abs(out).max(), 1e-12)
    noise_rng = np.random.default_rng([spec.seed, 102])
    out += 10.0 ** (spec.noise_db / 20.0) * noise_rng.standard_normal(n_out)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Collections
# --------------------------------------------------------------------------------------------

_LABEL_COLUMNS = ("track_id", "split", "path", "tags")


def _clip_spec(seed: int, index: int, duration: float) -> ClipSpec:
    return sample_spec(np.random.default_rng([seed, index]), index, duration)


def _write_clip(args: tuple[int, int, float, int, str]) -> tuple[str, ...]:
    seed, index, duration, sample_rate, path = args
    import soundfile as sf

    spec = _clip_spec(seed, index, duration)
    sf.write(path, render_clip(spec, sample_rate), sample_rate, subtype="PCM_16", format="WAV")
    return spec_tags(spec)


def _split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(
            f"split_fractions must be {len(SPLITS)} non-negative numbers for {SPLITS}, "
            f"got {tuple(fractions)}"
        )
    total = float(sum(fractions))
    sizes = [int(round(n * f / total)) for f in fractions[1:]]
    # Every split asked for gets at least one clip when there are enough clips.
    sizes = [max(s, 1) if f > 0 and n >= len(SPLITS) else s for s, f in zip(sizes, fractions[1:])]
    return [n - sum(sizes), *sizes]


def _assign_splits(
    tags: Sequence[tuple[str, ...]], fractions: Sequence[float], seed: int
) -> list[str]:
    """Random split assignment, then swaps so that every tag appears in every non-empty split."""
    n = len(tags)
    sizes = _split_sizes(n, fractions)
    order = np.random.default_rng([seed, 2**31]).permutation(n)
    split_of = np.empty(n, dtype=np.int64)
    offset = 0
    for s, size in enumerate(sizes):
        split_of[order[offset : offset + size]] = s
        offset += size
    has = np.array([[t in ts for t in TAGS] for ts in tags], dtype=bool).reshape(n, len(TAGS))

    def counts(s: int) -> np.ndarray:
        return has[split_of == s].sum(axis=0)

    for s in range(len(SPLITS)):
        if sizes[s] == 0:
            continue
        for tag in range(len(TAGS)):
            if counts(s)[tag] > 0:
                continue
            # Swap a clip with this tag from a split that has it twice or more for a clip of
            # split s whose removal loses no tag that s has only once (and vice versa).
            done = False
            for donor in order:
                d = split_of[donor]
                if d == s or not has[donor, tag] or counts(d)[tag] < 2:
                    continue
                cd, cs = counts(d), counts(s)
                for receiver in order:
                    if split_of[receiver] != s:
                        continue
                    lost_d = has[donor] & ~has[receiver]
                    lost_s = has[receiver] & ~has[donor]
                    if np.all(cd[lost_d] >= 2) and np.all(cs[lost_s] >= 2):
                        split_of[donor], split_of[receiver] = s, d
                        done = True
                        break
                if done:
                    break
    missing = [
        f"{SPLITS[s]}: {TAGS[t]}"
        for s in range(len(SPLITS))
        if sizes[s] > 0
        for t in np.flatnonzero(counts(s) == 0)
    ]
    if missing:
        logger.warning(
            "synthetic collection of %d clips is too small for every tag to appear in every "
            "split; missing %s",
            n,
            ", ".join(missing),
        )
    return [SPLITS[s] for s in split_of]


def generate_collection(
    out_dir: str | os.PathLike[str],
    n_clips: int = 300,
    duration: float = 4.0,
    sample_rate: int = 16000,
    seed: int = 0,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Generate a synthetic collection: WAV files and a labels file.

    Writes ``out_dir/audio/synth_{i:05d}.wav`` (mono, 16-bit PCM) and ``out_dir/labels.csv`` with
    columns ``track_id,split,path,tags`` (``path`` relative to the labels file, tags joined by
    ``;``). Clip ``i`` is drawn from a generator seeded with ``(seed, i)``, so the output is the
    same, byte for byte, for any number of workers, and the first clips of a larger collection
    equal those of a smaller one. Splits are a seeded random partition, adjusted so that every tag
    appears in every split (possible for a few dozen clips and more).

    Args:
        out_dir: Output directory (created if needed; existing clips are overwritten).
        n_clips: Number of clips.
        duration: Clip length in seconds.
        sample_rate: Sample rate in Hz.
        seed: Collection seed.
        split_fractions: Fractions of clips for ``train``, ``val`` and ``test``.
        workers: Processes rendering clips in parallel (1 renders in this process).
        progress: Show a progress bar.

    Returns:
        Path of the labels file.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be at least 1, got {n_clips}")
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    _split_sizes(n_clips, split_fractions)  # validate before spending time on rendering
    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rel_paths = [f"audio/synth_{i:05d}.wav" for i in range(n_clips)]
    jobs = [
        (seed, i, float(duration), int(sample_rate), str(out / p)) for i, p in enumerate(rel_paths)
    ]

    with contextlib.ExitStack() as stack:
        results: Iterable[tuple[str, ...]] = map(_write_clip, jobs)
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            results = pool.map(_write_clip, jobs, chunksize=max(1, n_clips // (8 * workers)))
        shown = tqdm(results, total=n_clips, desc="synth clips", unit="clip", disable=not progress)
        tags: list[tuple[str, ...]] = list(shown)

    splits = _assign_splits(tags, split_fractions, seed)
    labels = out / "labels.csv"
    tmp = labels.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(_LABEL_COLUMNS)
        for i, (split, path, t) in enumerate(zip(splits, rel_paths, tags)):
            writer.writerow([f"synth_{i:05d}", split, path, ";".join(t)])
    tmp.replace(labels)
    return labels


def load_labels(labels_path: str | os.PathLike[str]) -> dict[str, list[AudioItem]]:
    """Read a labels file written by :func:`generate_collection`.

    Args:
        labels_path: Path of ``labels.csv``.

    Returns:
        Split name -> items of that split (in file order), splits in ``train, val, test`` order;
        item paths are absolute.

    Raises:
        FileNotFoundError: If the labels file does not exist.
        ValueError: If the header or a row is malformed (the message names file and line).
    """

    path = Path(labels_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"synth labels file {path} not found; create it with generate_collection()"
        )
    root = path.parent.resolve()
    items: dict[str, list[AudioItem]] = {s: [] for s in SPLITS}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _LABEL_COLUMNS:
            raise ValueError(
                f"{path}:1: expected header {','.join(_LABEL_COLUMNS)}, got "
                f"{','.join(header) if header else 'an empty file'}"
            )
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(_LABEL_COLUMNS):
                raise ValueError(
                    f"{path}:{line}: expected {len(_LABEL_COLUMNS)} fields "
                    f"({','.join(_LABEL_COLUMNS)}), got {len(row)}"
                )
            track_id, split, rel, tag_field = (c.strip() for c in row)
            if not track_id or not rel:
                raise ValueError(f"{path}:{line}: empty track_id or path")
            if split not in items:
                raise ValueError(
                    f"{path}:{line}: unknown split {split!r}; expected one of {SPLITS}"
                )
            tags = tuple(t.strip() for t in tag_field.split(";") if t.strip())
            unknown = [t for t in tags if t not in TAGS]
            if unknown or not tags:
                raise ValueError(
                    f"{path}:{line}: "
                    + (f"unknown tag(s) {unknown}" if unknown else "no tags")
                    + f"; tags must come from {TAGS}"
                )
            items[split].append(
                AudioItem(path=str(root / rel), tags=tags, track_id=track_id, metadata={})
            )
    return {s: v for s, v in items.items() if v}


def prepare_synth(
    *,
    out: str,
    root: str | None = None,
    n_clips: int = 400,
    duration: float = 4.0,
    seed: int = 0,
    sample_rate: int = 16000,
    workers: int = 1,
    max_samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Generate the synthetic collection and write it into shards (what ``musictag demo`` trains on).

    Args:
        out: Shard folder to write.
        root: Folder for the generated audio and labels; default ``<out>/../synth_audio``.
        n_clips: Number of clips (split 70/15/15).
        duration: Clip length in seconds.
        seed: Collection seed (same seed, same bytes).
        sample_rate: Sample rate of audio and shards in Hz.
        workers: Processes rendering clips and writing shards.
        max_samples_per_shard: Tracks per shard.
        progress: Show progress bars.

    Returns:
        The shard writer's report.
    """
    out_path = Path(out)
    audio_root = Path(root) if root is not None else out_path.parent / f"{out_path.name}_audio"
    labels = generate_collection(
        audio_root,
        n_clips=n_clips,
        duration=duration,
        sample_rate=sample_rate,
        seed=seed,
        workers=workers,
        progress=progress,
    )
    options = {"n_clips": n_clips, "duration": duration, "seed": seed, "single_label": False}
    return write_shards(
        load_labels(labels),
        out_path,
        sample_rate=sample_rate,
        max_samples_per_shard=max_samples_per_shard,
        workers=workers,
        provenance={"source": "synth", "options": options, "tags": list(TAGS)},
        progress=progress,
    )
