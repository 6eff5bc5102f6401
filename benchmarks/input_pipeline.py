"""Clips per second delivered to the training loop: musictag shards against the usual ways.

All pipelines read the same audio (a synthetic collection of 30-s, 44.1-kHz stereo MP3 files, see
``_common.py``) and deliver batches of 32 random 3.69-s crops (59049 samples at 16 kHz) with their
multi-hot targets, in this process, with ``num_workers`` 0 and 2:

(a) ``mp3+librosa``: a map-style torch Dataset over the MP3 files that decodes and resamples each
    whole file (``librosa.load(sr=16000)``, soxr), computes its log-mel spectrogram with librosa
    and crops it: the on-the-fly way of the FMA GRU/Transformer tutorials. It delivers log-mels.
(b) ``npy``: a map-style Dataset over per-track float32 ``.npy`` waveforms at 16 kHz (resampled
    beforehand, "because downsampling is time-consuming"), ``np.load(mmap_mode="r")`` and a random
    crop: the published PyTorch taggers' way (Won et al. 2020). It delivers waveforms.
(c) ``musictag``: ``TagDataModule.train_dataloader()`` over shards written by ``write_shards``,
    with FLAC (default) and with ``audio_format="pcm16"``. It delivers waveforms; the log-mel is
    computed inside the model (``LogMelFrontend``), so the "with log-mel" columns also run the
    frontend on every batch in the loop, which makes them comparable with (a).

Every loader uses ``persistent_workers`` when it has workers and the same ``np.stack`` collate
(:func:`numpy_collate`); (a) is timed on ``--baseline-a-files`` files. The figures are steady-state
(a warm-up epoch first, then whole epochs, so shard opening and the shuffle-buffer fill at each
epoch start are counted). Bytes on disk are what each pipeline needs besides the source MP3s
(baseline (a) needs only them).

    python benchmarks/input_pipeline.py     # 128 files: ~3 min (+ ~5 min once, writing the corpus)
    python benchmarks/input_pipeline.py --n-files 32 --epochs 2 --workers 0
    python benchmarks/input_pipeline.py --checksum-cost   # (c) with and without checksum checks
    python benchmarks/input_pipeline.py --tar-headers     # the reader's tar headers vs tarfile

``--checksum-cost`` times only (c), unchecked and with checksum records of several kinds
(whole-member CRC-32 as before version 2, 64-KiB CRC-32 blocks, 16- and 64-KiB xxh3 blocks),
interleaved: the first pass of fresh loaders (every block a crop reads is checked) and the
steady state after it (a stream checks each block once). Then it times the default records
against none once more in the main process, paired: both loaders in lockstep, batch by batch,
which holds its ratio to a few per cent on a busy machine where the best-of-rounds figures
swing by 20 %.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

try:
    from benchmarks import _common as common
except ImportError:  # run as a file: python benchmarks/input_pipeline.py
    import _common as common

from musictag.audio import load_audio
from musictag.data.datamodule import TagDataModule
from musictag.data.shards import (
    CHECKSUMS_EXT,
    AudioItem,
    checksum_record,
    load_manifest,
    member_checksum,
    write_shards,
)
from musictag.data.shards.checksums import BLOCK_HASH, CHECKSUM_BLOCK, _parse_record
from musictag.data.shards.reader import _tar_members
from musictag.data.vocab import TagVocab
from musictag.frontend import LogMelFrontend

SR = 16000
CROP = 59049  # 3.69 s at 16 kHz
BATCH = 32
N_FFT, HOP, N_MELS = 512, 256, 96
BASELINE_A, BASELINE_B = "(a) mp3+librosa", "(b) npy"


class Mp3MelDataset(Dataset):
    """Baseline (a): decode + resample the whole MP3, librosa log-mel, random crop of frames.

    Returns ``{"mel": [n_mels, frames], "target": [n_tags]}`` per item.
    """

    def __init__(self, items: Sequence[AudioItem], vocab: TagVocab, crop_samples: int = CROP):
        self.paths = [str(i.path) for i in items]
        self.targets = [vocab.encode(i.tags) for i in items]
        self.frames = 1 + crop_samples // HOP

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        y, _ = librosa.load(self.paths[i], sr=SR)  # decode, downmix, resample (soxr_hq)
        mel = librosa.feature.melspectrogram(
            y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, fmax=SR / 2
        )
        mel = librosa.power_to_db(mel, ref=1.0)
        start = np.random.randint(0, max(1, mel.shape[1] - self.frames + 1))
        crop = np.ascontiguousarray(mel[:, start : start + self.frames], dtype=np.float32)
        return {"mel": torch.from_numpy(crop), "target": torch.from_numpy(self.targets[i])}


class NpyCropDataset(Dataset):
    """Baseline (b): a random crop of an mmap'd float32 ``.npy`` waveform (Won et al. 2020).

    Returns ``{"audio": [crop_samples], "target": [n_tags]}`` per item.
    """

    def __init__(self, paths: Sequence[Path], targets: Sequence[np.ndarray], crop_samples: int):
        self.paths = [str(p) for p in paths]
        self.targets = list(targets)
        self.crop = crop_samples

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = np.load(self.paths[i], mmap_mode="r")
        start = np.random.randint(0, max(1, len(x) - self.crop + 1))
        crop = np.array(x[start : start + self.crop])
        return {"audio": torch.from_numpy(crop), "target": torch.from_numpy(self.targets[i])}


def numpy_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``default_collate`` without ``torch.stack``, whose thread pool makes it 10-100x slower in
    the main process of a busy machine; the baselines get it too, so that reading is compared."""
    return {k: torch.from_numpy(np.stack([it[k].numpy() for it in items])) for k in items[0]}


