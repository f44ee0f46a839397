"""`Gr00tProcessor`: raw sample (dataset output or policy observation) → model-ready sample.

The same object serves training and deployment (SPEC §2.3/§2.4, ARCHITECTURE.md):

* images: GR00T train/eval transforms (`image_transforms.ImageTransform`), one random draw for all
  frames and views of a sample, then the backbone's own resize/normalise/patchify and the
  instruction (lower-cased, punctuation stripped) with images in time-major order (the backbone's
  `InputBuilder`, picked by `gr00t.model.backbones.build_input_builder`);
* state/action: `state_action.StateActionProcessor` of the sample's embodiment — state padded to
  `max_state_dim`, actions to `[action_horizon, max_action_dim]` with `action_mask`;
* `embodiment_id` = the embodiment's projector index;
* `decode_action` turns predicted (normalised, padded) actions back into absolute per-key arrays.

Its complete state — embodiment configs, statistics, tokenizer, image and backbone-input settings
— is written by `save_pretrained(dir)` (`processor_config.json` + `tokenizer/`) and read back by
`from_pretrained(dir)`, so a checkpoint carries everything the policy needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from gr00t import atomic
from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.image_transforms import ImageTransform, ImageTransformConfig
from gr00t.data.state_action import StateActionProcessor
from gr00t.data.tokenizer import load_tokenizer
from gr00t.model.backbones import InputBuilder, build_input_builder, input_builder_from_dict

CONFIG_NAME = "processor_config.json"
TOKENIZER_DIR = "tokenizer"
FORMAT_VERSION = 1


class Gr00tProcessor:
    """Turns raw samples into model-ready samples for one or more embodiments.

    Args:
        state_action: one `StateActionProcessor` per embodiment (keyed by its tag); all must share
            the model's `max_state_dim`, `max_action_dim` and action horizon.
        vlm: the backbone's input builder (`build_input_builder(model_config, tokenizer)`).
        image_config: GR00T image transform settings.
        training: train-mode (random) or eval-mode (centre crop) image transforms.
    """

    def __init__(
        self,
        state_action: Sequence[StateActionProcessor] | Mapping[str, StateActionProcessor],
        vlm: InputBuilder,
        image_config: ImageTransformConfig | None = None,
        training: bool = True,
    ) -> None:
        procs = list(state_action.values()) if isinstance(state_action, Mapping) else list(state_action)
        if not procs:
            raise ValueError("Gr00tProcessor needs at least one embodiment (StateActionProcessor)")
        self.state_action: dict[str, StateActionProcessor] = {}
        for p in procs:
            if p.embodiment.tag in self.state_action:
                raise ValueError(f"embodiment tag {p.embodiment.tag!r} given twice")
            self.state_action[p.embodiment.tag] = p
        dims = {(p.max_state_dim, p.max_action_dim, p.max_action_horizon) for p in procs}
        if len(dims) != 1:
            raise ValueError(
                f"embodiments disagree on (max_state_dim, max_action_dim, action_horizon): {sorted(dims)}"
            )
        self.max_state_dim, self.max_action_dim, self.action_horizon = dims.pop()
        ids: dict[int, str] = {}
        for p in procs:
            other = ids.setdefault(p.embodiment.projector_index, p.embodiment.tag)
            if other != p.embodiment.tag:
                raise ValueError(
                    f"embodiments {other!r} and {p.embodiment.tag!r} share projector_index {p.embodiment.projector_index}"
                )
        self.vlm = vlm
        self.image_config = image_config or ImageTransformConfig()
        self.training = bool(training)
        self._transforms = {
            True: ImageTransform(self.image_config, train=True),
            False: ImageTransform(self.image_config, train=False),
        }

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        model_config: Any,
        embodiments: Sequence[tuple[EmbodimentConfig | str, Mapping[str, Any], Mapping[str, Any] | None]],
        tokenizer: PreTrainedTokenizerBase,
        image_config: ImageTransformConfig | None = None,
        training: bool = True,
        vlm_overrides: Mapping[str, Any] | None = None,
    ) -> Gr00tProcessor:
        """Build from a `Gr00tN16Config` and `(embodiment, stats, relative_stats)` triples;
        ``vlm_overrides`` adjusts input builder fields (e.g. ``min_pixels``)."""
        procs = [
            StateActionProcessor(
                load_embodiment(emb),
                stats,
                rel,
                max_state_dim=model_config.max_state_dim,
                max_action_dim=model_config.max_action_dim,
                max_action_horizon=model_config.action_horizon,
                apply_sincos=model_config.apply_sincos_state_encoding,
                use_relative_action=model_config.use_relative_action,
            )
            for emb, stats, rel in embodiments
        ]
        vlm = build_input_builder(model_config, tokenizer, **dict(vlm_overrides or {}))
        return cls(procs, vlm, image_config, training)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.vlm.tokenizer

    @property
    def embodiment_tags(self) -> list[str]:
        return list(self.state_action)

    def embodiment_id_map(self) -> dict[str, int]:
        """Tag → projector index of the embodiments this processor handles."""
        return {tag: p.embodiment.projector_index for tag, p in self.state_action.items()}

    def train(self, mode: bool = True) -> Gr00tProcessor:
        self.training = bool(mode)
        return self

    def eval(self) -> Gr00tProcessor:
        return self.train(False)

    def _embodiment(self, tag: str | None) -> StateActionProcessor:
        if tag is None:
            if len(self.state_action) == 1:
                return next(iter(self.state_action.values()))
            raise ValueError(f"several embodiments {self.embodiment_tags}: name the sample's 'embodiment'")
        if tag not in self.state_action:
            raise KeyError(
                f"embodiment {tag!r} is unknown to this processor; it handles {self.embodiment_tags}"
            )
        return self.state_action[tag]

    # ---- raw sample -> model-ready sample --------------------------------------------------------
    def __call__(
        self, sample: Mapping[str, Any], rng: np.random.Generator | int | None = None
    ) -> dict[str, Any]:
        """One raw sample (ARCHITECTURE.md) → ``{"backbone": <the backbone's inputs>, "state",
        "action", "action_mask", "embodiment_id"}`` for `Gr00tCollator`. ``rng`` drives the
        training-mode image augmentation (one draw for all frames and views) and, for several
        language channels (``sample["language"]`` a ``{key: text}`` mapping), the embodiment's
        language rule (`gr00t.data.language`; deterministic in eval mode)."""
        sap = self._embodiment(sample.get("embodiment"))
        emb = sap.embodiment
        video = sample.get("video")
        if not isinstance(video, Mapping):
            raise ValueError(
                f"sample['video'] must map view names to uint8 [T, H, W, 3], got {type(video).__name__}"
            )
        missing = [k for k in emb.video.keys if k not in video]
        if missing:
            raise KeyError(
                f"sample lacks video views {missing} of embodiment {emb.tag!r} (got {sorted(video)})"
            )
        views = {k: np.asarray(video[k]) for k in emb.video.keys}
        lengths = {k: v.shape[0] if v.ndim == 4 else None for k, v in views.items()}
        if len(set(lengths.values())) != 1 or None in lengths.values():
            shapes = {k: tuple(v.shape) for k, v in views.items()}
            raise ValueError(f"video views must all be uint8 [T, H, W, 3] with one T; got shapes {shapes}")
        language = sample.get("language")
        if isinstance(language, Mapping) and self.training:
            # one stream for the image draw, then the language draw (gr00t.data.language)
            rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        views = self._transforms[self.training](views, rng)
        steps = next(iter(lengths.values()))
        images = [views[k][t] for t in range(steps) for k in emb.video.keys]  # time-major, then view

        if isinstance(language, Mapping) and all(isinstance(v, str) for v in language.values()):
            language = emb.language.choose(language, rng if self.training else None)
        if not isinstance(language, str):
            raise ValueError(
                f"sample['language'] must be the instruction string (or {{channel: text}}), got {language!r}"
            )
        out: dict[str, Any] = {"backbone": self.vlm(language, images)}

        state, _ = sap.encode_state(sample["state"])
        out["state"] = torch.from_numpy(state)
        if sample.get("action") is not None:
            action, mask = sap.encode_action(sample["action"], sample["state"])
            out["action"] = torch.from_numpy(action)
            out["action_mask"] = torch.from_numpy(mask)
        out["embodiment_id"] = emb.projector_index
        return out

    def decode_action(
        self, action: Any, state: Mapping[str, Any] | None = None, embodiment: str | None = None
    ) -> dict[str, np.ndarray]:
        """Predicted normalised actions ``[..., H', A']`` → absolute action dict ``key → [..., H, D]``.
        ``state`` is the raw state dict of the observation (needed for relative action groups)."""
        if isinstance(action, torch.Tensor):
            action = action.detach().float().cpu().numpy()
        return self._embodiment(embodiment).decode_action(action, state)

    # ---- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (without the tokenizer, which is saved as its own files)."""
        return {
            "format_version": FORMAT_VERSION,
            "max_state_dim": self.max_state_dim,
            "max_action_dim": self.max_action_dim,
            "action_horizon": self.action_horizon,
            "vlm": self.vlm.to_dict(),
            "image": dataclasses.asdict(self.image_config),
            "embodiments": {tag: p.to_dict() for tag, p in self.state_action.items()},
        }

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `processor_config.json` and `tokenizer/` into ``directory`` (atomically per file)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_dir(target / TOKENIZER_DIR, replace=True) as staging:
            self.tokenizer.save_pretrained(str(staging))
        atomic.write_json(target / CONFIG_NAME, self.to_dict())
        return target

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, training: bool = False) -> Gr00tProcessor:
        """Rebuild a processor saved by `save_pretrained` (eval mode unless ``training``)."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no {CONFIG_NAME} in {directory}; was it written by Gr00tProcessor.save_pretrained?"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        tokenizer = load_tokenizer(Path(directory) / TOKENIZER_DIR)
        procs = [StateActionProcessor.from_dict(d) for d in data["embodiments"].values()]
        vlm = input_builder_from_dict(tokenizer, data["vlm"])
        return cls(procs, vlm, ImageTransformConfig(**data["image"]), training)
