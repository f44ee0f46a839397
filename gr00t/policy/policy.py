"""`Gr00tPolicy`: raw observation → absolute action chunk, with the processor used in training.

One call: `parse_observation` (checks, once) → `Gr00tProcessor` per sample (eval mode) +
`Gr00tCollator` → the same `Gr00tBatch` training uses → `Gr00tN16Model.get_action` (normalised
chunk) → the embodiment's decoding (un-normalise, add relative actions back onto the observed
state) in the caller's layout. Observation layout: `gr00t.policy.observation`; options:
`gr00t.policy.options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr00t.data.collator import Gr00tCollator
from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.processor import Gr00tProcessor
from gr00t.data.state_action import StateActionProcessor
from gr00t.model.batch import Gr00tBatch
from gr00t.model.gr00t_n16 import Gr00tN16Model
from gr00t.policy.base import Policy
from gr00t.policy.observation import Observation, ObservationError, modality_config, parse_observation
from gr00t.policy.options import parse_options, real_time_chunking

__all__ = ["Gr00tPolicy", "ObservationError"]


def _resolve_tag(processor: Gr00tProcessor, embodiment: str) -> str:
    if embodiment in processor.state_action:
        return embodiment
    try:
        tag = load_embodiment(embodiment).tag
    except Exception as exc:
        raise ValueError(
            f"embodiment {embodiment!r} is not in this checkpoint's processor (it handles "
            f"{processor.embodiment_tags}) and is not a known embodiment config: {exc}"
        ) from exc
    if tag not in processor.state_action:
        raise ValueError(
            f"embodiment {embodiment!r} (tag {tag!r}) was not trained into this checkpoint; "
            f"its processor handles {processor.embodiment_tags}"
        )
    return tag


class Gr00tPolicy(Policy):
    """Serve one embodiment of a GR00T N1.6 checkpoint.

    Args:
        model: the network (moved to `device`, put in eval mode).
        processor: the processor saved with the checkpoint (switched to eval mode).
        embodiment: embodiment tag or config name the policy acts for.
        device: torch device.
        compile: `model.compile_inference()` (``compile_mode`` / ``compile_backend`` pass through).
        cuda_graphs: compile with ``mode="reduce-overhead"`` (CUDA graphs); CUDA only.
        denoising_steps: default Euler steps per chunk (None: the model config's).
        seed: default noise seed for every call (None: fresh noise each call).
    """

    def __init__(
        self,
        model: Gr00tN16Model,
        processor: Gr00tProcessor,
        embodiment: str,
        device: str | torch.device = "cpu",
        compile: bool = False,
        cuda_graphs: bool = False,
        compile_mode: str | None = None,
        compile_backend: str = "inductor",
        denoising_steps: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor.eval()
        self.tag = _resolve_tag(processor, embodiment)
        self.state_action: StateActionProcessor = processor.state_action[self.tag]
        self.embodiment: EmbodimentConfig = self.state_action.embodiment
        pad_id = processor.tokenizer.pad_token_id
        self.collator = Gr00tCollator(pad_token_id=0 if pad_id is None else pad_id)
        self.denoising_steps = denoising_steps
        self.seed = seed
        cfg = model.config
        mine = (processor.max_state_dim, processor.max_action_dim, processor.action_horizon)
        theirs = (cfg.max_state_dim, cfg.max_action_dim, cfg.action_horizon)
        if mine != theirs:
            raise ValueError(
                f"processor (max_state_dim, max_action_dim, action_horizon) = {mine} does not match the "
                f"model config's {theirs}"
            )
        if cuda_graphs:
            if self.device.type != "cuda":
                raise ValueError(f"cuda_graphs=True needs a CUDA device, got {self.device}")
            compile, compile_mode = True, "reduce-overhead"
        if compile:
            self.model.compile_inference(mode=compile_mode, backend=compile_backend)

    @classmethod
    def from_checkpoint(
        cls, checkpoint_dir: str | Path, embodiment: str, device: str | torch.device = "cpu", **kwargs: Any
    ) -> Gr00tPolicy:
        """Load `Gr00tN16Model` and the `Gr00tProcessor` saved next to it."""
        path = Path(checkpoint_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint directory {path} does not exist")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} holds no config.json: not a saved Gr00tN16Model checkpoint")
        model = Gr00tN16Model.from_pretrained(str(path))
        processor = Gr00tProcessor.from_pretrained(path)
        return cls(model, processor, embodiment, device=device, **kwargs)

    @property
    def action_horizon(self) -> int:
        """Steps per returned chunk (the embodiment's horizon)."""
        return self.embodiment.action_horizon

    # ---- the Policy protocol ------------------------------------------------------------------------

    def get_action(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Absolute action chunk ``{key: float32 [B, horizon, D]}`` for an observation."""
        opts = parse_options(options)
        obs = parse_observation(observation, self.embodiment, self.state_action.state_dims)
        batch = self.prepare(obs)
        seed = self.seed if opts.seed is None else opts.seed
        generator = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        rtc = None if opts.rtc is None else real_time_chunking(opts.rtc, obs, self.state_action, self.device)
        steps = self.denoising_steps if opts.denoising_steps is None else opts.denoising_steps
        with torch.inference_mode():
            normalized = self.model.get_action(batch, num_steps=steps, generator=generator, rtc=rtc)
        return self.decode(normalized, obs)

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The policy keeps no episode state; returns an empty info dict (as the reference)."""
        return {}

    def get_modality_config(self) -> dict[str, dict[str, Any]]:
        """The embodiment's keys and windows as plain data, field names as the reference's ModalityConfig."""
        return modality_config(self.state_action)

    # ---- stages (public for callers that time them, e.g. bench/inference.py) ------------------------

    def prepare(self, observation: Observation) -> Gr00tBatch:
        """The model batch of a parsed observation, on the policy's device."""
        samples = [self.processor(raw) for raw in observation.samples(self.tag)]
        return self.collator(samples).to(self.device, non_blocking=True)

    def decode(self, normalized: torch.Tensor, observation: Observation) -> dict[str, np.ndarray]:
        """Absolute action dict (in the caller's layout) from the model's normalised output."""
        actions = self.processor.decode_action(normalized, observation.state, embodiment=self.tag)
        return observation.answer(actions)
