"""Crops per second of an exported tagger in onnxruntime (CPU) against the same model in PyTorch.

Converts a published tagger (``--model``, default the MTAT Musicnn of Won et al. 2020), exports it
with ``musictag export`` (the graph holds the frontend, with the conv1d STFT), and scores the same
batch of synthetic music crops (``musictag.data.sources.synth``) three ways, interleaved, best of
``--rounds``:

- **PyTorch**: ``model.predict_proba`` as ``musictag predict`` runs it on CPU (``torch.stft``
  frontend);
- **PyTorch, conv STFT**: the exported graph's modules in PyTorch (``ScoringGraph``), to separate
  the runtime from the STFT;
- **onnxruntime**: ``CPUExecutionProvider`` with as many intra-op threads as torch uses.

Prints a Markdown table (crops/s, ratio to PyTorch), the largest score difference and the load.

    python benchmarks/onnx_throughput.py --model mtat_musicnn --batch 16
    python benchmarks/onnx_throughput.py --model mtat_fcn --batch 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from inference_common import MODELS, make_checkpoint

from musictag import load_tagger
from musictag.export import ScoringGraph, example_waveforms, export_model


def best_rate(fn, n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, default="mtat_musicnn")
    p.add_argument("--batch", type=int, default=16, help="crops per forward pass")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="default: torch's")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(args.model, Path(tmp))
        model = load_tagger(ckpt)
        onnx_path = export_model(model, Path(tmp) / "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        graph = ScoringGraph(model)
        x = example_waveforms(model.sample_rate, model.crop_samples, n=args.batch, seed=3)
        xn = x.numpy()

        def torch_fft() -> np.ndarray:
            with torch.inference_mode():
                return model.predict_proba(x).numpy()

        def torch_conv() -> np.ndarray:
            with torch.inference_mode():
                return graph(x).numpy()

        def onnx() -> np.ndarray:
            return session.run(["scores"], {"waveform": xn})[0]

        ref = torch_fft()
        diff = float(np.abs(onnx() - ref).max())
        rates = {"PyTorch": [], "PyTorch, conv STFT": [], "onnxruntime": []}
        for _ in range(2):  # interleaved, so load changes hit all three alike
            rates["PyTorch"].append(best_rate(torch_fft, args.batch, args.rounds))
            rates["PyTorch, conv STFT"].append(best_rate(torch_conv, args.batch, args.rounds))
            rates["onnxruntime"].append(best_rate(onnx, args.batch, args.rounds))
    best = {k: max(v) for k, v in rates.items()}
    seconds = model.crop_samples / model.sample_rate
    print(
        f"{args.model}: batches of {args.batch} crops of {seconds:g} s, {threads} threads, "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print("| runtime | crops/s | audio s per s | vs PyTorch |")
    print("|---|---|---|---|")
    for k, v in best.items():
        print(f"| {k} | {v:.3g} | {v * seconds:.3g} | {v / best['PyTorch']:.2f} |")
    print(f"max |score difference| onnxruntime vs PyTorch: {diff:.1e}")
    print(f"load average: {os.getloadavg()}")
    print(json.dumps({"model": args.model, "batch": args.batch, "threads": threads,
                      "crops_per_s": best, "max_abs_diff": diff}))  # fmt: skip


if __name__ == "__main__":
    main()
