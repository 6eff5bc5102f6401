"""GTZAN genre classification (10 genres, single-label) with ``CRNNTagger``.

    python recipes/gtzan_crnn.py                                # fit, then test the best checkpoint
    python recipes/gtzan_crnn.py --trainer.devices 2            # the same with DDP on 2 GPUs
    python recipes/gtzan_crnn.py fit --data.root shards/gtzan --data.batch_size 32
    python recipes/gtzan_crnn.py --help                         # every option

Defaults: ``configs/gtzan_crnn.yaml``; see ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from musictag.lightning_cli import TagCLI
from musictag.lightning_cli import main as run

CONFIG = Path(__file__).resolve().parent / "configs" / "gtzan_crnn.yaml"


def main(args: Sequence[str] | None = None) -> TagCLI:
    """Run the recipe with command-line ``args`` (default ``sys.argv[1:]``)."""
    return run(CONFIG, args)


if __name__ == "__main__":
    main()
