"""`gr00t-finetune embodiment=<name> data=<dataset dir | mixture | demo> [model=...] [base=...] [key=value ...]`.

Hydra recipe `recipes/finetune_n16.yaml` (or any `recipe=<name>`); see `gr00t-finetune --help`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gr00t-finetune` console script."""
    from gr00t.cli.common import run_hydra
    from gr00t.train.build import build_and_train

    return run_hydra("gr00t-finetune", "finetune_n16", build_and_train, argv)


if __name__ == "__main__":
    sys.exit(main())
