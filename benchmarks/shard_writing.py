"""Files per second turned into shards by ``write_shards``, with 1 and 2 workers, FLAC and PCM.

Writes the first ``--n-files`` MP3 files of the benchmark corpus (30 s, 44.1 kHz stereo, see
``_common.py``) into fresh shard folders at 16 kHz: every file is decoded, downmixed, resampled
(soxr HQ) and encoded once. The runs alternate (flac/pcm16 x 1/2 workers, ``--repeats`` rounds,
best kept), in this process. ``benchmarks/prepare_throughput.py`` measures the same for
``musictag prepare folder`` on mixed formats, including the folder scan.

    python benchmarks/shard_writing.py --n-files 48
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

try:
    from benchmarks import _common as common
except ImportError:  # run as a file: python benchmarks/shard_writing.py
    import _common as common

from musictag.data.shards import write_shards


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-files", type=int, default=48)
    parser.add_argument("--corpus-files", type=int, default=128, help="corpus to take them from")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=common.DEFAULT_WORK)
    args = parser.parse_args(argv)

    items = common.make_corpus(
        args.work / f"corpus-{args.corpus_files}x30", args.corpus_files, 30.0
    )[: args.n_files]
    print(common.machine())
    print(f"{len(items)} MP3 files of 30 s, 44.1 kHz stereo -> 16 kHz mono shards of 8 tracks")
    best: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(items[:2], Path(tmp) / "warm", progress=False)  # load the codecs
        for _ in range(args.repeats):
            for fmt in ("flac", "pcm16"):
                for workers in args.workers:
                    out = Path(tmp) / f"{fmt}-{workers}"
                    shutil.rmtree(out, ignore_errors=True)
                    start = time.perf_counter()
                    report = write_shards(
                        {"train": items},
                        out,
                        max_samples_per_shard=8,
                        workers=workers,
                        progress=False,
                        audio_format=fmt,
                    )
                    rate = report.n_written / (time.perf_counter() - start)
                    best[fmt, workers] = max(best.get((fmt, workers), 0.0), rate)
    one = min(args.workers)
    rows = [
        [fmt, workers, rate, rate / best[fmt, one], rate * 30.0]
        for (fmt, workers), rate in best.items()
    ]
    print(
        common.table(
            ["audio_format", "workers", "files/s", f"vs {one} worker", "audio s per s"], rows
        )
    )
    print(f"load average after: {common.load()}")


if __name__ == "__main__":
    main()