def prepare(work: Path, n_files: int, seconds: float) -> dict[str, Any]:
    """The MP3 corpus, its FLAC and PCM shards and its .npy waveforms (all cached in ``work``)."""
    root = work / f"corpus-{n_files}x{seconds:g}"
    items = common.make_corpus(root, n_files, seconds)
    out: dict[str, Any] = {"items": items, "root": root, "write_s": {}}
    for fmt in ("flac", "pcm16"):
        shards = root / f"shards-{fmt}"
        if not (shards / "manifest.json").is_file() or (
            load_manifest(shards).get("checksums", {}).get("member") != BLOCK_HASH
        ):  # none yet, or written by an older musictag
            shutil.rmtree(shards, ignore_errors=True)
            start = time.perf_counter()
            write_shards(
                {"train": items},
                shards,
                sample_rate=SR,
                max_samples_per_shard=16,
                workers=2,
                progress=False,
                audio_format=fmt,
            )
            print(f"wrote {fmt} shards in {time.perf_counter() - start:.1f} s (2 workers)")
        out[fmt] = shards
    npy = root / "npy"
    if not npy.is_dir() or len(list(npy.glob("*.npy"))) < n_files:
        tmp = root / "npy.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for item in items:
            np.save(tmp / f"{Path(item.path).stem}.npy", load_audio(item.path, SR))
        shutil.rmtree(npy, ignore_errors=True)
        tmp.rename(npy)
    out["npy"] = npy
    return out


def steady_rate(loader: DataLoader, epochs: int, warmup: bool = True) -> float:
    """Clips per second over ``epochs`` whole passes (after a warm-up pass when ``warmup``)."""
    if warmup:
        for _ in loader:
            pass
    n = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += len(batch["target"])
    return n / (time.perf_counter() - start)


def with_frontend(loader: Iterable, frontend: torch.nn.Module) -> Iterable:
    """The loader's batches, each passed through the log-mel frontend (as the model does)."""

    class _Wrapped:
        def __iter__(self):
            for batch in loader:
                with torch.inference_mode():
                    frontend(batch["audio"])
                yield batch

    return _Wrapped()


