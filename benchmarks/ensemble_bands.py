"""Compact CNNs on a transfer model's 96-band frontend: as they are, or resampled to fewer bands.

Equal epochs, one thread, the same seeds; validation (all tags) and test (instrument tags)
macro PR-AUC of each member and of their average (docs/train.md, "Compact CNNs beside the
probe")::

    python benchmarks/ensemble_bands.py SHARDS mtat_fcn.ckpt --bands 64,96 --seeds 0,1
"""

from __future__ import annotations

import argparse
import time

import torch

from musictag.training.data import choose_window, load_split, train_vocab
from musictag.training.probe import macro_pr_auc
from musictag.training.scratch import (
    ScratchConfig,
    ScratchInputs,
    crop_logits,
    mel_crops,
    train_scratch,
)
from musictag.training.transfer import build_transfer_tagger

NOT_INSTRUMENTS = ("fast", "slow")  # the tempo tags of benchmarks/instrument_set.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", help="shards with train, val and test splits")
    ap.add_argument("checkpoint", help="a checkpoint whose frontend the CNNs share (MTAT FCN)")
    ap.add_argument("--bands", default="64,96", help="CNN input bands, comma-separated")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    vocab = train_vocab(args.shards)
    tags = list(vocab.tags)
    train, val, test = (load_split(args.shards, s, vocab) for s in ("train", "val", "test"))
    sr = 16000
    crop, k = choose_window([len(w) for w in train.waves], sr)
    frontend = build_transfer_tagger([args.checkpoint], tags, crop, k).frontend
    data = ScratchInputs(train, val, tags, sr, crop, k, frontend=frontend)
    keep = [i for i, t in enumerate(tags) if t not in NOT_INSTRUMENTS]
    cpu = torch.device("cpu")
    x = {s: mel_crops(frontend, ts.waves, crop, k, cpu) for s, ts in (("val", val), ("test", test))}

    def scores(logits: dict[str, torch.Tensor]) -> tuple[float, float]:
        v = macro_pr_auc(torch.sigmoid(logits["val"]).numpy(), val.targets)
        t = torch.sigmoid(logits["test"]).numpy()[:, keep]
        return v, macro_pr_auc(t, test.targets[:, keep])

    print("| members | CPU s | val | test |\n|---|---|---|---|")
    for bands in (int(b) for b in args.bands.split(",")):
        cfg = ScratchConfig(n_mels=bands, max_epochs=args.epochs)
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            c0 = time.process_time()
            model, _ = train_scratch(data, time.monotonic() + 1e9, cfg, seed)
            runs.append({s: crop_logits(model, xs) for s, xs in x.items()})
            v, t = scores(runs[-1])
            print(
                f"| {bands} bands, seed {seed} | {time.process_time() - c0:.0f} | {v:.3f} | {t:.3f} |"
            )
        v, t = scores({s: torch.stack([r[s] for r in runs]).mean(0) for s in x})
        print(f"| {bands} bands, {len(runs)} averaged | | {v:.3f} | {t:.3f} |", flush=True)


if __name__ == "__main__":
    main()
