"""Ablations of ``musictag train --pretrained``: which backbones, which probe.

Computes (or reads from the cache of ``musictag train``) the multi-layer features of each
pretrained checkpoint for the train, val and test splits, then fits the probe of
:mod:`musictag.training.probe` on each backbone alone and on all of them, and prints validation
and test macro PR-AUC over the instrument tags (the tempo tags ``fast``/``slow`` are trained but
not scored). The test figure of the probe on all backbones is what ``musictag evaluate`` reports
for the checkpoint ``musictag train`` writes (crops as long as the clips, one per clip).

    python benchmarks/transfer_ablation.py SHARDS --pretrained fcn.ckpt crnn.ckpt musicnn.ckpt

``--ensemble-epochs N`` also trains ``musictag train``'s compact CNN for ``N`` epochs on the
transfer model's frontend and blends its logits with the probe on all backbones at the weight
chosen on validation, as ``train`` does when the budget leaves time after the probe.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _devset import load_dev_set

from musictag.pretrained import file_sha256
from musictag.training.data import manifest_hash
from musictag.training.probe import fit_probe, macro_pr_auc, select_probe
from musictag.training.transfer import build_transfer_tagger, cached_features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("shards")
    p.add_argument("--pretrained", nargs="+", required=True)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--pool", default="meanmax")
    p.add_argument("--mlp", action="store_true", help="also a 256-unit MLP probe (slow)")
    p.add_argument("--ensemble-epochs", type=int, default=0, help="compact CNN epochs (0: none)")
    p.add_argument("--ensemble-members", type=int, default=1, help="compact CNNs (seeds)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dev = load_dev_set(args.shards)
    tags, keep, splits, crop, k = dev.tags, dev.keep, dev.splits, dev.crop, dev.crops
    tagger = build_transfer_tagger(args.pretrained, tags, crop, k, pool=args.pool)
    mh = manifest_hash(args.shards)
    feats: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    for i, ckpt in enumerate(args.pretrained):
        key = {"checkpoint": file_sha256(ckpt), "manifest": mh, "crop": crop, "crops": k}
        key["pool"] = args.pool
        for s, tracks in splits.items():
            t = time.monotonic()
            feats[s].append(cached_features(tagger, i, tracks, {**key, "split": s}, args.cache_dir))
            print(f"{Path(ckpt).stem} {s}: {feats[s][-1].shape} in {time.monotonic() - t:.0f} s")
    combos = {Path(c).stem: [i] for i, c in enumerate(args.pretrained)}
    combos["all"] = list(range(len(args.pretrained)))
    print("| backbones | probe | val | test |")
    for name, idx in combos.items():
        x = {s: torch.from_numpy(np.concatenate([feats[s][i] for i in idx], 1)) for s in splits}
        mu, sd = x["train"].mean(0), x["train"].std(0).clamp_min(1e-5)
        x = {s: (v - mu) / sd for s, v in x.items()}
        y_train = torch.from_numpy(splits["train"].targets)
        for hidden in ((0,), (256,)) if args.mlp else ((0,),):
            fit = select_probe(x["train"], y_train, x["val"], splits["val"].targets, hidden=hidden)
            proj, fc = fit_probe(x["train"], y_train, fit.hidden, fit.weight_decay)
            with torch.no_grad():
                h = {s: proj(v) if proj is not None else v for s, v in x.items()}
                sc = {s: torch.sigmoid(fc(v)).numpy() for s, v in h.items()}
            v = macro_pr_auc(sc["val"][:, keep], splits["val"].targets[:, keep])
            t = macro_pr_auc(sc["test"][:, keep], splits["test"].targets[:, keep])
            kind = f"MLP {fit.hidden}" if fit.hidden else "logistic"
            print(f"| {name} | {kind}, L2 {fit.weight_decay:g} | {v:.3f} | {t:.3f} |", flush=True)
            if name == "all" and not fit.hidden and args.ensemble_epochs:
                probe_logits = {s: fc(v).detach() for s, v in h.items()}
                ensemble(
                    dev,
                    tagger,
                    probe_logits,
                    args.ensemble_epochs,
                    args.ensemble_members,
                    args.seed,
                )


def ensemble(dev, tagger, probe_logits: dict, epochs: int, members: int, seed: int) -> None:
    """``train``'s compact CNNs on the transfer frontend, alone and blended with the probe."""
    from musictag.training.scratch import (
        ScratchConfig,
        ScratchInputs,
        crop_logits,
        mel_crops,
        train_scratch,
    )

    splits, keep = dev.splits, dev.keep
    cfg = ScratchConfig(max_epochs=epochs)
    c0 = time.process_time()
    cpu = torch.device("cpu")
    x = {s: mel_crops(tagger.frontend, splits[s].waves, dev.crop, dev.crops, cpu) for s in splits}
    outs: dict[str, list[torch.Tensor]] = {"val": [], "test": []}
    for i in range(members):
        data = ScratchInputs(
            splits["train"], splits["val"], dev.tags, dev.sample_rate, dev.crop, dev.crops,
            cpu, tagger.frontend,
        )  # fmt: skip
        member, _ = train_scratch(data, time.monotonic() + 1e9, cfg, seed + i)
        for s in outs:
            outs[s].append(crop_logits(member, x[s]))
    cpu = time.process_time() - c0
    logits = {s: torch.stack(v).mean(0) for s, v in outs.items()}

    def score(s: str, alpha: float, cols=None) -> float:
        p = torch.sigmoid(alpha * probe_logits[s] + (1 - alpha) * logits[s]).numpy()
        t = splits[s].targets
        return macro_pr_auc(p[:, cols] if cols else p, t[:, cols] if cols else t)

    alphas = [float(a) for a in np.linspace(1.0, 0.0, 11)]
    best = max(alphas, key=lambda a: (round(score("val", a), 9), a))  # as `train`: all tags
    cnn = f"{members} compact CNN(s), {epochs} epochs ({cpu:.0f} s CPU)"
    print(f"| all + {cnn} | alone | {score('val', 0, keep):.3f} | {score('test', 0, keep):.3f} |")
    print(
        f"| all + {cnn} | blend, probe weight {best:.1f} | {score('val', best, keep):.3f} | "
        f"{score('test', best, keep):.3f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