def build_loaders(
    data: dict[str, Any], workers: int, n_baseline_a: int
) -> dict[str, Callable[[], DataLoader]]:
    """Factories of every pipeline's loader for ``workers`` workers."""
    dm_kwargs = {"crop_samples": CROP, "batch_size": BATCH, "num_workers": workers}
    dm_kwargs["persistent_workers"] = workers > 0
    vocab = TagDataModule(root=str(data["flac"]), **dm_kwargs).vocab
    items = data["items"]
    targets = [vocab.encode(i.tags) for i in items]
    npy_paths = [data["npy"] / f"{Path(i.path).stem}.npy" for i in items]
    loader_kwargs = {
        "batch_size": BATCH,
        "shuffle": True,
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "collate_fn": numpy_collate,
    }
    return {
        BASELINE_A: lambda: DataLoader(Mp3MelDataset(items[:n_baseline_a], vocab), **loader_kwargs),
        BASELINE_B: lambda: DataLoader(NpyCropDataset(npy_paths, targets, CROP), **loader_kwargs),
        "musictag flac": lambda: TagDataModule(
            root=str(data["flac"]), tags=vocab.tags, **dm_kwargs
        ).train_dataloader(),
        "musictag pcm16": lambda: TagDataModule(
            root=str(data["pcm16"]), tags=vocab.tags, **dm_kwargs
        ).train_dataloader(),
    }


