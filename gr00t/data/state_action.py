"""StateActionProcessor (SPEC §2.3): raw state/action dicts <-> padded, normalised model arrays.

Every step is a transform with a forward and an inverse declared side by side, so the same object
encodes training targets and decodes the policy's predictions back to absolute robot units:

    action:  RelativeAction (a - s_ref, or inv(T_ref)·T for eef)  ->  Normalize  ->  pack + pad
    decode:  unpack  ->  Normalize.inverse (clip, un-normalise)  ->  RelativeAction.inverse (+ s_ref)
    state:   SinCos or Normalize per group  ->  pack + pad     (state is never decoded)

Normalisation modes per key: `min_max` — `2(x-min)/(max-min) - 1`, 0 where max == min, clipped to
[-1, 1]; `percentile` — the same with q01/q99; `mean_std` — `(x-mean)/std` (std below 1e-8 counts as
1), not clipped, because clipping would make it non-invertible (the reference does not clip it either).
Relative groups (when `use_relative_action`) use relative statistics kept per horizon step ([H, D]).

Stats layout: `stats = {"state": {key: {"min": [D], ...}}, "action": {key: {...}}}`,
`relative_stats = {key: {"min": [H, D], ...}}` (see gr00t/data/stats.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gr00t.data import rotation
from gr00t.data.embodiment import EEF_FORMAT_DIMS, ActionGroup, EmbodimentConfig, load_embodiment

STAT_FIELDS = ("mean", "std", "min", "max", "q01", "q99")
_MODE_FIELDS = {"min_max": ("min", "max"), "percentile": ("q01", "q99"), "mean_std": ("mean", "std")}


# ----------------------------------------------------------------------------------------------
# Transforms, each with its inverse
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Normalize:
    """Per-key normalisation. `low`/`high` are (min, max), (q01, q99) or (mean, std) by mode.

    Parameters have shape [D] (plain stats) or [H, D] (relative stats per horizon step) and
    broadcast over any leading batch dimensions of the values.
    """

    key: str
    mode: str
    low: np.ndarray
    high: np.ndarray

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "mean_std":
            return (x - self.low) / self._std()
        span = self.high - self.low
        live = span > 0
        y = np.where(live, 2.0 * (x - self.low) / np.where(live, span, 1.0) - 1.0, 0.0)
        return np.clip(y, -1.0, 1.0)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        if self.mode == "mean_std":
            return y * self._std() + self.low
        y = np.clip(y, -1.0, 1.0)
        return (y + 1.0) / 2.0 * (self.high - self.low) + self.low

    def _std(self) -> np.ndarray:
        return np.where(self.high < 1e-8, 1.0, self.high)


def sincos_forward(x: np.ndarray) -> np.ndarray:
    """[..., D] -> [..., 2D] as [sin x, cos x]. Not invertible in general (angles wrap)."""
    return np.concatenate([np.sin(x), np.cos(x)], axis=-1)


def to_relative(action: np.ndarray, reference: np.ndarray, group: ActionGroup) -> np.ndarray:
    """Absolute action chunk [..., H, D] -> relative to the reference state frame [..., D_ref]."""
    ref = reference[..., None, :]
    if group.type == "joint":
        return action - ref
    assert group.format is not None
    return rotation.relative_pose(ref, action, group.format, group.reference_format)


def to_absolute(relative: np.ndarray, reference: np.ndarray, group: ActionGroup) -> np.ndarray:
    """Inverse of `to_relative`: add the reference back, or compose T_ref @ T_rel for eef groups."""
    ref = reference[..., None, :]
    if group.type == "joint":
        return relative + ref
    assert group.format is not None
    return rotation.compose_pose(ref, relative, group.format, group.reference_format)


# ----------------------------------------------------------------------------------------------
# The processor
# ----------------------------------------------------------------------------------------------


def _as_array(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not numeric: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: contains NaN or infinity")
    return arr


class StateActionProcessor:
    """Encode state/action for the model and decode predicted actions, for one embodiment."""

    def __init__(
        self,
        embodiment: EmbodimentConfig | str,
        stats: Mapping[str, Mapping[str, Mapping[str, Any]]],
        relative_stats: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        max_state_dim: int,
        max_action_dim: int,
        max_action_horizon: int,
        apply_sincos: bool = False,
        use_relative_action: bool = False,
    ):
        self.embodiment = load_embodiment(embodiment)
        self.max_state_dim = int(max_state_dim)
        self.max_action_dim = int(max_action_dim)
        self.max_action_horizon = int(max_action_horizon)
        self.apply_sincos = bool(apply_sincos)
        self.use_relative_action = bool(use_relative_action)
        self._stats = stats
        self._relative_stats = relative_stats or {}
        emb = self.embodiment
        if emb.action_horizon > self.max_action_horizon:
            raise ValueError(
                f"embodiment {emb.tag!r} ({emb.source}) predicts {emb.action_horizon} action steps but "
                f"max_action_horizon is {self.max_action_horizon}"
            )

        # ---- state: per key either sin/cos or a normaliser -----------------------------------
        self.sincos_keys = tuple(k for k in emb.state.keys if self.apply_sincos and k in emb.state.sin_cos)
        self.state_dims: dict[str, int] = {}
        self._state_norm: dict[str, Normalize] = {}
        width = 0
        for key in emb.state.keys:
            if key in self.sincos_keys:
                self.state_dims[key] = self._stat_dim("state", key)
                width += 2 * self.state_dims[key]
            else:
                norm = self._normalizer("state", key, emb.state.mode(key))
                self._state_norm[key] = norm
                self.state_dims[key] = norm.low.shape[-1]
                width += self.state_dims[key]
            if width > self.max_state_dim:
                raise ValueError(
                    f"state key {key!r} of embodiment {emb.tag!r} brings the encoded state width to {width}, "
                    f"above max_state_dim={self.max_state_dim}"
                )
        self.state_width = width

        # ---- action: per group an optional relative transform, then a normaliser -------------
        self.action_dims: dict[str, int] = {}
        self._action_norm: dict[str, Normalize] = {}
        width = 0
        for group in emb.action.groups:
            relative = self.use_relative_action and group.is_relative
            norm = (
                self._relative_normalizer(group)
                if relative
                else self._normalizer("action", group.key, group.normalization)
            )
            dim = norm.low.shape[-1]
            self._check_group_dims(group, dim)
            self._action_norm[group.key] = norm
            self.action_dims[group.key] = dim
            width += dim
            if width > self.max_action_dim:
                raise ValueError(
                    f"action key {group.key!r} of embodiment {emb.tag!r} brings the action width to {width}, "
                    f"above max_action_dim={self.max_action_dim}"
                )
        self.action_width = width

    # ---- construction helpers -----------------------------------------------------------------

    def _stat_entry(self, modality: str, key: str) -> Mapping[str, Any]:
        section = self._stats.get(modality) if isinstance(self._stats, Mapping) else None
        if not isinstance(section, Mapping) or key not in section:
            have = sorted(section) if isinstance(section, Mapping) else []
            raise ValueError(
                f"missing statistics for {modality} key {key!r} (embodiment {self.embodiment.tag!r}); "
                f"stats have {modality} keys {have}. Run `gr00t-stats <dataset> --embodiment {self.embodiment.name}`."
            )
        return section[key]

    def _stat_dim(self, modality: str, key: str) -> int:
        entry = self._stat_entry(modality, key)
        field = next((f for f in STAT_FIELDS if f in entry), None)
        if field is None:
            raise ValueError(f"statistics for {modality} key {key!r} hold none of {STAT_FIELDS}")
        return int(np.asarray(entry[field]).shape[-1])

    def _fields(
        self, entry: Mapping[str, Any], fields: tuple[str, ...], where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        missing = [f for f in fields if f not in entry]
        if missing:
            raise ValueError(f"{where}: missing statistics {missing} (have {sorted(entry)})")
        low, high = (_as_array(entry[f], f"{where}.{f}") for f in fields)
        if low.shape != high.shape or low.ndim == 0:
            raise ValueError(
                f"{where}: {fields[0]} shape {low.shape} and {fields[1]} shape {high.shape} differ"
            )
        return low, high

    def _normalizer(self, modality: str, key: str, mode: str) -> Normalize:
        entry = self._stat_entry(modality, key)
        low, high = self._fields(entry, _MODE_FIELDS[mode], f"{modality} key {key!r}")
        if low.ndim != 1:
            raise ValueError(f"{modality} key {key!r}: expected 1-D statistics, got shape {low.shape}")
        return Normalize(key, mode, low, high)

    def _relative_normalizer(self, group: ActionGroup) -> Normalize:
        horizon = self.embodiment.action_horizon
        if group.key not in self._relative_stats:
            raise ValueError(
                f"missing relative statistics for action key {group.key!r} (embodiment {self.embodiment.tag!r}, "
                f"relative group with use_relative_action on); have {sorted(self._relative_stats)}. "
                f"Run `gr00t-stats <dataset> --embodiment {self.embodiment.name}`."
            )
        low, high = self._fields(
            self._relative_stats[group.key],
            _MODE_FIELDS[group.normalization],
            f"relative action key {group.key!r}",
        )
        if low.ndim != 2 or low.shape[0] != horizon:
            got = low.shape[0] if low.ndim == 2 else f"shape {low.shape}"
            raise ValueError(
                f"relative statistics for action key {group.key!r} have horizon {got}, but embodiment "
                f"{self.embodiment.tag!r} ({self.embodiment.source}) uses horizon {horizon}; recompute them with "
                f"`gr00t-stats <dataset> --embodiment {self.embodiment.name}`"
            )
        return Normalize(group.key, group.normalization, low, high)

    def _check_group_dims(self, group: ActionGroup, dim: int) -> None:
        if group.type == "eef":
            assert group.format is not None
            if dim != EEF_FORMAT_DIMS[group.format]:
                raise ValueError(
                    f"action key {group.key!r}: format {group.format} needs {EEF_FORMAT_DIMS[group.format]} dims, "
                    f"statistics have {dim}"
                )
        if not (group.is_relative and self.use_relative_action):
            return
        ref = group.reference_key
        ref_dim = self._stat_dim("state", ref)
        want = EEF_FORMAT_DIMS[group.reference_format] if group.type == "eef" else dim  # type: ignore[index]
        if ref_dim != want:
            raise ValueError(
                f"action key {group.key!r} is relative to state key {ref!r}, which has {ref_dim} dims; expected {want}"
            )

    # ---- public API -----------------------------------------------------------------------------

    @property
    def action_horizon(self) -> int:
        return self.embodiment.action_horizon

    def _get(self, values: Mapping[str, Any], key: str, modality: str, dim: int) -> np.ndarray:
        if key not in values:
            raise ValueError(f"{modality} key {key!r} missing from the input; got keys {sorted(values)}")
        arr = _as_array(values[key], f"{modality} key {key!r}")
        if arr.ndim < 2 or arr.shape[-1] != dim:
            raise ValueError(f"{modality} key {key!r}: expected shape [..., T, {dim}], got {arr.shape}")
        return arr

    def encode_state(self, state: Mapping[str, Any]) -> tuple[np.ndarray, int]:
        """State dict key -> [..., T, D] -> (float32 [..., T, max_state_dim], real encoded width)."""
        parts = []
        for key in self.embodiment.state.keys:
            x = self._get(state, key, "state", self.state_dims[key])
            parts.append(sincos_forward(x) if key in self.sincos_keys else self._state_norm[key].forward(x))
        return self._pad(np.concatenate(parts, axis=-1), self.max_state_dim), self.state_width

    def _reference(self, state: Mapping[str, Any] | None, group: ActionGroup) -> np.ndarray:
        if state is None:
            raise ValueError(f"action key {group.key!r} is relative: the raw state dict is required")
        return self._get(state, group.reference_key, "state", self._stat_dim("state", group.reference_key))[
            ..., -1, :
        ]

    def encode_action(
        self, action: Mapping[str, Any], state: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Absolute action dict key -> [..., H, D] (+ raw state for relative groups) ->
        (float32 [..., max_action_horizon, max_action_dim], float32 action_mask of the same shape)."""
        horizon = self.action_horizon
        parts = []
        for group in self.embodiment.action.groups:
            a = self._get(action, group.key, "action", self.action_dims[group.key])
            if a.shape[-2] != horizon:
                raise ValueError(f"action key {group.key!r}: expected {horizon} steps, got {a.shape[-2]}")
            if self.use_relative_action and group.is_relative:
                a = to_relative(a, self._reference(state, group), group)
            parts.append(self._action_norm[group.key].forward(a))
        packed = np.concatenate(parts, axis=-1)
        lead = packed.shape[:-2]
        out = np.zeros(lead + (self.max_action_horizon, self.max_action_dim), dtype=np.float32)
        out[..., :horizon, : self.action_width] = packed
        mask = np.zeros_like(out)
        mask[..., :horizon, : self.action_width] = 1.0
        return out, mask

    def action_mask(self) -> np.ndarray:
        """float32 [max_action_horizon, max_action_dim]: 1 on real steps x real dims."""
        mask = np.zeros((self.max_action_horizon, self.max_action_dim), dtype=np.float32)
        mask[: self.action_horizon, : self.action_width] = 1.0
        return mask

    def decode_action(self, action: Any, state: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Model output [..., H', A'] (H' >= horizon, A' >= action width, normalised) -> absolute
        action dict key -> float32 [..., horizon, D]. `state` is the raw state dict (needed for
        relative groups), with the same leading batch dimensions."""
        arr = _as_array(action, "predicted action")
        if arr.ndim < 2 or arr.shape[-2] < self.action_horizon or arr.shape[-1] < self.action_width:
            raise ValueError(
                f"predicted action: expected shape [..., >={self.action_horizon}, >={self.action_width}], got {arr.shape}"
            )
        arr = arr[..., : self.action_horizon, :]
        out: dict[str, np.ndarray] = {}
        start = 0
        for group in self.embodiment.action.groups:
            dim = self.action_dims[group.key]
            a = self._action_norm[group.key].inverse(arr[..., start : start + dim])
            start += dim
            if self.use_relative_action and group.is_relative:
                a = to_absolute(a, self._reference(state, group), group)
            out[group.key] = a.astype(np.float32)
        return out

    @staticmethod
    def _pad(x: np.ndarray, width: int) -> np.ndarray:
        out = np.zeros(x.shape[:-1] + (width,), dtype=np.float32)
        out[..., : x.shape[-1]] = x
        return out

    # ---- persistence (saved with checkpoints, reloaded by the policy) ---------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; `StateActionProcessor.from_dict` rebuilds an equivalent processor."""

        def plain(tree: Any) -> Any:
            if isinstance(tree, Mapping):
                return {k: plain(v) for k, v in tree.items()}
            return np.asarray(tree).tolist()

        return {
            "embodiment": self.embodiment.to_dict(),
            "stats": plain(self._stats),
            "relative_stats": plain(self._relative_stats),
            "max_state_dim": self.max_state_dim,
            "max_action_dim": self.max_action_dim,
            "max_action_horizon": self.max_action_horizon,
            "apply_sincos": self.apply_sincos,
            "use_relative_action": self.use_relative_action,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateActionProcessor:
        emb = EmbodimentConfig.from_dict(data["embodiment"], source="<processor state>")
        return cls(
            emb,
            data["stats"],
            data.get("relative_stats") or None,
            max_state_dim=data["max_state_dim"],
            max_action_dim=data["max_action_dim"],
            max_action_horizon=data["max_action_horizon"],
            apply_sincos=data.get("apply_sincos", False),
            use_relative_action=data.get("use_relative_action", False),
        )
