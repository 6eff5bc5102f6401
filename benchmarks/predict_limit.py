"""``musictag predict`` end to end against the machine's limit for the same work.

The limit of tagging a set of files is what cannot be avoided:

- **decode**: decoding, downmixing and resampling every file to the model's rate, one file after
  the other on one core (``musictag.audio.stream_audio``, as predict reads them), plus
- **compute**: the FLOPs of every window the model scores
  (``torch.utils.flop_counter.FlopCounterMode``) at the fp32 matmul rate measured in this
  process (a 2048² ``torch.mm`` with torch's threads).

The file set stands in for a music collection: by default 39 recordings of 20 s to 10 min (lengths
spread geometrically, 113 min in all: the size of the collection issue 14 measured), rendered from random multi-instrument MIDI with a General-MIDI sound font
through ``fluidsynth`` (benchmarks/instrument_set.py; Debian ``fluidsynth fluid-soundfont-gm``,
``pip install 'musictag[bench]'``), stereo, and encoded in turn as Ogg Vorbis, MP3, Opus and FLAC
at 22.05, 32, 44.1 and 48 kHz (Opus always 48 kHz). Without fluidsynth, the synthetic music of
``musictag.data.sources.synth`` is used. The set is written once into ``--work``.

Each mode runs ``python -m musictag predict`` in a subprocess (so the time includes starting
Python, importing torch and loading the model, as a user sees it); the modes are interleaved
and the best of ``--repeats`` kept:

- **before**: the engine as it was: files decoded in turn in the model's thread, 16 windows per
  pass, torch's default threads, short files zero-padded to a whole window, the model as it is
  (``--batch-size 16 --prefetch 0 --pad-short --exact``);
- **after**: the defaults (decoding on a background thread, batch size and threads measured
  once and cached, short files at their own length, the optimised copy of the model);
- any ``--mode NAME 'OPTIONS'`` given.

The time of starting Python, importing and loading the model is measured too and reported
beside each mode.

The scores of the two modes are compared (files at least one window long must agree to 1e-5;
shorter files change on purpose: they are no longer padded).

    python benchmarks/predict_limit.py --model mtat_fcn
    python benchmarks/predict_limit.py --model mtat_musicnn --files 12
    python benchmarks/predict_limit.py --files 16 --longest 300    # the earlier 28.6-min set
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.flop_counter import FlopCounterMode

try:
    from benchmarks import _common as common
    from benchmarks.inference_common import MODELS, clips, make_checkpoint
except ImportError:  # run as a script from benchmarks/
    import _common as common
    from inference_common import MODELS, clips, make_checkpoint

from musictag import load_tagger
from musictag.audio import stream_audio
from musictag.tta import window_starts

FORMATS = (("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III"), ("opus", "OGG", "OPUS"),
           ("flac", "FLAC", "PCM_16"))  # fmt: skip
RATES = (22050, 32000, 44100, 48000)
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
REPO = Path(__file__).resolve().parents[1]


def lengths(n: int, shortest: float = 20.0, longest: float = 300.0) -> list[float]:
    """``n`` durations in seconds from ``shortest`` to ``longest``, spread geometrically."""
    if n == 1:
        return [longest]
    return [float(x) for x in np.round(np.geomspace(shortest, longest, n), 1)]


def _render_fluidsynth(seconds: float, rate: int, seed: int, soundfont: Path) -> np.ndarray:
    """Stereo ``[frames, 2]`` of a random multi-instrument MIDI clip rendered by fluidsynth."""
    import tempfile

    try:
        from benchmarks.instrument_set import make_clip
    except ImportError:
        from instrument_set import make_clip

    mid, _ = make_clip(np.random.default_rng([7, seed]), seconds)
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "clip.mid", Path(tmp) / "clip.wav"
        mid.save(str(midi))
        cmd = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(rate), "-F", str(wav)]
        subprocess.run([*cmd, str(soundfont), str(midi)], check=True, capture_output=True)
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    audio = audio[: int(seconds * rate)]
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    return audio * (0.89 / max(float(np.abs(audio).max()), 1e-6))


def make_file_set(
    folder: Path, n: int, soundfont: Path, longest: float = 300.0, log=print
) -> list[Path]:
    """Write (once) ``n`` recordings of 20 s to ``longest`` s in rotating formats and rates."""
    folder.mkdir(parents=True, exist_ok=True)
    use_fluid = shutil.which("fluidsynth") is not None and soundfont.is_file()
    paths = []
    start = time.perf_counter()
    for i, seconds in enumerate(lengths(n, longest=longest)):
        ext, fmt, subtype = FORMATS[i % len(FORMATS)]
        rate = 48000 if subtype == "OPUS" else RATES[(i // len(FORMATS) + i) % len(RATES)]
        path = folder / f"{i:02d}_{int(seconds)}s_{rate // 1000}k.{ext}"
        paths.append(path)
        if path.is_file():
            continue
        if use_fluid:
            audio = _render_fluidsynth(seconds, rate, i, soundfont)
        else:
            audio = clips(1, seconds, rate, seed=100 + i)[0]
        tmp = path.with_name(f".tmp_{path.name}")
        # in blocks: libsndfile's Vorbis encoder crashes on one long write
        with sf.SoundFile(tmp, "w", rate, 2, format=fmt, subtype=subtype) as f:
            for i0 in range(0, len(audio), 1 << 15):
                f.write(audio[i0 : i0 + (1 << 15)])
        os.replace(tmp, path)
    if time.perf_counter() - start > 1:
        how = f"fluidsynth, {soundfont.name}" if use_fluid else "synthetic music (no fluidsynth)"
        log(f"wrote the file set ({how}) in {time.perf_counter() - start:.0f} s")
    return paths


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 ``n x n`` matmul rate of this process (torch's threads), best of ``repeats``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2 * n**3 / common.best_of(lambda: torch.mm(a, b), repeats) / 1e9


def decode_seconds(paths: list[Path], rate: int) -> tuple[float, list[int]]:
    """Seconds to decode, downmix and resample every file in turn, and their lengths at ``rate``."""
    start = time.perf_counter()
    samples = [sum(chunk.size for chunk in stream_audio(p, rate)) for p in paths]
    return time.perf_counter() - start, samples


def forward_flops(model, n: int) -> int:
    """FLOPs of one forward pass over one ``n``-sample window."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, n))
    return int(counter.get_total_flops())


