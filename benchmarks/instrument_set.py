"""A realistic development set for ``musictag train``: sampled instruments with exact multi-labels.

Renders short multi-instrument clips from MIDI with a General-MIDI sound font (real sampled
instruments) through the ``fluidsynth`` command, and writes the labels and a fixed split as a CSV
that ``musictag prepare folder`` reads. The protocol mirrors the held-out set of issue 11: 900
clips x 5 s at 16 kHz, 1-4 instrument families per clip (drums sometimes), the 10 instrument tags
below plus the tempo tags ``fast``/``slow``, a 600/150/150 split.

Each clip has a random key, tempo and chord progression; every family plays a part that suits it
(bass: roots; piano, organ, guitars: chords or arpeggios; strings: held chords; brass, woodwind,
flute: a melody) with a random General-MIDI program of that family, velocity and register.

Needs ``fluidsynth`` and a sound font (Debian: ``apt-get install fluidsynth fluid-soundfont-gm
timgm6mb-soundfont``) and ``mido`` (``pip install musictag[bench]``)::

    python benchmarks/instrument_set.py --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2 --out dev-fluid
    python -m musictag prepare folder --root dev-fluid --out dev-fluid/shards \\
        --labels dev-fluid/labels.csv --tag_separator '|'

Develop on one sound font and confirm on another (``TimGM6mb.sf2``), so that nothing is tuned to
one set of samples.

``--hard`` makes a set at least as hard as the issue's held-out one (on which logistic regression
on log-mel mean+std per band scores 0.686; on the default set it scores 0.71-0.78): up to 5
families per clip, every General-MIDI program of each family, a random level (CC 7, 30-127) and
pan (CC 10) per part, reverb and chorus sends (CC 91/93), a velocity spread per note, and
background noise at 10-35 dB SNR.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

INSTRUMENTS: dict[str, list[int]] = {
    # General-MIDI programs (0-based) of each family
    "piano": [0, 1, 2, 3],
    "organ": [16, 17, 18, 19, 20],
    "acoustic_guitar": [24, 25],
    "electric_guitar": [26, 27, 28, 29, 30],
    "bass": [32, 33, 34, 35],
    "strings": [40, 41, 42, 48, 49],
    "brass": [56, 57, 58, 60, 61],
    "woodwind": [64, 65, 66, 68, 70, 71],
    "flute": [72, 73, 74, 75],
}
# --hard: every General-MIDI program that belongs to the family
INSTRUMENTS_HARD: dict[str, list[int]] = {
    "piano": [0, 1, 2, 3, 4, 5, 6, 7],
    "organ": [16, 17, 18, 19, 20],
    "acoustic_guitar": [24, 25],
    "electric_guitar": [26, 27, 28, 29, 30, 31],
    "bass": [32, 33, 34, 35, 36, 37, 38, 39],
    "strings": [40, 41, 42, 43, 44, 45, 48, 49, 50, 51],
    "brass": [56, 57, 58, 59, 60, 61, 62, 63],
    "woodwind": [64, 65, 66, 67, 68, 69, 70, 71],
    "flute": [72, 73, 74, 75, 76, 77, 78, 79],
}
TAGS = [*INSTRUMENTS, "drums", "fast", "slow"]
ROLE = {
    "piano": "chords",
    "organ": "chords",
    "acoustic_guitar": "arpeggio",
    "electric_guitar": "chords",
    "bass": "bass",
    "strings": "pad",
    "brass": "melody",
    "woodwind": "melody",
    "flute": "melody",
}
TPB = 480  # MIDI ticks per beat
MAJOR = [0, 2, 4, 5, 7, 9, 11]
PROGRESSIONS = [[0, 4, 5, 3], [0, 5, 3, 4], [0, 3, 4, 4], [5, 3, 0, 4], [0, 1, 4, 0]]


def _chord(key: int, degree: int) -> list[int]:
    """Triad on a scale degree, as pitch classes above ``key`` (semitones)."""
    return [key + MAJOR[(degree + i) % 7] + 12 * ((degree + i) // 7) for i in (0, 2, 4)]


def _part(
    role: str, rng: np.random.Generator, key: int, prog: list[int], beats: int, spread: int = 0
) -> list:
    """(start_beat, length_beats, pitch, velocity) notes of one instrument's part.

    ``spread``: each note's velocity varies uniformly by up to this much.
    """
    notes = []
    vel = int(rng.integers(70, 115))
    bar = 4
    for b in range(0, beats, bar):
        chord = _chord(key, prog[(b // bar) % len(prog)])
        if role == "bass":
            root = 36 + chord[0] % 12
            for beat in range(bar):
                notes.append((b + beat, 0.9, root + (7 if beat == 2 else 0), vel))
        elif role == "pad":
            base = int(rng.choice([48, 55, 60]))
            for p in chord:
                notes.append((b, bar - 0.05, base + p % 12, vel - 15))
        elif role == "chords":
            base = int(rng.choice([48, 60]))
            step = float(rng.choice([1.0, 2.0]))
            t = 0.0
            while t < bar:
                for p in chord:
                    notes.append((b + t, step * 0.9, base + p % 12, vel))
                t += step
        elif role == "arpeggio":
            base = int(rng.choice([48, 55]))
            seq = [*chord, chord[1] + 12]
            for i in range(8):
                notes.append((b + i * 0.5, 0.6, base + seq[i % 4] % 12 + 12 * (i % 4 == 3), vel))
        else:  # melody
            base = int(rng.choice([60, 67, 72]))
            t = 0.0
            while t < bar:
                length = float(rng.choice([0.5, 1.0, 1.0, 2.0]))
                degree = int(rng.integers(0, 8))
                pitch = base + (key + MAJOR[degree % 7]) % 12 + 12 * (degree // 7)
                notes.append((b + t, min(length, bar - t) * 0.95, pitch, vel))
                t += length
    if spread:
        jitter = rng.integers(-spread, spread + 1, size=len(notes))
        notes = [(a, b, c, int(np.clip(v + j, 1, 127))) for (a, b, c, v), j in zip(notes, jitter)]
    return notes


def _drums(rng: np.random.Generator, beats: int) -> list:
    notes = []
    vel = int(rng.integers(75, 115))
    eighths = bool(rng.integers(0, 2))
    for beat in range(beats):
        notes.append((beat, 0.2, 36 if beat % 2 == 0 else 38, vel))
        for half in (0.0, 0.5) if eighths else (0.0,):
            notes.append((beat + half, 0.1, 42, vel - 20))
    return notes


def make_clip(
    rng: np.random.Generator, seconds: float, hard: bool = False
) -> tuple[mido.MidiFile, list[str]]:
    """A random multi-instrument MIDI clip and its tags (``hard``: see the module docstring)."""
    programs = INSTRUMENTS_HARD if hard else INSTRUMENTS
    families = list(programs)
    if hard:
        n = int(rng.choice([1, 2, 3, 4, 5], p=[0.15, 0.25, 0.25, 0.2, 0.15]))
    else:
        n = int(rng.choice([1, 2, 3, 4], p=[0.25, 0.35, 0.25, 0.15]))
    chosen = [families[i] for i in rng.choice(len(families), size=n, replace=False)]
    drums = bool(rng.random() < 0.35)
    fast = bool(rng.random() < 0.5)
    bpm = float(rng.uniform(125, 170) if fast else rng.uniform(60, 90))
    beats = int(np.ceil(seconds * bpm / 60)) + 2
    key = int(rng.integers(0, 12))
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    mid = mido.MidiFile(ticks_per_beat=TPB)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    mid.tracks.append(meta)
    spread = 25 if hard else 0
    parts = [
        (fam, ch, _part(ROLE[fam], rng, key, prog, beats, spread)) for ch, fam in enumerate(chosen)
    ]
    if drums:
        parts.append(("drums", 9, _drums(rng, beats)))
    for fam, ch, notes in parts:
        track = mido.MidiTrack()
        if fam != "drums":
            program = int(rng.choice(programs[fam]))
            track.append(mido.Message("program_change", channel=ch, program=program, time=0))
        if hard:  # level, pan, reverb and chorus sends of this part
            for control, lo, hi in ((7, 30, 128), (10, 0, 128), (91, 0, 100), (93, 0, 80)):
                value = int(rng.integers(lo, hi))
                track.append(
                    mido.Message("control_change", channel=ch, control=control, value=value)
                )
        events = []
        for start, length, pitch, vel in notes:
            on = int(start * TPB)
            events.append((on, 1, pitch, vel))
            events.append((on + max(1, int(length * TPB)), 0, pitch, 0))
        events.sort(key=lambda e: (e[0], e[1]))
        now = 0
        for tick, is_on, pitch, vel in events:
            kind = "note_on" if is_on else "note_off"
            track.append(
                mido.Message(kind, channel=ch, note=int(pitch), velocity=int(vel), time=tick - now)
            )
            now = tick
        mid.tracks.append(track)
    tags = sorted(chosen) + (["drums"] if drums else []) + ["fast" if fast else "slow"]
    return mid, tags


def render(
    mid: mido.MidiFile,
    soundfont: Path,
    out: Path,
    sr: int,
    seconds: float,
    snr_db: float | None = None,
    seed: int = 0,
) -> None:
    """Render ``mid`` with fluidsynth, trim to ``seconds``, add noise at ``snr_db`` (if given)
    and peak-normalise to -1 dBFS."""
    with tempfile.TemporaryDirectory() as tmp:
        midi_path, wav_path = Path(tmp) / "clip.mid", Path(tmp) / "clip.wav"
        mid.save(str(midi_path))
        # an argument list, never a shell string
        cmd = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(sr), "-F", str(wav_path)]
        subprocess.run([*cmd, str(soundfont), str(midi_path)], check=True, capture_output=True)
        audio, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)[: int(seconds * rate)]
    if snr_db is not None:
        noise = _pink_noise(np.random.default_rng(seed), len(audio))
        power = float(np.mean(audio**2)) or 1e-8
        audio = audio + noise * np.sqrt(power / 10 ** (snr_db / 10))
    peak = float(np.abs(audio).max()) or 1.0
    sf.write(str(out), audio * (0.89 / peak), rate, subtype="PCM_16")


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-power noise with a 1/f power spectrum (the hiss and hum of a real recording)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
    noise = np.fft.irfft(spec, n)
    return noise / (noise.std() or 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--soundfont", type=Path, default=Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"))
    p.add_argument("--out", type=Path, required=True, help="output folder (audio/ + labels.csv)")
    p.add_argument("--clips", type=int, default=900)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument(
        "--split", type=int, nargs=3, default=(600, 150, 150), metavar=("TR", "VA", "TE")
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="parallel fluidsynth processes")
    p.add_argument("--hard", action="store_true", help="the harder set (module docstring)")
    args = p.parse_args()
    if shutil.which("fluidsynth") is None:
        raise SystemExit("fluidsynth not found: apt-get install fluidsynth fluid-soundfont-gm")
    if not args.soundfont.is_file():
        raise SystemExit(f"sound font not found: {args.soundfont}")
    if sum(args.split) != args.clips:
        raise SystemExit(f"--split {args.split} does not add up to --clips {args.clips}")
    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    names = ["train"] * args.split[0] + ["val"] * args.split[1] + ["test"] * args.split[2]
    jobs, rows = [], []
    for i, split in enumerate(names):
        mid, tags = make_clip(rng, args.seconds, args.hard)
        snr = float(rng.uniform(10, 35)) if args.hard else None
        rel = f"audio/clip_{i:04d}.wav"
        rows.append({"path": rel, "tags": "|".join(tags), "split": split})
        jobs.append((mid, args.out / rel, snr, args.seed * 100_000 + i))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(
            pool.map(
                lambda j: render(
                    j[0], args.soundfont, j[1], args.sample_rate, args.seconds, j[2], j[3]
                ),
                jobs,
            )
        )
    with open(args.out / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "tags", "split"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} clips in {time.perf_counter() - t0:.0f} s -> {args.out / 'labels.csv'}")


if __name__ == "__main__":
    main()
