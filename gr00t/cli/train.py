"""`gr00t-train recipe=<name> [key=value ...]` (default recipe: `pretrain_n16`).

Any recipe runs through the same builder as `gr00t-finetune`; see `gr00t-train --help`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """\
gr00t-train: train GR00T N1.6 from a recipe (default: pretrain_n16).

Usage:
  gr00t-train recipe=pretrain_n16 [key=value ...]
  gr00t-train recipe=pretrain_n16 data_root=/datasets trainer.global_batch_size=1024
  gr00t-train recipe=pretrain_n16 data=<mixture> model=n16_tiny launcher=slurm
  gr00t-train recipe=finetune_n16 embodiment=<name> data=<dir>   # same as gr00t-finetune
  gr00t-train --cfg job [settings]                # print the composed config
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-train` console script."""
    from gr00t.cli.training import run_training_command

    return run_training_command("gr00t-train", "pretrain_n16", USAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
