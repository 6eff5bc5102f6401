"""FMA-large genre tagging (163 genres, multi-label) with ``TransformerTagger``.

    python recipes/fma_transformer.py                                # fit, then test the best checkpoint
    python recipes/fma_transformer.py --trainer.devices 2            # the same with DDP on 2 GPUs
    python recipes/fma_transformer.py fit --data.root shards/fma_large --data.batch_size 32
    python recipes/fma_transformer.py --help                         # every option

Defaults: ``configs/fma_transformer.yaml``; see ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from musictag.lightning_cli import TagCLI
from musictag.lightning_cli import main as run

CONFIG = Path(__file__).resolve().parent / "configs" / "fma_transformer.yaml"


def main(args: Sequence[str] | None = None) -> TagCLI:
    """Run the recipe with command-line ``args`` (default ``sys.argv[1:]``)."""
    return run(CONFIG, args)


if __name__ == "__main__":
    main()
