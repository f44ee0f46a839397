"""GR00T N1.6: vision-language backbone + flow-matching action head as one `PreTrainedModel`.

State-dict layout = the released checkpoint's: `backbone.*` (see `gr00t.model.backbones`) and
`action_head.*` (see `gr00t.model.action_head`). `save_pretrained`/`from_pretrained` use safetensors.

Partial unfreezing (SPEC-N16 §1.5, following the reference):
- `tune_llm`: the language model; `tune_visual`: the vision model *and* its projector `mlp1`;
  the top `tune_top_llm_layers` kept LLM layers train regardless.
- `tune_projector`: the action head's state encoder, action encoder, action decoder, position
  embedding and mask token (it does not touch the backbone's `mlp1`, which follows `tune_visual`).
- `tune_diffusion_model`: the DiT (`action_head.model`); `tune_vlln`: `action_head.vlln`.
Frozen modules stay in eval mode whatever `train()` is called with.

Precision policy (SPEC-N16 §1.1, `apply_precision`): frozen parameters are stored in
`config.model_dtype`; trainable ones are float32 master weights (trainable backbone parameters only
with `backbone_trainable_params_fp32`, else `model_dtype`). Building the model and loading it end
in that state, and `set_trainable` keeps it. A model holding low-precision weights computes under
autocast to `model_dtype` (`compute_autocast`), entered by `forward`/`encode`/`denoise` when the
caller has not entered one.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as hf_init
from transformers.utils import ModelOutput

from gr00t.model.action_head import FlowMatchingActionHead, HeadContext, RealTimeChunking
from gr00t.model.backbones import build_backbone, ignored_checkpoint_keys
from gr00t.model.batch import Gr00tBatch
from gr00t.model.checkpoint_files import check_model_files
from gr00t.model.config import Gr00tN16Config
from gr00t.model.embodiment_layers import CategorySpecificLinear
from gr00t.model.reference_checkpoint import prepare_from_pretrained_kwargs

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_SAFETENSORS_DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
}


def stored_dtypes(folder: Path) -> dict[str, torch.dtype]:
    """Floating dtype of every tensor in a local safetensors checkpoint (single file or sharded)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError) as err:
            raise ValueError(f"{index}: expected a JSON object with a 'weight_map'") from err
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return {}
    dtypes: dict[str, torch.dtype] = {}
    for name in files:
        with safe_open(folder / name, framework="pt") as f:
            for key in f.keys():
                dtype = _SAFETENSORS_DTYPES.get(f.get_slice(key).get_dtype())
                if dtype is not None:
                    dtypes[key] = dtype
    return dtypes


@dataclass
class Gr00tN16Output(ModelOutput):
    """Training output: `loss` (what the optimiser minimises) and its flow-matching part `action_loss`."""

    loss: torch.Tensor | None = None
    action_loss: torch.Tensor | None = None


