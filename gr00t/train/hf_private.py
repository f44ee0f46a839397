"""Every use of a private HF ``Trainer`` method, in one place.

The rest of the trainer extends HF through documented hooks (``create_optimizer``,
``create_scheduler``, ``get_train_dataloader``, ``get_batch_samples``, ``compute_loss``,
``evaluate``, ``log``, callbacks). Two behaviours have no public hook:

* where a checkpoint is written: HF writes straight into ``checkpoint-<N>/`` (a crash leaves a
  half-written folder that looks complete) and rotates by modification time. `_save_checkpoint`
  writes HF's parts into the run directory's staging folder instead and lets the trainer publish
  it atomically (`gr00t.train.run_dir`);
* whether the stored AdamW moments are loaded: after a change of the trainable set they belong to
  other parameters. `_load_optimizer_and_scheduler` then restores only the schedule.

Checked against transformers 5.24.0 (the version installed here; pyproject allows >=5.0,<6).
`HF_PRIVATE_API` lists each private method used with the signature it was checked against;
tests/train/test_hf_private.py fails when one disappears or changes, and when a trainer class
overrides a private ``Trainer`` method anywhere but here.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import Trainer

# name -> parameters (with defaults) of the Trainer method as checked (`signature_of`)
HF_PRIVATE_API: dict[str, tuple[str, ...]] = {
    "_save_checkpoint": ("self", "model", "trial"),
    "_load_optimizer_and_scheduler": ("self", "checkpoint"),
    "_save_optimizer_and_scheduler": ("self", "output_dir"),
    "_save_scaler": ("self", "output_dir"),
    "_save_rng_state": ("self", "output_dir"),
    "save_model": ("self", "output_dir=None", "_internal_call=False"),
}


def signature_of(function: Any) -> tuple[str, ...]:
    """A function's parameter names, ``name=default`` for those with a default."""
    out = []
    for param in inspect.signature(function).parameters.values():
        out.append(param.name if param.default is param.empty else f"{param.name}={param.default!r}")
    return tuple(out)


class PrivateTrainerHooks(Trainer):
    """The two private overrides; the decisions live in the public methods of `Gr00tTrainer`
    (`begin_checkpoint`, `finish_checkpoint`, `optimizer_state_mismatch`, `load_schedule_only`)."""

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        staging = self.begin_checkpoint()
        out = str(staging.path)
        self.save_model(out, _internal_call=True)  # weights (DeepSpeed: gathered as its config says)
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(out)  # DeepSpeed: the engine checkpoint
            self._save_scaler(out)
            self._save_rng_state(out)
        self.finish_checkpoint(staging)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and self.optimizer_state_mismatch(checkpoint) is not None:
            self.load_schedule_only(checkpoint)
            return
        super()._load_optimizer_and_scheduler(checkpoint)

    # implemented by Gr00tTrainer
    def begin_checkpoint(self) -> Any:
        raise NotImplementedError

    def finish_checkpoint(self, staging: Any) -> None:
        raise NotImplementedError

    def optimizer_state_mismatch(self, checkpoint: str) -> str | None:
        raise NotImplementedError

    def load_schedule_only(self, checkpoint: str) -> None:
        raise NotImplementedError


__all__ = ["HF_PRIVATE_API", "PrivateTrainerHooks", "signature_of"]
