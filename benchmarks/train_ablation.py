"""Ablations of ``musictag train`` from scratch: what each default is worth, at equal epochs.

Trains the scratch model of :mod:`musictag.training.scratch` for a fixed number of epochs (not a
time budget, so that a busy machine does not change the result) with one default changed at a
time, and prints validation and test macro PR-AUC over the instrument tags (the tempo tags
``fast``/``slow`` are trained but not scored), plus a reference: logistic regression on the
log-mel mean and standard deviation per band.

    python benchmarks/train_ablation.py /work/dev-fluid/shards --epochs 12
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from _devset import load_dev_set

from musictag.evaluation import track_score_batches
from musictag.frontend import build_frontend
from musictag.training.augment import Augment
from musictag.training.probe import macro_pr_auc, select_probe
from musictag.training.scratch import ScratchConfig, ScratchInputs, mel_crops, train_scratch

VARIANTS = {
    "default": {},
    "float32 (no bf16 autocast)": {"precision": "32-true"},
    "one mean/std for all bands (BatchNorm2d(1) on dB)": {"band_norm": "global"},
    "+ gain and shift": {"augment": Augment(freq_masks=0, time_masks=0)},
    "+ gain, shift and SpecAugment masks": {"augment": Augment()},
    "head dropout 0.5": {"head_dropout": 0.5},
    "+ gain, shift, masks and mixup 0.4": {"augment": Augment(mixup_alpha=0.4)},
    "96 mel bands, hop 256": {"n_mels": 96, "hop_length": 256},
    "wider (24-48-96-192 channels)": {"channels": (24, 48, 96, 192)},
    "mean over frequency in the readout": {"readout": "mean"},
}


def scores(model, tracks, k: int) -> np.ndarray:
    out = [s for _, s in track_score_batches(model, zip(tracks.keys, tracks.waves), k)]
    return torch.cat(out).numpy()


def reference(train, val, test, tags, keep, sr, crop) -> None:
    """Logistic regression on the log-mel mean and std per band (the issue's reference)."""
    fe = build_frontend("logmel", sr, n_mels=96, standardize=False)

    def stats(ts):
        m = mel_crops(fe, ts.waves, crop, 1, torch.device("cpu"))[:, 0, 0]  # [N, F, T]
        return torch.cat([m.mean(-1), m.std(-1)], dim=1)

    xs = [stats(t) for t in (train, val, test)]
    mu, sd = xs[0].mean(0), xs[0].std(0).clamp_min(1e-5)
    xs = [(x - mu) / sd for x in xs]
    fit = select_probe(xs[0], torch.from_numpy(train.targets), xs[1], val.targets, hidden=(0,))
    fc = torch.nn.Linear(xs[0].shape[1], len(tags))
    fc.load_state_dict({k[3:]: v for k, v in fit.state["head"].items()})
    with torch.no_grad():
        ref = torch.sigmoid(fc(xs[2])).numpy()
    ref_test = macro_pr_auc(ref[:, keep], test.targets[:, keep])
    print(f"| logistic regression on log-mel mean+std per band | - | {ref_test:.3f} | - |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("shards")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), help="none: reference only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", action="store_true", help="also the mel-statistics reference")
    p.add_argument(
        "--seeds", type=int, default=1, help="train this many seeds; also their logit average"
    )
    args = p.parse_args()
    dev = load_dev_set(args.shards)
    tags, keep, sr, crop, k = dev.tags, dev.keep, dev.sample_rate, dev.crop, dev.crops
    train, val, test = (dev.splits[s] for s in ("train", "val", "test"))

    if args.reference:
        reference(train, val, test, tags, keep, sr, crop)
    for name in args.variants:
        cfg = dataclasses.replace(ScratchConfig(), max_epochs=args.epochs, **VARIANTS[name])
        logits: dict[str, list[torch.Tensor]] = {"val": [], "test": []}
        for seed in range(args.seed, args.seed + args.seeds):
            t0, c0 = time.monotonic(), time.process_time()
            model, _ = train_scratch(
                ScratchInputs(train, val, tags, sr, crop, k), t0 + 1e9, cfg, seed
            )
            cpu = time.process_time() - c0
            for split, ts in (("val", val), ("test", test)):
                logits[split].append(torch.logit(torch.from_numpy(scores(model, ts, k)), 1e-6))
            v = macro_pr_auc(scores(model, val, k)[:, keep], val.targets[:, keep])
            t = macro_pr_auc(scores(model, test, k)[:, keep], test.targets[:, keep])
            label = name if args.seeds == 1 else f"{name}, seed {seed}"
            print(f"| {label} | {v:.3f} | {t:.3f} | {cpu:.0f} |", flush=True)
        if args.seeds > 1:
            avg = {s: torch.sigmoid(torch.stack(v).mean(0)).numpy() for s, v in logits.items()}
            v = macro_pr_auc(avg["val"][:, keep], val.targets[:, keep])
            t = macro_pr_auc(avg["test"][:, keep], test.targets[:, keep])
            print(f"| {name}, logits of {args.seeds} seeds averaged | {v:.3f} | {t:.3f} | |")


if __name__ == "__main__":
    main()
