"""HF ``Trainer`` hooks for the typed model batch (`gr00t.model.batch.Gr00tBatch`).

HF's own input handling knows dicts, lists and tensors; a `Gr00tBatch` passes through it untouched
(``len(batch)`` is its sample count) and these documented hooks take over: `compute_loss` moves the
batch to the device and finishes uint8-transported pixels there (`device_batch`), then calls
``model(batch)``; `floating_point_ops` counts its text tokens. Dict
batches (other models) keep HF's default path.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from gr00t.model.batch import Gr00tBatch
from gr00t.train.loader import finish_pixel_values


class TypedBatchHooks(Trainer):
    """Mixin for a `Trainer` subclass fed `Gr00tBatch` objects."""

    # The flow-matching loss is a per-micro-batch mean: gradient accumulation divides by the step count.
    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None) -> Any:
        """``model(batch)`` on the batch moved to this process's device. Under DeepSpeed floating
        tensors take the engine's dtype, as HF does for dict batches."""
        if not isinstance(inputs, Gr00tBatch):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(self.device_batch(inputs))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def device_batch(self, batch: Gr00tBatch) -> Gr00tBatch:
        """``batch`` on this process's device, pixels finished; under DeepSpeed floating tensors take
        the engine's dtype."""
        dtype = None
        if self.is_deepspeed_enabled:
            dtype = self.accelerator.state.deepspeed_plugin.hf_ds_config.dtype()
        return finish_pixel_values(batch.to(self.args.device, dtype=dtype), dtype)  # uint8 transport

    def floating_point_ops(self, inputs) -> int:
        """HF's estimate, 6 × text tokens × non-embedding parameters."""
        if not isinstance(inputs, Gr00tBatch):
            return super().floating_point_ops(inputs)
        return 6 * inputs.backbone.input_ids.numel() * self.model.num_parameters(exclude_embeddings=True)
