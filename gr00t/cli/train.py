"""`gr00t-train recipe=<name> [key=value ...]` (default recipe: `pretrain_n16`).

Any recipe of `recipes/` runs through the same builder as `gr00t-finetune`; see `gr00t-train --help`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-train` console script."""
    from gr00t.cli.common import run_hydra
    from gr00t.train.build import build_and_train

    return run_hydra("gr00t-train", "pretrain_n16", build_and_train, argv)


if __name__ == "__main__":
    sys.exit(main())
