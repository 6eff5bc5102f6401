"""MagnaTagATune top-50 with the short-chunk CNN + Res (``ShortChunkResNetTagger``).

    python recipes/mtt_short_res.py                                # fit, then test the best checkpoint
    python recipes/mtt_short_res.py --trainer.devices 2            # the same with DDP on 2 GPUs
    python recipes/mtt_short_res.py fit --data.root shards/mtt --data.batch_size 32
    python recipes/mtt_short_res.py --help                         # every option

Defaults: ``configs/mtt_short_res.yaml``; see ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from musictag.lightning_cli import TagCLI
from musictag.lightning_cli import main as run

CONFIG = Path(__file__).resolve().parent / "configs" / "mtt_short_res.yaml"


def main(args: Sequence[str] | None = None) -> TagCLI:
    """Run the recipe with command-line ``args`` (default ``sys.argv[1:]``)."""
    return run(CONFIG, args)


if __name__ == "__main__":
    main()
