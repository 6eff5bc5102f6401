"""Are the synthetic collection's tags learnable from a log-mel spectrogram?

Generates a synthetic collection, computes log-mel spectrograms (16 kHz, n_fft 512, hop 256,
96 mel bands), then fits

1. a logistic regression on summary statistics (mean/std per band + onset-rate features), and
2. a CRNN on random crops for a fixed time budget on CPU: either ``musictag.models.crnn.CRNN``
   with the settings of ``musictag demo`` (``--model crnn``, default) or a tiny 3-block CRNN with
   mean/max pooling over time (``--model tiny``),

and prints per-tag average precision on the test split (the CRNN averages the scores of evenly
spaced crops per clip, as the tagger does).

    python benchmarks/synth_learnability.py --n-clips 400 --seconds 180 --threads 2
    python benchmarks/synth_learnability.py --model tiny --n-mels 96 --crop 2.5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from musictag.data.sources.synth import SPLITS, TAGS, generate_collection

SR, N_FFT, HOP = 16000, 512, 256


def read_labels(labels: Path) -> tuple[list[Path], list[str], np.ndarray]:
    import csv

    paths, splits, y = [], [], []
    with open(labels, newline="") as f:
        for row in csv.DictReader(f):
            paths.append(labels.parent / row["path"])
            splits.append(row["split"])
            tags = set(row["tags"].split(";"))
            y.append([t in tags for t in TAGS])
    return paths, splits, np.array(y, dtype=np.float32)


def logmel(path: Path, n_mels: int, htk: bool) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32")
    assert sr == SR
    m = librosa.feature.melspectrogram(
        y=x,
        sr=SR,
        n_fft=N_FFT,
        hop_length=HOP,
        n_mels=n_mels,
        htk=htk,
        norm=None if htk else "slaney",
    )
    return librosa.power_to_db(m, ref=1.0, amin=1e-10, top_db=None).astype(np.float32)


def summary_features(mel: np.ndarray) -> np.ndarray:
    onset = np.maximum(np.diff(mel, axis=1), 0).mean(axis=0)
    tempogram = librosa.autocorrelate(onset - onset.mean())[:128]
    tempogram = tempogram / max(tempogram[0], 1e-9)
    return np.concatenate([mel.mean(1), mel.std(1), tempogram])


class TinyCRNN(nn.Module):
    def __init__(self, n_tags: int, n_mels: int, ch: int = 16, hidden: int = 64):
        super().__init__()
        self.norm = nn.BatchNorm2d(1)

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)
            )

        self.convs = nn.Sequential(block(1, ch), block(ch, 2 * ch), block(2 * ch, 4 * ch))
        self.gru = nn.GRU(4 * ch * (n_mels // 8), hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(4 * hidden, n_tags))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # [batch, freq, time]
        h = self.convs(self.norm(mel.unsqueeze(1)))  # [b, c, f, t]
        h = h.flatten(1, 2).transpose(1, 2)  # [b, t, c*f]
        h, _ = self.gru(h)
        return self.head(torch.cat([h.mean(1), h.amax(1)], dim=1))


class ProjectCRNN(nn.Module):
    """The CRNN of ``musictag demo``: BatchNorm on dB mel, 4 conv blocks, 2-layer GRU, last step."""

    def __init__(self, n_tags: int, n_mels: int):
        super().__init__()
        from musictag.models.crnn import CRNN

        self.norm = nn.BatchNorm2d(1)
        self.backbone = CRNN(
            n_mels=n_mels, channels=(32, 64, 64, 64), pools=((2, 2), (2, 2), (2, 2), (4, 2))
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.backbone.embed_dim, n_tags))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # [batch, freq, time]
        return self.head(self.backbone(self.norm(mel.unsqueeze(1))))


def crops(mel: np.ndarray, length: int, k: int) -> np.ndarray:
    starts = np.linspace(0, mel.shape[1] - length, k).astype(int)
    return np.stack([mel[:, s : s + length] for s in starts])


def report(name: str, y: np.ndarray, scores: np.ndarray) -> float:
    aps = [average_precision_score(y[:, j], scores[:, j]) for j in range(len(TAGS))]
    print(f"\n{name}: macro AP {np.mean(aps):.3f}")
    for t, ap in zip(TAGS, aps):
        print(f"  {t:10s} {ap:.3f}")
    return float(np.mean(aps))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-clips", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=90.0, help="CRNN training budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--crop", type=float, default=2.0, help="crop length in seconds")
    p.add_argument("--model", choices=("crnn", "tiny"), default="crnn")
    p.add_argument("--n-mels", type=int, default=64)
    p.add_argument("--slaney", action="store_true", help="librosa's Slaney mel instead of HTK")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=50, help="steps between validation prints")
    p.add_argument("--out", type=Path, default=None, help="collection dir (default: temp dir)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        labels = generate_collection(
            out, n_clips=args.n_clips, seed=args.seed, workers=args.threads
        )
        print(f"generated {args.n_clips} clips in {time.perf_counter() - t0:.1f} s")
        paths, splits, y = read_labels(labels)
        mels = [logmel(q, args.n_mels, not args.slaney) for q in paths]
    splits_arr = np.array(splits)
    idx = {s: np.flatnonzero(splits_arr == s) for s in SPLITS}
    print("clips per split:", {s: len(v) for s, v in idx.items()})
    print("tag frequency:", {t: round(float(f), 2) for t, f in zip(TAGS, y.mean(0))})

    # 1. Linear model on summary statistics.
    feats = np.stack([summary_features(m) for m in mels])
    scaler = StandardScaler().fit(feats[idx["train"]])
    scores = np.zeros((len(idx["test"]), len(TAGS)))
    for j in range(len(TAGS)):
        clf = LogisticRegression(C=0.1, max_iter=2000)
        clf.fit(scaler.transform(feats[idx["train"]]), y[idx["train"], j])
        scores[:, j] = clf.predict_proba(scaler.transform(feats[idx["test"]]))[:, 1]
    report("logistic regression on summary stats", y[idx["test"]], scores)

    # 2. Tiny CRNN on random crops.
    length = int(args.crop * SR / HOP)
    mel_arr = np.stack(mels)  # [n, freq, time]
    if args.model == "crnn":
        model: nn.Module = ProjectCRNN(len(TAGS), args.n_mels)
    else:
        model = TinyCRNN(len(TAGS), args.n_mels)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    train = idx["train"]

    def evaluate(items: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            x = np.concatenate([crops(mel_arr[i], length, 4) for i in items])
            p = torch.sigmoid(model(torch.from_numpy(x))).numpy()
        model.train()
        return p.reshape(len(items), 4, -1).mean(1)

    t0 = time.perf_counter()
    step = 0
    while time.perf_counter() - t0 < args.seconds:
        model.train()
        batch = rng.choice(train, size=args.batch_size, replace=False)
        starts = rng.integers(0, mel_arr.shape[2] - length + 1, size=len(batch))
        x = np.stack([mel_arr[i, :, s : s + length] for i, s in zip(batch, starts)])
        logits = model(torch.from_numpy(x))
        loss = loss_fn(logits, torch.from_numpy(y[batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % args.eval_every == 0:
            aps = [
                average_precision_score(y[idx["val"], j], s)
                for j, s in enumerate(evaluate(idx["val"]).T)
            ]
            groups = {"instr": aps[:5], "tempo": aps[5:8], "mode": aps[8:10], "fx": aps[10:]}
            print(
                f"step {step} ({time.perf_counter() - t0:.0f} s) loss {loss.item():.3f} "
                f"val macro AP {np.mean(aps):.3f} "
                + " ".join(f"{k} {np.mean(v):.2f}" for k, v in groups.items())
            )
    print(f"trained {step} steps in {time.perf_counter() - t0:.0f} s")
    for split in ("val", "test"):
        report(
            f"{args.model}, {split} split (4 crops averaged)", y[idx[split]], evaluate(idx[split])
        )


if __name__ == "__main__":
    main()
