"""The issue's embedding baseline: ``musictag embed`` vectors + scikit-learn logistic regression.

Reads the ``embeddings.npy`` and ``index.json`` that ``musictag embed CKPT SHARDS -o OUT`` writes
for a development set (every split), standardises the vectors with the training split's
statistics, fits one scikit-learn logistic regression per tag for each regularisation strength
``C`` of a small grid, keeps the ``C`` of the best validation macro PR-AUC and prints validation
and test macro PR-AUC over the instrument tags (``fast``/``slow`` are not scored), as
``benchmarks/train_ablation.py`` scores.

    python -m musictag embed mtat_musicnn.ckpt dev/shards -o emb-musicnn
    python benchmarks/embedding_probe.py emb-musicnn
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _devset import TEMPO
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from musictag.training.probe import macro_pr_auc


def _split(track: dict) -> str:
    if "split" in track:
        return str(track["split"])
    return str(track.get("key", track.get("id", ""))).split("/")[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("embeddings", type=Path, help="output folder of musictag embed")
    p.add_argument("--C", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0])
    args = p.parse_args()
    x = np.load(args.embeddings / "embeddings.npy")
    index = json.loads((args.embeddings / "index.json").read_text())
    tracks = index["tracks"] if isinstance(index, dict) else index
    splits = np.array([_split(t) for t in tracks])
    tags = sorted({t for tr in tracks for t in tr["tags"] if t not in TEMPO})
    y = np.array([[t in tr["tags"] for t in tags] for tr in tracks], dtype=np.float32)
    part = {s: splits == s for s in ("train", "val", "test")}
    if not all(m.any() for m in part.values()):
        raise SystemExit(f"need train, val and test tracks; found splits {sorted(set(splits))}")
    scaler = StandardScaler().fit(x[part["train"]])
    xs = {s: scaler.transform(x[m]) for s, m in part.items()}
    best = None
    for c in args.C:
        clf = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000))
        clf.fit(xs["train"], y[part["train"]])
        val = macro_pr_auc(clf.predict_proba(xs["val"]), y[part["val"]])
        print(f"C {c:g}: val {val:.3f}", flush=True)
        if best is None or val > best[0]:
            best = (val, c, clf)
    assert best is not None
    val, c, clf = best
    test = macro_pr_auc(clf.predict_proba(xs["test"]), y[part["test"]])
    print(f"| {args.embeddings.name} + logistic regression (C {c:g}) | {val:.3f} | {test:.3f} |")


if __name__ == "__main__":
    main()
