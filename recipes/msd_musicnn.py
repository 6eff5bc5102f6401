"""Million Song Dataset + Last.fm top-50 with ``MusicnnTagger``.

    python recipes/msd_musicnn.py                                # fit, then test the best checkpoint
    python recipes/msd_musicnn.py --trainer.devices 2            # the same with DDP on 2 GPUs
    python recipes/msd_musicnn.py fit --data.root shards/msd_top50 --data.batch_size 32
    python recipes/msd_musicnn.py --help                         # every option

Defaults: ``configs/msd_musicnn.yaml``; see ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from musictag.lightning_cli import TagCLI
from musictag.lightning_cli import main as run

CONFIG = Path(__file__).resolve().parent / "configs" / "msd_musicnn.yaml"


def main(args: Sequence[str] | None = None) -> TagCLI:
    """Run the recipe with command-line ``args`` (default ``sys.argv[1:]``)."""
    return run(CONFIG, args)


if __name__ == "__main__":
    main()