class Gr00tN16Model(PreTrainedModel):
    """`backbone` + `action_head`, fed a `Gr00tBatch`.

    Training: `forward(batch)` → loss. Inference: `get_action(batch)` → normalised action chunk, in
    two stages `encode(batch)` (backbone + head context, once) and `denoise(context)` (the Euler
    loop); `compile_inference()` compiles both stages' heavy modules.
    """

    config_class = Gr00tN16Config
    main_input_name = "input_ids"
    # the trainer must not inject loss kwargs such as num_items_in_batch into forward()
    accepts_loss_kwargs = False
    _supports_sdpa = True

    def __init__(self, config: Gr00tN16Config) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config)
        self.action_head = FlowMatchingActionHead(config)
        # Release checkpoints hold weights this model deliberately does not build (LM head, vision
        # pooling head, LLM layers above select_layer): accept and drop them on load.
        self._keys_to_ignore_on_load_unexpected = ignored_checkpoint_keys(config)
        self.inference_compiled = False
        self.post_init()
        self.set_trainable()

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Fresh-init distributions (also used for keys missing from a checkpoint)."""
        if isinstance(module, CategorySpecificLinear):
            hf_init.normal_(module.W, mean=0.0, std=0.02)
            hf_init.zeros_(module.b)
        elif isinstance(module, FlowMatchingActionHead):
            if module.mask_token is not None:
                hf_init.normal_(module.mask_token, mean=0.0, std=0.02)
        elif isinstance(module, nn.Linear):
            hf_init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1.0 / math.sqrt(module.in_features) if module.in_features > 0 else 0.0
                hf_init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Embedding):
            hf_init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            hf_init.ones_(module.weight)
            if module.bias is not None:
                hf_init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained` that keeps each tensor's stored dtype, then re-applies the
        config's unfreezing flags.

        Without an explicit `dtype`, weights load as float32 (lossless) and each tensor is cast back to
        the dtype it has in the safetensors file, so a bf16 model with fp32 trainable backbone
        parameters round-trips exactly. Loading replaces parameters (resetting `requires_grad`), so
        the flags — including overrides passed as kwargs, e.g. `tune_visual=True` — are applied again.
        A reference (NVIDIA `Gr00tN1d6`) checkpoint folder loads too, its config converted.
        """
        # A folder written by NVIDIA's reference code gets its config.json converted (see
        # gr00t.model.reference_checkpoint); other folders pass through unchanged.
        check_model_files(Path(str(pretrained_model_name_or_path)) / kwargs.get("subfolder", ""))
        kwargs = prepare_from_pretrained_kwargs(pretrained_model_name_or_path, kwargs)
        keep_stored = "dtype" not in kwargs and "torch_dtype" not in kwargs
        if keep_stored:
            kwargs["dtype"] = torch.float32
        result = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = result[0] if isinstance(result, tuple) else result
        if keep_stored:
            folder = Path(pretrained_model_name_or_path) / kwargs.get("subfolder", "")
            if folder.is_dir():
                model._restore_stored_dtypes(stored_dtypes(folder))
                model.config.dtype = model.dtype
        model.set_trainable()
        return result

    def _restore_stored_dtypes(self, dtypes: Mapping[str, torch.dtype]) -> None:
        for name, tensor in [*self.named_parameters(), *self.named_buffers()]:
            dtype = dtypes.get(name)
            if dtype is not None and tensor.dtype != dtype:
                tensor.data = tensor.data.to(dtype)

    # ------------------------------------------------------------------ unfreezing
    def set_trainable(
        self,
        tune_llm: bool | None = None,
        tune_visual: bool | None = None,
        tune_top_llm_layers: int | None = None,
        tune_projector: bool | None = None,
        tune_diffusion_model: bool | None = None,
        tune_vlln: bool | None = None,
    ) -> None:
        """Set `requires_grad` per SPEC §1.5 (arguments default to, and are written back to, the config)."""
        cfg = self.config
        values = {
            "tune_llm": tune_llm,
            "tune_visual": tune_visual,
            "tune_top_llm_layers": tune_top_llm_layers,
            "tune_projector": tune_projector,
            "tune_diffusion_model": tune_diffusion_model,
            "tune_vlln": tune_vlln,
        }
        for name, value in values.items():
            if value is not None:
                setattr(cfg, name, value)
        self.backbone.set_trainable(
            tune_llm=bool(cfg.tune_llm),
            tune_visual=bool(cfg.tune_visual),
            tune_projector=bool(cfg.tune_projector),
            tune_top_llm_layers=int(cfg.tune_top_llm_layers),
        )
        head = self.action_head
        head.requires_grad_(True)
        if not cfg.tune_projector:
            for p in head.projector_parameters():
                p.requires_grad_(False)
        if not cfg.tune_diffusion_model:
            head.model.requires_grad_(False)
        if not cfg.tune_vlln:
            head.vlln.requires_grad_(False)
        self.apply_precision()
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        """Modules kept in eval mode while training."""
        cfg = self.config
        head = self.action_head
        frozen = list(self.backbone.frozen_modules())
        if not cfg.tune_projector:
            frozen.extend(head.projector_modules())
        if not cfg.tune_diffusion_model:
            frozen.append(head.model)
        if not cfg.tune_vlln:
            frozen.append(head.vlln)
        return frozen

    def train(self, mode: bool = True) -> Gr00tN16Model:
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
        return self

    def num_parameters_by_part(self, trainable_only: bool = False) -> dict[str, int]:
        """Parameter counts of backbone, head and the head's DiT (works on the meta device)."""

        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

        return {
            "backbone": count(self.backbone),
            "action_head": count(self.action_head),
            "dit": count(self.action_head.model),
            "total": count(self),
        }

    def parameter_dtype(self, name: str, trainable: bool) -> torch.dtype:
        """The dtype the precision policy gives parameter `name` (SPEC §1.1)."""
        cfg = self.config
        if not trainable:
            return _DTYPES[cfg.model_dtype]
        if name.startswith("backbone.") and not cfg.backbone_trainable_params_fp32:
            return _DTYPES[cfg.model_dtype]
        return torch.float32

    def apply_precision(self) -> Gr00tN16Model:
        """Cast each parameter to its policy dtype: frozen ones to `config.model_dtype`, trainable ones
        to float32 master weights (see `parameter_dtype`). Buffers keep their dtype (rotary tables
        stay float32). Called by `set_trainable`; call it again after adding parameters (LoRA)."""
        for name, p in self.named_parameters():
            dtype = self.parameter_dtype(name, p.requires_grad)
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)
        return self

    @property
    def compute_dtype(self) -> torch.dtype:
        """`config.model_dtype`: the autocast dtype of a model that holds low-precision weights."""
        return _DTYPES[self.config.model_dtype]

    def compute_autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        """Autocast to `model_dtype` when the model holds parameters below float32 and the caller
        has not entered an autocast region itself; otherwise a no-op context."""
        dtype = self.compute_dtype
        if dtype == torch.float32 or torch.is_autocast_enabled(device_type):
            return contextlib.nullcontext()
        if all(p.dtype == torch.float32 for p in self.parameters()):
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=dtype)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        batch: Gr00tBatch,
        noise: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        rtc_delay: torch.Tensor | None = None,
    ) -> Gr00tN16Output:
        """Flow-matching loss of a training batch (`batch.head.action` set). `noise [B, H, A]`,
        `t [B]` and, with training-time RTC, `rtc_delay long [B]` fix the draws (made from the global
        RNG when not given; see `FlowMatchingActionHead.forward`)."""
        _check_batch(batch)
        head = batch.head
        if head.action is None:
            raise ValueError(
                "Gr00tN16Model.forward needs 'action' (a training batch); use get_action for inference"
            )
        with self.compute_autocast(head.state.device.type):
            return self._loss(batch, noise, t, rtc_delay)

    def _loss(
        self,
        batch: Gr00tBatch,
        noise: torch.Tensor | None,
        t: torch.Tensor | None,
        rtc_delay: torch.Tensor | None,
    ) -> Gr00tN16Output:
        head = batch.head
        features = self.backbone(batch.backbone)
        out = self.action_head(
            backbone_features=features.backbone_features,
            backbone_attention_mask=features.backbone_attention_mask,
            image_mask=features.image_mask,
            state=head.state,
            action=head.action,
            action_mask=head.action_mask,
            embodiment_id=head.embodiment_id,
            noise=noise,
            t=t,
            rtc_delay=rtc_delay,
        )
        return Gr00tN16Output(loss=out["loss"], action_loss=out["loss"].detach())

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, batch: Gr00tBatch) -> HeadContext:
        """The step-independent part of inference: the backbone, then the head's context (vlln,
        cross-attention keys/values, state tokens). `action`/`action_mask` are ignored."""
        _check_batch(batch)
        with self.compute_autocast(batch.head.state.device.type):
            features = self.backbone(batch.backbone)
            return self.action_head.prepare_context(
                features.backbone_features,
                features.backbone_attention_mask,
                features.image_mask,
                batch.head.state,
                batch.head.embodiment_id,
            )

    @torch.no_grad()
    def denoise(
        self,
        context: HeadContext,
        num_steps: int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        rtc: RealTimeChunking | Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """Euler integration of the flow on an `encode`d context → float32 `[B, H, max_action_dim]`
        (normalised space). `num_steps` defaults to `config.num_inference_timesteps`; `noise` (or
        `generator`) fixes the start; `rtc` continues a previous chunk (`RealTimeChunking`)."""
        with self.compute_autocast(context.state_features.device.type):
            return self.action_head.sample(
                context, noise=noise, generator=generator, rtc=rtc, num_steps=num_steps
            ).float()

    @torch.no_grad()
    def get_action(
        self,
        batch: Gr00tBatch,
        num_steps: int | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        rtc: RealTimeChunking | Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """Normalised action chunk float32 `[B, action_horizon, max_action_dim]`: `encode` + `denoise`.

        Call `.eval()` first for deterministic output.
        """
        return self.denoise(
            self.encode(batch), num_steps=num_steps, noise=noise, generator=generator, rtc=rtc
        )

    def compile_inference(self, mode: str | None = None, backend: str = "inductor") -> None:
        """torch.compile the backbone and the action head's DiT in place (the modules inference spends
        its time in; parameters and state dict are unchanged). ``mode="reduce-overhead"`` adds CUDA
        graphs. Undo with `eager_inference`."""
        for module in self._compiled_modules():
            module.compile(mode=mode, backend=backend)
        self.inference_compiled = True

    def eager_inference(self) -> None:
        """Drop the compiled code of `compile_inference` (back to eager execution)."""
        for module in self._compiled_modules():
            # nn.Module.compile() keeps its compiled call here (torch >= 2.2); None restores eager calls.
            module._compiled_call_impl = None
        self.inference_compiled = False

    def _compiled_modules(self) -> tuple[nn.Module, ...]:
        return (self.backbone, self.action_head.model)


def _check_batch(batch: Any) -> None:
    if not isinstance(batch, Gr00tBatch):
        raise TypeError(
            f"Gr00tN16Model takes a Gr00tBatch (gr00t.model.batch; built by Gr00tCollator), got "
            f"{type(batch).__name__}"
        )


__all__ = ["Gr00tN16Model", "Gr00tN16Output"]
