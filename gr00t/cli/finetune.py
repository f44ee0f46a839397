"""`gr00t-finetune embodiment=<name | robot.yaml> data=<dataset | Hub id | mixture | demo> [key=value ...]`.

Composes the recipe `finetune_n16` (or any `recipe=<name>`); see `gr00t-finetune --help`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """\
gr00t-finetune: finetune GR00T N1.6 on a robot dataset (recipe finetune_n16).

Usage:
  gr00t-finetune embodiment=<name> data=<dataset dir | mixture name | demo>
                 [model=n16|n16_tiny] [base=<checkpoint dir | Hub id>] [key=value ...]
  gr00t-finetune recipe=demo                      # tiny CPU demo on the built-in dataset
  gr00t-finetune embodiment=~/robots/arm.yaml data=~/data/arm base=nvidia/GR00T-N1.6-3B \\
                 model.state_dropout_prob=0.8 trainer.max_steps=20000
  gr00t-finetune ... cotrain.mixture=pretrain_n16 cotrain.ratio=0.2
  gr00t-finetune --cfg job [settings]             # print the composed config
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-finetune` console script."""
    from gr00t.cli.training import run_training_command

    return run_training_command("gr00t-finetune", "finetune_n16", USAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
