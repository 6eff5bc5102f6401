"""MagnaTagATune top-50 with SampleCNN-SE (``SampleCNNTagger``, Won et al.'s ``samplecnn_se``)
and the staged learning-rate decay of Lee et al. (2017).

    python recipes/mtt_samplecnn.py                                # fit, then test the best checkpoint
    python recipes/mtt_samplecnn.py --trainer.devices 2            # the same with DDP on 2 GPUs
    python recipes/mtt_samplecnn.py fit --data.root shards/mtt --data.batch_size 32
    python recipes/mtt_samplecnn.py --help                         # every option

Defaults: ``configs/mtt_samplecnn.yaml``; see ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from musictag.lightning_cli import TagCLI
from musictag.lightning_cli import main as run

CONFIG = Path(__file__).resolve().parent / "configs" / "mtt_samplecnn.yaml"


def main(args: Sequence[str] | None = None) -> TagCLI:
    """Run the recipe with command-line ``args`` (default ``sys.argv[1:]``)."""
    return run(CONFIG, args)


if __name__ == "__main__":
    main()
