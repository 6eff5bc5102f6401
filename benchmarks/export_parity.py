"""ONNX export parity of taggers on crops of recorded audio files.

``musictag export`` checks parity on two synthetic clips; this measures it on the crops of any
audio files you have (two evenly spaced windows per file at least one window long):

    python benchmarks/export_parity.py CKPT [CKPT ...] --audio 'FOLDER/*' [--out /tmp]

Prints, per checkpoint, the crops used and the largest |onnxruntime - PyTorch| score difference.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import torch

from musictag import load_tagger
from musictag.audio import load_audio
from musictag.export import export_checkpoint, run_exported


def crops_of(files: list[str], sample_rate: int, window: int, per_file: int = 2) -> np.ndarray:
    """``[crops, window]`` float32: ``per_file`` evenly spaced windows of each long-enough file."""
    crops = []
    for f in files:
        wave = load_audio(f, sample_rate)
        if len(wave) >= window:
            crops += [
                wave[s : s + window]
                for s in np.linspace(0, len(wave) - window, per_file).astype(int)
            ]
    if not crops:
        raise SystemExit(f"no file is at least {window / sample_rate:.1f} s long")
    return np.stack(crops).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--audio", required=True, help="a glob of audio files")
    p.add_argument("--out", type=Path, default=Path("/tmp"), help="where the .onnx files go")
    args = p.parse_args()
    files = sorted(glob.glob(args.audio))
    for ckpt in args.checkpoints:
        model = load_tagger(ckpt).eval()
        onnx = args.out / f"{ckpt.stem}.onnx"
        export_checkpoint(ckpt, onnx)
        x = crops_of(files, model.sample_rate, model.crop_samples)
        with torch.no_grad():
            reference = torch.sigmoid(model(torch.from_numpy(x))).numpy()
        diff = float(np.abs(run_exported(onnx, x) - reference).max())
        print(
            f"{ckpt.stem}: {len(x)} crops of {x.shape[1]} samples, max |score difference| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
