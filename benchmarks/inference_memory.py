"""Peak memory of tagging a one-hour file: streamed windows vs decoding the whole file first.

Writes a ``--minutes`` long 44.1 kHz stereo FLAC of synthetic music, converts a published tagger
(``--model``, default the MTAT Musicnn of Won et al. 2020, 3-s windows), then tags the file in a
fresh subprocess per mode and reads that subprocess's peak resident memory from ``os.wait4``:

- ``idle``: import musictag and load the model, tag nothing (the floor);
- ``stream``: ``musictag.inference.tag_file`` (blocks of the file are decoded, downmixed and
  resampled as they come; windows are scored in batches of ``--batch-size``);
- ``whole`` (with ``--whole``): the file decoded at once with ``load_audio`` (what
  ``tag_file`` did before streaming), then the same windows scored.

    python benchmarks/inference_memory.py                 # one hour, streamed (~5 min on 2 cores)
    python benchmarks/inference_memory.py --whole         # ... and the whole-file baseline
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inference_common import MODELS, make_checkpoint, write_long_file


def child(mode: str, checkpoint: str, audio: str, batch_size: int) -> None:
    """Runs in the measured subprocess; prints one JSON line."""
    import torch

    from musictag import load_tagger
    from musictag.audio import load_audio
    from musictag.inference import tag_file, tag_waveform

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = load_tagger(checkpoint)
    t0 = time.perf_counter()
    if mode == "idle":
        n = 0
    elif mode == "stream":
        n = len(tag_file(model, audio, batch_size=batch_size).starts)
    else:
        n = len(
            tag_waveform(model, load_audio(audio, model.sample_rate), batch_size=batch_size).starts
        )
    print(json.dumps({"windows": n, "seconds": time.perf_counter() - t0}))


def measure(mode: str, checkpoint: Path, audio: Path, batch_size: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        str(checkpoint),
        str(audio),
        "--batch-size",
        str(batch_size),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{mode}: the subprocess failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--model", choices=MODELS, default="mtat_musicnn")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--whole", action="store_true", help="also measure the whole-file baseline")
    p.add_argument("--child", nargs=3, metavar=("MODE", "CKPT", "AUDIO"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child, batch_size=args.batch_size)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        audio = write_long_file(tmp / "long.flac", args.minutes)
        size = audio.stat().st_size / 2**20
        print(
            f"{args.minutes:g} min, 44.1 kHz stereo FLAC ({size:.0f} MB) written in {time.perf_counter() - t0:.0f} s"
        )
        ckpt = make_checkpoint(args.model, tmp)
        modes = ["idle", "stream"] + (["whole"] if args.whole else [])
        results = {}
        for mode in modes:
            r = measure(mode, ckpt, audio, args.batch_size)
            results[mode] = r
            print(
                f"{mode:7s} peak RSS {r['peak_rss_mb']:7.0f} MB   {r['windows']:5d} windows in {r['seconds']:6.1f} s"
            )
        print(
            json.dumps(
                {
                    "minutes": args.minutes,
                    "model": args.model,
                    "batch_size": args.batch_size,
                    **results,
                }
            )
        )


if __name__ == "__main__":
    main()