def window_flops(model, samples: list[int], padded: bool) -> tuple[int, int]:
    """(windows, FLOPs) of tagging tracks of these lengths with sliding windows (no overlap); a
    track shorter than a window counts at its own length unless ``padded``."""
    window = model.crop_samples
    full = forward_flops(model, window)
    n_windows, flops = 0, 0
    for n in samples:
        starts = window_starts(n, window, window)
        n_windows += len(starts)
        flops += full * len(starts) if n >= window or padded else forward_flops(model, n)
    return n_windows, flops


def run_predict(ckpt: Path, paths: list[Path], out: Path, options: list[str]) -> float:
    """Wall seconds of ``python -m musictag predict`` on the files (JSON with every score)."""
    cmd = [sys.executable, "-m", "musictag", "predict", str(ckpt), *map(str, paths), "--quiet",
           "--format", "json", "--all-scores", "-o", str(out), *options]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - start


def scores_of(path: Path) -> dict[str, np.ndarray]:
    docs = json.loads(path.read_text())
    return {d["file"]: np.array(list(d["scores"].values())) for d in docs}


MODES = {
    "before": ["--batch-size", "16", "--prefetch", "0", "--pad-short", "--exact"],
    "after": [],
}


def startup_seconds(ckpt: Path) -> float:
    """Wall seconds of starting Python, importing musictag's predict path and loading the model."""
    code = (
        "import sys, musictag.cli, musictag.inference; from musictag import load_tagger; "
        "load_tagger(sys.argv[1])"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(ckpt)], check=True, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, default="mtat_fcn")
    p.add_argument("--files", type=int, default=39, help="recordings of 20 s to --longest")
    p.add_argument("--longest", type=float, default=600.0,
                   help="seconds of the longest recording (39 files of 20-600 s: 113 min)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs per mode (best kept)")
    p.add_argument("--soundfont", type=Path, default=SOUNDFONT)
    p.add_argument(
        "--mode",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "OPTIONS"),
        help="another mode: a name and predict options in one string, e.g. two '--prefetch 2'",
    )
    p.add_argument("--work", type=Path, default=common.DEFAULT_WORK / "predict-set")
    p.add_argument("--cache", type=Path, default=None,
                   help="MUSICTAG_CACHE_DIR of the runs (default: a fresh folder in --work, so the "
                   "first 'after' run measures the batch size and threads)")  # fmt: skip
    args = p.parse_args()

    print(common.machine())
    paths = make_file_set(args.work / "audio", args.files, args.soundfont, args.longest)
    ckpt = make_checkpoint(args.model, args.work)
    model = load_tagger(ckpt).eval()
    rate, window = model.sample_rate, model.crop_samples

    gflops = matmul_gflops()
    decode_s, samples = decode_seconds(paths, rate)
    minutes = sum(samples) / rate / 60
    n_win, flops = window_flops(model, samples, padded=False)
    _, flops_padded = window_flops(model, samples, padded=True)
    compute_s = flops / (gflops * 1e9)
    limit = decode_s + compute_s
    print(
        f"{args.model}: {len(paths)} files, {minutes:.1f} min of audio, {n_win} windows of "
        f"{window / rate:.1f} s, {flops / 1e12:.3f} TFLOP ({flops_padded / 1e12:.3f} with short "
        f"files padded)"
    )
    print(f"matmul rate {gflops:.0f} GFLOP/s; decode {decode_s:.1f} s on one core; "
          f"compute {compute_s:.2f} s at the matmul rate; limit {limit:.1f} s")  # fmt: skip

    modes = {**MODES, **{name: options.split() for name, options in args.mode}}
    startup = min(startup_seconds(ckpt) for _ in range(2))
    print(f"startup (Python, imports, loading the model): {startup:.1f} s")
    cache = args.cache or args.work / f"tuning-cache-{os.getpid()}"
    os.environ["MUSICTAG_CACHE_DIR"] = str(cache)
    times: dict[str, list[float]] = {m: [] for m in modes}
    outs = {m: args.work / f"{args.model}_{m}.json" for m in modes}
    first_after = run_predict(ckpt, paths, outs["after"], MODES["after"])  # measures and caches
    print(f"first 'after' run (measuring the batch size and threads): {first_after:.1f} s")
    for _ in range(args.repeats):
        for mode, options in modes.items():
            times[mode].append(run_predict(ckpt, paths, outs[mode], options))
            print(f"  {mode}: {times[mode][-1]:.1f} s (load {common.load()})")
    tuning = json.loads((cache / "inference-tuning.json").read_text())
    chosen = [
        {k: v for k, v in e.items() if k in ("batch_size", "threads")}
        for e in tuning.values()
        if "batch_size" in e
    ]

    before, after = scores_of(outs["before"]), scores_of(outs["after"])
    long_files = [str(pth) for pth, n in zip(paths, samples) if n >= window]
    short_files = [str(pth) for pth, n in zip(paths, samples) if n < window]
    diff_long = max((np.abs(before[f] - after[f]).max() for f in long_files), default=0.0)
    diff_short = max((np.abs(before[f] - after[f]).max() for f in short_files), default=0.0)

    rows = [
        [m, min(t), min(t) / limit, min(t) - startup, (min(t) - startup) / limit]
        for m, t in times.items()
    ]
    header = ["mode", "predict wall (s)", "x limit", "without startup (s)", "x limit"]
    print(common.table(header, rows))
    print(f"chosen settings: {chosen}; max |score diff| before/after: {diff_long:.1e} on "
          f"{len(long_files)} files >= one window, {diff_short:.3f} on {len(short_files)} shorter "
          "(padded before; after: at their own length unless the model is the FCN)")  # fmt: skip
    print(json.dumps({
        "model": args.model, "files": len(paths), "minutes": minutes, "windows": n_win,
        "tflop": flops / 1e12, "matmul_gflops": gflops, "decode_s": decode_s,
        "compute_s": compute_s, "limit_s": limit, "startup_s": startup,
        "first_after_s": first_after,
        **{f"{m}_s": min(t) for m, t in times.items()},
        **{f"{m}_x_limit": min(t) / limit for m, t in times.items()},
        "settings": chosen, "max_diff_long": float(diff_long), "load": common.load(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