def close(loader: object) -> None:
    """Stop a DataLoader's persistent workers now (not in a later fork's garbage collection)."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    if isinstance(loader, DataLoader):
        loader._iterator = None
    gc.collect()


def measure(
    loaders: dict[str, DataLoader], epochs: int, repeats: int, frontend: torch.nn.Module
) -> tuple[dict[str, float], dict[str, float]]:
    """Best clips/s of each loader, alone and with the log-mel frontend, over interleaved rounds."""
    rates = dict.fromkeys(loaders, 0.0)
    with_mel = dict.fromkeys(loaders, 0.0)
    for r in range(repeats):
        for name, loader in loaders.items():
            if name == BASELINE_A:  # slow: one pass over its files per round, log-mels already
                rate = mel_rate = steady_rate(loader, 1, warmup=False)
            else:
                rate = steady_rate(loader, epochs, warmup=r == 0)
                mel_rate = steady_rate(with_frontend(loader, frontend), 1, warmup=False)
            rates[name] = max(rates[name], rate)
            with_mel[name] = max(with_mel[name], mel_rate)
            print(
                f"  round {r}: {name}: {rate:.0f} clips/s, {mel_rate:.0f} with log-mel",
                file=sys.stderr,
            )
    return rates, with_mel


# checksum records compared by --checksum-cost: (name, block size, hash); block size 0 is the
# version-1 record (one CRC-32 per whole member), None no check at all
RECORD_VARIANTS = [
    ("unchecked", None, None),
    ("whole CRC-32 (v1)", 0, "crc32"),
    ("64 KiB CRC-32", 1 << 16, "crc32"),
    ("16 KiB xxh3", 1 << 14, "xxh3_64"),
    (f"{CHECKSUM_BLOCK >> 10} KiB xxh3 (default)", CHECKSUM_BLOCK, BLOCK_HASH),
]


def with_records(src: Path, dst: Path, block_size: int, hash_name: str) -> Path:
    """A copy of the shard set ``src`` whose checksum records use other settings (cached)."""
    if (dst / "manifest.json").is_file():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for tar_path in sorted(src.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        data = {m.name: b for m, b in members}
        with tarfile.open(tmp / tar_path.name, "w", format=tarfile.PAX_FORMAT) as out:
            for m, b in members:
                if m.name.endswith("." + CHECKSUMS_EXT):
                    key = m.name[: -len(CHECKSUMS_EXT) - 1]
                    parts = {
                        n.split(".", 1)[1]: data[n]
                        for n in data
                        if n.startswith(key + ".") and n != m.name
                    }
                    if block_size == 0:
                        sums = {ext: member_checksum(v) for ext, v in parts.items()}
                        b = json.dumps({"crc32": sums}).encode("ascii")
                    else:
                        b = checksum_record(parts, block_size, hash_name)
                    m.size = len(b)
                out.addfile(m, io.BytesIO(b))
    shutil.copy(src / "manifest.json", tmp / "manifest.json")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def checksum_cost(data: dict[str, Any], workers: int, epochs: int, repeats: int) -> list[list]:
    """Rows ``[format, workers, record, first pass clips/s, ratio, steady clips/s, ratio]``.

    Every variant of a format runs in each round, one after the other, so that the machine's
    load falls on all of them alike; the best round of each is kept.
    """
    kwargs = {"crop_samples": CROP, "batch_size": BATCH, "num_workers": workers}
    kwargs["persistent_workers"] = workers > 0
    rows = []
    for fmt in ("flac", "pcm16"):
        roots = {
            name: data[fmt]
            if block in (None, CHECKSUM_BLOCK) and hash_name in (None, BLOCK_HASH)
            else with_records(
                data[fmt], data[fmt].with_name(f"{data[fmt].name}-{i}"), block, hash_name
            )
            for i, (name, block, hash_name) in enumerate(RECORD_VARIANTS)
        }
        first = dict.fromkeys(roots, 0.0)
        steady = dict.fromkeys(roots, 0.0)
        for r in range(repeats):
            for name, block, _ in RECORD_VARIANTS:
                _parse_record.cache_clear()  # parsed records: as in a fresh process
                loader = TagDataModule(
                    root=str(roots[name]), verify_checksums=block is not None, **kwargs
                ).train_dataloader()
                first[name] = max(first[name], steady_rate(loader, 1, warmup=False))
                steady[name] = max(steady[name], steady_rate(loader, epochs, warmup=False))
                close(loader)
                print(
                    f"  round {r}: {fmt} {name}: first pass {first[name]:.0f}, "
                    f"steady {steady[name]:.0f} clips/s",
                    file=sys.stderr,
                )
        base = RECORD_VARIANTS[0][0]
        for name, _, _ in RECORD_VARIANTS[1:]:
            rows.append(
                [
                    f"musictag {fmt}",
                    workers,
                    name,
                    first[name],
                    first[name] / first[base],
                    steady[name],
                    steady[name] / steady[base],
                ]
            )
        rows.append([f"musictag {fmt}", workers, base, first[base], 1.0, steady[base], 1.0])
    return rows


def checksum_cost_paired(data: dict[str, Any], workers: int, repeats: int) -> list[list]:
    """Rows ``[format, workers, first pass ratio, epochs 2-4 ratio]`` of the default records.

    An unchecked and a checked loader are iterated in lockstep, a batch of one then a batch of
    the other (the order alternating), and each one's time to deliver its batches is summed
    over ``repeats`` fresh pairs: load that comes and goes falls on both alike, which the
    best-of-rounds figures of :func:`checksum_cost` cannot promise on a shared machine. Valid
    for ``workers=0`` only: with workers, the two loaders' workers would run at once.
    """
    kwargs = {"crop_samples": CROP, "batch_size": BATCH, "num_workers": workers}
    kwargs["persistent_workers"] = workers > 0
    rows = []
    for fmt in ("flac", "pcm16"):
        spent = {"first": [0.0, 0.0], "steady": [0.0, 0.0]}  # [unchecked, checked] seconds
        for r in range(repeats):
            _parse_record.cache_clear()
            loaders = [
                TagDataModule(root=str(data[fmt]), verify_checksums=v, **kwargs).train_dataloader()
                for v in (False, True)
            ]
            for epoch in range(4):
                phase = spent["first" if epoch == 0 else "steady"]
                batches = [iter(loader) for loader in loaders]
                running = [0, 1] if (r + epoch) % 2 == 0 else [1, 0]
                while running:
                    for j in list(running):
                        start = time.perf_counter()
                        if next(batches[j], None) is None:
                            running.remove(j)
                        phase[j] += time.perf_counter() - start
            for loader in loaders:
                close(loader)
        first, steady = spent["first"], spent["steady"]
        rows.append([f"musictag {fmt}", workers, first[0] / first[1], steady[0] / steady[1]])
    return rows


def tar_header_cost(shards: Path, repeats: int) -> list[list]:
    """Rows ``[parser, µs per member]``: the reader's header parser against ``tarfile``.

    Both list every member's name, data offset and size, over the same shards, interleaved in
    this process; the best of ``repeats`` rounds is kept.
    """
    urls = sorted(shards.glob("*.tar"))

    def ours() -> int:
        n = 0
        for url in urls:
            with open(url, "rb") as fh:
                n += sum(1 for _ in _tar_members(fh, str(url)))
        return n

    def with_tarfile() -> int:
        n = 0
        for url in urls:
            with tarfile.open(url) as tar:
                n += sum(1 for m in tar if m.isreg() and (m.name, m.offset_data, m.size))
        return n

    best = {"musictag reader": float("inf"), "tarfile": float("inf")}
    for _ in range(repeats):
        for name, run in (("musictag reader", ours), ("tarfile", with_tarfile)):
            start = time.perf_counter()
            n = run()
            best[name] = min(best[name], (time.perf_counter() - start) / n * 1e6)
    return [[name, us] for name, us in best.items()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-files", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per round")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (best kept)")
    parser.add_argument("--baseline-a-files", type=int, default=64, help="files (a) decodes")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--work", type=Path, default=common.DEFAULT_WORK)
    parser.add_argument(
        "--checksum-cost", action="store_true", help="only (c), checksum checks on and off"
    )
    parser.add_argument(
        "--tar-headers", action="store_true", help="only the tar header parser against tarfile"
    )
    args = parser.parse_args(argv)

    data = prepare(args.work, args.n_files, args.seconds)
    if args.tar_headers:
        print(common.machine())
        rows = tar_header_cost(data["pcm16"], 10 * args.repeats)
        print(common.table(["tar headers", "µs per member"], rows))
        print(f"load average after: {common.load()}")
        return
    if args.checksum_cost:
        print(common.machine())
        rows = [r for w in args.workers for r in checksum_cost(data, w, args.epochs, args.repeats)]
        headers = ["pipeline", "workers", "checksums", "1st pass clips/s", "vs unchecked"]
        headers += ["steady clips/s", "vs unchecked"]
        print(common.table(headers, rows))
        print(f"load average after: {common.load()}")
        # in the main process only: with workers, both loaders' workers would share the cores
        rows = checksum_cost_paired(data, 0, 4 * args.repeats) if 0 in args.workers else []
        headers = [
            "pipeline",
            "workers",
            "paired: 1st pass vs unchecked",
            "epochs 2-4 vs unchecked",
        ]
        print(common.table(headers, rows))
        print(f"load average after: {common.load()}")
        return
    root = data["root"]
    sizes = {
        BASELINE_A: common.folder_bytes(root / "mp3", (".mp3",)),
        BASELINE_B: common.folder_bytes(data["npy"]),
        "musictag flac": common.folder_bytes(data["flac"], (".tar",)),
        "musictag pcm16": common.folder_bytes(data["pcm16"], (".tar",)),
    }
    frontend = LogMelFrontend(sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS).eval()
    print(common.machine())
    print(
        f"{args.n_files} tracks of {args.seconds:g} s; batches of {BATCH} crops of {CROP} samples"
    )
    rows = []
    for workers in args.workers:
        loaders = {
            name: make()
            for name, make in build_loaders(data, workers, args.baseline_a_files).items()
        }
        loaders[BASELINE_A].dataset[0]  # load the codecs and librosa's caches
        rates, with_mel = measure(loaders, args.epochs, args.repeats, frontend)
        for loader in loaders.values():
            close(loader)
        for name in loaders:
            rows.append(
                [
                    name,
                    workers,
                    rates[name],
                    rates[name] / rates[BASELINE_A],
                    rates[name] / rates[BASELINE_B],
                    with_mel[name],
                    with_mel[name] / with_mel[BASELINE_A],
                    common.mib(sizes[name]),
                ]
            )
    print(
        common.table(
            [
                "pipeline",
                "workers",
                "clips/s",
                "vs (a)",
                "vs (b)",
                "clips/s with log-mel",
                "with log-mel vs (a)",
                "on disk",
            ],
            rows,
        )
    )
    print(f"load average after: {common.load()}")


if __name__ == "__main__":
    main()
