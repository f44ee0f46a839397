"""`Gr00tPolicy`: raw observation → absolute action chunk, with the processor used in training.

Observation (SPEC-N16 §4), batched::

    {"video": {view: uint8 [B, T_v, H, W, 3]}, "state": {key: float32 [B, T_s, D]},
     "language": {key: [[str], ...]}}          # B lists of one instruction

or unbatched (no B axis; language a str or [str]); the result then has no B axis either. The flat
layout of the reference's simulation wrapper (``"video.<view>"``, ``"state.<key>"``, ``<language key>``:
list of B strings) is accepted too and answered with ``"action.<key>"`` keys.

Returns ``{action_key: float32 [B, horizon, D]}`` in absolute units. Per call the processor (eval
mode) builds the model batch, the model runs the backbone once and integrates the flow with its
action head, and the embodiment's StateActionProcessor decodes (un-normalises, adds relative actions
back onto the observed state).

``options`` of `get_action`: ``seed`` (int, fixes the initial noise), ``denoising_steps`` (int) and
``rtc`` (real-time chunking: ``{"prev_actions": {key: [B, H_prev, D]} absolute, or normalised
[B, H_prev, max_action_dim], "frozen_steps": int, "overlap_steps": int}``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr00t.data.collator import Gr00tCollator
from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.processor import Gr00tProcessor
from gr00t.data.state_action import StateActionProcessor
from gr00t.model.gr00t_n16 import Gr00tN16Model

logger = logging.getLogger(__name__)

OPTION_KEYS = ("seed", "denoising_steps", "rtc")
_ACTION_REP = {"relative": "RELATIVE", "absolute": "ABSOLUTE"}
_ACTION_FORMAT = {None: "DEFAULT", "xyz_rot6d": "XYZ_ROT6D", "xyz_rotvec": "XYZ_ROTVEC"}


class ObservationError(ValueError):
    """An observation that does not match the embodiment the policy serves."""


@dataclass
class PreparedBatch:
    """A validated observation turned into a model batch (plus what decoding needs)."""

    batch: dict[str, torch.Tensor]
    raw_state: dict[str, np.ndarray]  # key -> float32 [B, T, D]
    batch_size: int
    batched: bool
    flat: bool
    timings: dict[str, float] = field(default_factory=dict)


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Gr00tPolicy:
    """Serve one embodiment of a GR00T N1.6 checkpoint.

    Args:
        model: the network (moved to `device`, put in eval mode).
        processor: the processor saved with the checkpoint (switched to eval mode).
        embodiment: embodiment tag or config name the policy acts for.
        device: torch device.
        compile: torch.compile the backbone and the DiT (`compile_mode` picks the inductor mode).
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
        self._check_model_matches_processor()
        if cuda_graphs:
            if self.device.type != "cuda":
                raise ValueError(f"cuda_graphs=True needs a CUDA device, got {self.device}")
            compile, compile_mode = True, "reduce-overhead"
        self.compiled = False
        if compile:
            self.enable_compile(mode=compile_mode, backend=compile_backend)

    # ---- construction ------------------------------------------------------------------------------

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

    def _check_model_matches_processor(self) -> None:
        cfg = self.model.config
        mine = (self.processor.max_state_dim, self.processor.max_action_dim, self.processor.action_horizon)
        theirs = (cfg.max_state_dim, cfg.max_action_dim, cfg.action_horizon)
        if mine != theirs:
            raise ValueError(
                f"processor (max_state_dim, max_action_dim, action_horizon) = {mine} does not match the "
                f"model config's {theirs}"
            )

    def enable_compile(self, mode: str | None = None, backend: str = "inductor") -> None:
        """torch.compile the backbone's and the DiT's forward (in place; the state dict is unchanged)."""
        for module in (self.model.backbone, self.model.action_head.model):
            module.forward = torch.compile(module.forward, mode=mode, backend=backend)  # type: ignore[method-assign]
        self.compiled = True

    def disable_compile(self) -> None:
        """Back to eager execution (drops the compiled wrappers)."""
        for module in (self.model.backbone, self.model.action_head.model):
            module.__dict__.pop("forward", None)
        self.compiled = False

    # ---- public API (what the server calls) ----------------------------------------------------------

    @property
    def action_horizon(self) -> int:
        """Steps per returned chunk (the embodiment's horizon)."""
        return self.embodiment.action_horizon

    def get_action(
        self, observation: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Absolute action chunk ``{key: float32 [B, horizon, D]}`` for an observation."""
        opts = self._check_options(options)
        prepared = self.prepare(observation)
        generator = None
        seed = opts.get("seed", self.seed)
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        rtc = self._rtc(opts.get("rtc"), prepared)
        normalized = self.infer(
            prepared.batch, generator=generator, rtc=rtc, num_steps=opts.get("denoising_steps")
        )
        return self.decode(normalized, prepared)

    def reset(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The policy keeps no episode state; returns an empty info dict (as the reference)."""
        return {}

    def get_modality_config(self) -> dict[str, dict[str, Any]]:
        """The embodiment's keys and windows as plain data, field names as the reference's ModalityConfig."""
        emb, sap = self.embodiment, self.state_action
        mean_std_state = [k for k in emb.state.keys if emb.state.mode(k) == "mean_std"]
        mean_std_action = [g.key for g in emb.action.groups if g.normalization == "mean_std"]
        return {
            "video": {"delta_indices": list(emb.video.delta_indices), "modality_keys": list(emb.video.keys)},
            "state": {
                "delta_indices": list(emb.state.delta_indices),
                "modality_keys": list(emb.state.keys),
                "sin_cos_embedding_keys": list(sap.sincos_keys) or None,
                "mean_std_embedding_keys": mean_std_state or None,
            },
            "action": {
                "delta_indices": list(emb.action.delta_indices),
                "modality_keys": list(emb.action.keys),
                "mean_std_embedding_keys": mean_std_action or None,
                "action_configs": [
                    {
                        "rep": _ACTION_REP[g.rep] if sap.use_relative_action else "ABSOLUTE",
                        "type": "EEF" if g.type == "eef" else "NON_EEF",
                        "format": _ACTION_FORMAT[g.format],
                        "state_key": g.reference_key if g.is_relative else None,
                    }
                    for g in emb.action.groups
                ],
            },
            "language": {
                "delta_indices": list(emb.language.delta_indices),
                "modality_keys": list(emb.language.keys),
            },
        }

    # ---- the three stages: prepare, infer, decode -----------------------------------------------------

    def prepare(self, observation: Mapping[str, Any]) -> PreparedBatch:
        """Validate, run the processor per sample and collate onto the device."""
        start = time.perf_counter()
        nested, flat = self._unflatten(observation)
        video, state, language, batch_size, batched = self._validate(nested)
        samples = []
        for b in range(batch_size):
            raw = {
                "video": {k: v[b] for k, v in video.items()},
                "state": {k: v[b] for k, v in state.items()},
                "language": language[b],
                "embodiment": self.tag,
            }
            samples.append(self.processor(raw))
        batch = self.collator(samples)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        _sync(self.device)
        prepared = PreparedBatch(batch, state, batch_size, batched, flat)
        prepared.timings["data"] = time.perf_counter() - start
        return prepared

    @torch.inference_mode()
    def infer(
        self,
        batch: Mapping[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        rtc: Mapping[str, Any] | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Normalised action chunk float32 ``[B, action_horizon, max_action_dim]``."""
        steps = num_steps if num_steps is not None else self.denoising_steps
        if steps is None:
            return self.model.get_action(noise=noise, generator=generator, rtc=rtc, **batch)["action_pred"]
        features, head_inputs = self.run_backbone(batch)
        return self.run_head(
            features, head_inputs, noise=noise, generator=generator, rtc=rtc, num_steps=steps
        )

    @torch.inference_mode()
    def run_backbone(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Backbone features of a batch and the head's inputs (for callers that time the stages)."""
        backbone_inputs, head_inputs = self.model.split_batch(batch)
        return self.model._backbone_output(backbone_inputs), head_inputs

    @torch.inference_mode()
    def run_head(
        self,
        features: Mapping[str, torch.Tensor],
        head_inputs: Mapping[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        rtc: Mapping[str, Any] | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Flow integration of the action head on precomputed backbone features."""
        return self.model.action_head.get_action(
            **features,
            state=head_inputs["state"],
            embodiment_id=head_inputs["embodiment_id"],
            noise=noise,
            generator=generator,
            rtc=rtc,
            num_steps=num_steps if num_steps is not None else self.denoising_steps,
        )

    def decode(self, normalized: torch.Tensor, prepared: PreparedBatch) -> dict[str, np.ndarray]:
        """Absolute action dict from the model's normalised output."""
        actions = self.processor.decode_action(normalized, prepared.raw_state, embodiment=self.tag)
        out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in actions.items()}
        if not prepared.batched:
            out = {k: v[0] for k, v in out.items()}
        if prepared.flat:
            out = {f"action.{k}": v for k, v in out.items()}
        return out

    # ---- validation ------------------------------------------------------------------------------------

    def _check_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise ValueError(f"options must be a mapping or None, got {type(options).__name__}")
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; supported: {list(OPTION_KEYS)}")
        opts = {k: v for k, v in options.items() if v is not None}
        for key in ("seed", "denoising_steps"):
            value = opts.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ValueError(f"option {key!r} must be an integer, got {value!r}")
        if "denoising_steps" in opts and int(opts["denoising_steps"]) < 1:
            raise ValueError(f"option 'denoising_steps' must be >= 1, got {opts['denoising_steps']}")
        return opts

    def _unflatten(self, observation: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        if not isinstance(observation, Mapping):
            raise ObservationError(f"observation must be a mapping, got {type(observation).__name__}")
        if any(m in observation for m in ("video", "state", "language")):
            return dict(observation), False
        emb = self.embodiment
        if not any(isinstance(k, str) and k.startswith(("video.", "state.")) for k in observation):
            raise ObservationError(
                "observation needs 'video', 'state' and 'language' entries "
                f"(or the flat 'video.<view>' / 'state.<key>' layout); got keys {sorted(map(str, observation))}"
            )
        nested: dict[str, Any] = {"video": {}, "state": {}, "language": {}}
        for modality, keys in (("video", emb.video.keys), ("state", emb.state.keys)):
            for key in keys:
                flat_key = f"{modality}.{key}"
                if flat_key in observation:
                    nested[modality][key] = observation[flat_key]
        for key in emb.language.keys:
            value = observation.get(key, observation.get("task") if len(emb.language.keys) == 1 else None)
            if value is not None:
                if isinstance(value, str):
                    nested["language"][key] = value
                elif isinstance(value, (list, tuple)):
                    nested["language"][key] = [[str(s)] for s in value]
                else:
                    raise ObservationError(
                        f"language key {key!r}: expected a list of strings, got {type(value).__name__}"
                    )
        return nested, True

    def _section(
        self, observation: Mapping[str, Any], modality: str, keys: tuple[str, ...]
    ) -> Mapping[str, Any]:
        section = observation.get(modality)
        if not isinstance(section, Mapping):
            raise ObservationError(
                f"observation[{modality!r}] must be a mapping of {list(keys)}, got {type(section).__name__}"
            )
        missing = [k for k in keys if k not in section]
        if missing:
            raise ObservationError(
                f"observation[{modality!r}] is missing key(s) {missing} of embodiment {self.tag!r}; "
                f"got {sorted(map(str, section))}"
            )
        return section

    def _validate(
        self, observation: Mapping[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str], int, bool]:
        emb = self.embodiment
        videos = self._section(observation, "video", emb.video.keys)
        states = self._section(observation, "state", emb.state.keys)
        languages = self._section(observation, "language", emb.language.keys)
        t_video, t_state = len(emb.video.delta_indices), len(emb.state.delta_indices)

        first = videos[emb.video.keys[0]]
        batched = not (isinstance(first, np.ndarray) and first.ndim == 4)
        lead = 1 if batched else 0
        sizes: dict[str, int] = {}

        video_out = {}
        for key in emb.video.keys:
            arr = videos[key]
            where = f"video[{key!r}]"
            if not isinstance(arr, np.ndarray):
                raise ObservationError(f"{where}: expected a numpy uint8 array, got {type(arr).__name__}")
            if arr.dtype != np.uint8:
                raise ObservationError(f"{where}: expected dtype uint8, got {arr.dtype}")
            want = "[B, T, H, W, 3]" if batched else "[T, H, W, 3]"
            if arr.ndim != 4 + lead or arr.shape[-1] != 3 or arr.shape[-2] < 1 or arr.shape[-3] < 1:
                raise ObservationError(f"{where}: expected shape {want} (RGB), got {arr.shape}")
            if arr.shape[lead] != t_video:
                raise ObservationError(
                    f"{where}: expected T={t_video} frames (video delta_indices), got {arr.shape[lead]}"
                )
            video_out[key] = arr if batched else arr[None]
            sizes[where] = video_out[key].shape[0]

        state_out = {}
        for key in emb.state.keys:
            arr = states[key]
            where = f"state[{key!r}]"
            dim = self.state_action.state_dims[key]
            if not isinstance(arr, np.ndarray):
                raise ObservationError(f"{where}: expected a numpy float32 array, got {type(arr).__name__}")
            if arr.dtype != np.float32:
                raise ObservationError(f"{where}: expected dtype float32, got {arr.dtype}")
            want = f"[B, {t_state}, {dim}]" if batched else f"[{t_state}, {dim}]"
            if arr.ndim != 2 + lead or arr.shape[-1] != dim:
                raise ObservationError(f"{where}: expected shape {want}, got {arr.shape}")
            if arr.shape[lead] != t_state:
                raise ObservationError(
                    f"{where}: expected T={t_state} steps (state delta_indices), got {arr.shape[lead]}"
                )
            if not np.all(np.isfinite(arr)):
                raise ObservationError(f"{where}: contains NaN or infinity")
            state_out[key] = arr if batched else arr[None]
            sizes[where] = state_out[key].shape[0]

        key = emb.language.keys[0]
        where = f"language[{key!r}]"
        value = languages[key]
        if batched:
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(item, (list, tuple)) and len(item) == 1 and isinstance(item[0], str)
                for item in value
            )
            if not ok:
                raise ObservationError(
                    f"{where}: expected B lists of one instruction string ([[str], ...]), got {value!r:.200}"
                )
            language = [item[0] for item in value]
        else:
            if isinstance(value, (list, tuple)) and len(value) == 1:
                value = value[0]
            if not isinstance(value, str):
                raise ObservationError(
                    f"{where}: expected an instruction string (unbatched observation), got {value!r:.200}"
                )
            language = [value]
        sizes[where] = len(language)

        if len(set(sizes.values())) != 1:
            raise ObservationError(f"batch sizes disagree across the observation: {sizes}")
        batch_size = next(iter(sizes.values()))
        if batch_size < 1:
            raise ObservationError(f"empty batch: {sizes}")
        return video_out, state_out, language, batch_size, batched

    # ---- real-time chunking -----------------------------------------------------------------------------

    def _rtc(self, rtc: Any, prepared: PreparedBatch) -> dict[str, Any] | None:
        if rtc is None:
            return None
        if not isinstance(rtc, Mapping):
            raise ValueError(f"option 'rtc' must be a mapping, got {type(rtc).__name__}")
        missing = {"prev_actions", "frozen_steps", "overlap_steps"} - set(rtc)
        if missing:
            raise ValueError(f"option 'rtc' is missing {sorted(missing)}")
        prev = rtc["prev_actions"]
        if isinstance(prev, Mapping):
            prev = self._encode_prev_actions(prev, prepared)
        prev_arr = np.asarray(prev, dtype=np.float32)
        if not prepared.batched and prev_arr.ndim == 2:
            prev_arr = prev_arr[None]
        return {
            "prev_actions": torch.from_numpy(prev_arr).to(self.device),
            "frozen_steps": int(rtc["frozen_steps"]),
            "overlap_steps": int(rtc["overlap_steps"]),
        }

    def _encode_prev_actions(self, prev: Mapping[str, Any], prepared: PreparedBatch) -> np.ndarray:
        """Absolute per-key chunk [B, H_prev, D] -> normalised [B, H_prev, max_action_dim]."""
        horizon = self.action_horizon
        padded = {}
        lengths = set()
        for key in self.embodiment.action.keys:
            name = f"action.{key}" if prepared.flat and f"action.{key}" in prev else key
            if name not in prev:
                raise ValueError(f"rtc prev_actions is missing action key {key!r}; got {sorted(prev)}")
            arr = np.asarray(prev[name], dtype=np.float32)
            if not prepared.batched:
                arr = arr[None]
            if arr.ndim != 3 or not 1 <= arr.shape[1] <= horizon:
                raise ValueError(f"rtc prev_actions[{key!r}]: expected [B, 1..{horizon}, D], got {arr.shape}")
            lengths.add(arr.shape[1])
            reps = horizon - arr.shape[1]
            padded[key] = np.concatenate([arr, np.repeat(arr[:, -1:], reps, axis=1)], axis=1) if reps else arr
        if len(lengths) != 1:
            raise ValueError(f"rtc prev_actions keys have different lengths {sorted(lengths)}")
        encoded, _ = self.state_action.encode_action(padded, prepared.raw_state)
        return encoded[:, : lengths.pop()]
