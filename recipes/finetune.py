"""Fine-tune any musictag checkpoint on another collection's tags, or train a linear probe.

    python recipes/finetune.py --model.checkpoint runs/mtt_fcn/checkpoints/last.ckpt \
        --data.root shards/gtzan --data.crop_samples 464000
    python recipes/finetune.py ... --finetuning.unfreeze_backbone_at_epoch 2   # unfreeze later
    python recipes/finetune.py ... --finetuning.unfreeze_backbone_at_epoch null  # linear probe

The frontend and backbone of the checkpoint are kept and the head is replaced for the new tags
(:func:`musictag.finetune.finetune_tagger`); they are frozen for the first epochs, then trained at
a lower learning rate (:class:`musictag.finetune.BackboneFreeze`). Defaults:
``configs/finetune.yaml``; see ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from musictag.finetune import BackboneFreeze, finetune_tagger
from musictag.lightning_cli import TagCLI
from musictag.lightning_cli import main as run

CONFIG = Path(__file__).resolve().parent / "configs" / "finetune.yaml"


def main(args: Sequence[str] | None = None) -> TagCLI:
    """Run the recipe with command-line ``args`` (default ``sys.argv[1:]``)."""
    return run(
        CONFIG,
        args,
        model_class=finetune_tagger,
        extra_callback_groups={"finetuning": BackboneFreeze},
    )


if __name__ == "__main__":
    main()
