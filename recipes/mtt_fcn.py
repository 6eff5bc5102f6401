"""MagnaTagATune top-50 with the FCN of Choi et al. 2016 (``FCNTagger``).

    python recipes/mtt_fcn.py                                # fit, then test the best checkpoint
    python recipes/mtt_fcn.py --trainer.devices 2            # the same with DDP on 2 GPUs
    python recipes/mtt_fcn.py fit --data.root shards/mtt --data.batch_size 32
    python recipes/mtt_fcn.py --help                         # every option

Defaults: ``configs/mtt_fcn.yaml``; see ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from musictag.lightning_cli import TagCLI
from musictag.lightning_cli import main as run

CONFIG = Path(__file__).resolve().parent / "configs" / "mtt_fcn.yaml"


def main(args: Sequence[str] | None = None) -> TagCLI:
    """Run the recipe with command-line ``args`` (default ``sys.argv[1:]``)."""
    return run(CONFIG, args)


if __name__ == "__main__":
    main()
