"""`Gr00tDataset`: one LeRobot dataset + one embodiment → raw samples (SPEC §2.5, ARCHITECTURE.md).

A sample is one step ``t`` of one episode with its windows: video and state at ``t + delta``
(embodiment ``delta_indices``; indices outside the episode are clamped to its first/last frame),
actions at ``t + action delta`` (``t … t+H−1``). Valid steps are those whose action window lies in
the episode: ``0 … len − H`` for the usual ``range(H)``. Samples are numbered episode by episode.

Memory: only the frames a sample needs are decoded, through the reader (`decode_frames`), so
cameras may be mp4 videos (decoders cached per worker process) or LeRobot image features stored in
the parquet rows; numeric columns are read per episode (a few KB–MB) and kept in a small
per-process LRU cache. Nothing scales with the length of an episode's video.

Two ways to read: ``dataset[i]`` decodes one sample (random access, one seek per camera), and
`Gr00tDataset.window` decodes the frames of several consecutive steps in one sorted pass (the
decode-aware training stream, `gr00t.data.window_stream`). `Gr00tDataset.chunks` cuts the valid
steps into the runs that stream reads, starting on keyframes: it learns the videos' keyframe
spacing from the container index of the first episode (`video.keyframe_grid`, nothing decoded).

`MixtureDataset` concatenates datasets (global index = offset + local index, as the
`MixtureSampler` expects) and optionally applies a processor in the worker.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from gr00t.data.embodiment import EmbodimentConfig, load_embodiment
from gr00t.data.sampler import sample_rng

EPISODE_CACHE_BYTES = 64 * 2**20  # numeric columns of recently used episodes, per process
MIN_CHUNK_STEPS = 64  # shortest run of steps `chunks` cuts (rounded up to the keyframe spacing)


@dataclass
class _Episode:
    """Numeric columns of one episode, sliced into the embodiment's groups."""

    index: int
    length: int
    timestamps: np.ndarray  # float64 [L], the frames' timestamps within the episode
    state: dict[str, np.ndarray]  # key -> float32 [L, D]
    action: dict[str, np.ndarray]  # key -> float32 [L, D]
    language: dict[str, list[str]]  # language channel -> one text per frame (usually constant)

    @property
    def nbytes(self) -> int:
        """Approximate memory held (arrays + one reference per frame and language channel)."""
        arrays = [self.timestamps, *self.state.values(), *self.action.values()]
        return sum(a.nbytes for a in arrays) + 8 * self.length * len(self.language)


class Gr00tDataset(Dataset):
    """Map-style dataset of raw samples of one dataset directory for one embodiment.

    Args:
        root: dataset directory (LeRobot v2.x / v3.0 with ``meta/modality.json``).
        embodiment: name, tag, path or `EmbodimentConfig`.
        video_backend: ``"auto"`` (torchcodec, else PyAV), ``"torchcodec"`` or ``"pyav"``.
        episodes: optional subset of episode indices.
        load_video: ``False`` skips decoding (state/action-only uses such as open-loop plots).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        embodiment: str | EmbodimentConfig,
        video_backend: str = "auto",
        episodes: Sequence[int] | None = None,
        load_video: bool = True,
    ) -> None:
        from gr00t.data.lerobot import open_lerobot_dataset
        from gr00t.data.modality import load_modality

        self.root = Path(root)
        self.embodiment = load_embodiment(embodiment)
        self.video_backend = video_backend
        self.load_video = load_video
        self.reader = open_lerobot_dataset(self.root)
        self.modality = load_modality(self.root)
        self.fps = float(self.reader.fps)
        self._check_keys()
        all_eps = list(self.reader.episode_indices)
        if not all_eps:
            raise ValueError(
                f"{self.root}: the dataset has 0 episodes (meta/ lists none); nothing to train on"
            )
        if episodes is not None:
            missing = sorted(set(episodes) - set(all_eps))
            if missing:
                raise ValueError(f"{self.root}: episodes {missing} do not exist (dataset has {len(all_eps)})")
            all_eps = [e for e in all_eps if e in set(episodes)]
        emb = self.embodiment
        self._act_lo = min(emb.action.delta_indices)
        self._act_hi = max(emb.action.delta_indices)
        self.episode_indices: list[int] = []
        self.episode_lengths: list[int] = []
        counts = []
        for ep in all_eps:
            length = int(self.reader.episode_length(ep))
            n = self.num_valid_steps(length)
            if n > 0:
                self.episode_indices.append(ep)
                self.episode_lengths.append(length)
                counts.append(n)
        if not counts:
            raise ValueError(
                f"{self.root}: none of its {len(all_eps)} episodes is long enough for embodiment {emb.tag!r} "
                f"(action window {emb.action.delta_indices[0]}..{emb.action.delta_indices[-1]}, longest episode "
                f"{max(int(self.reader.episode_length(e)) for e in all_eps)} frames)"
            )
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._cache: OrderedDict[tuple[int, int], _Episode] = OrderedDict()
        self._cache_bytes = 0
        self._keyframes: tuple[int, int] | None = None

    # ---- index bookkeeping ----------------------------------------------------------------------
    def num_valid_steps(self, length: int) -> int:
        """Number of valid steps t of an episode of ``length`` frames."""
        lo = max(0, -self._act_lo)
        hi = length - 1 - self._act_hi
        return max(0, hi - lo + 1)

    def first_valid_step(self) -> int:
        return max(0, -self._act_lo)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Sample index → (episode_index, step t)."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {self.root} ({len(self)} samples)")
        pos = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.episode_indices[pos], int(index - self._starts[pos]) + self.first_valid_step()

    # ---- reading ------------------------------------------------------------------------------
    def _check_keys(self) -> None:
        emb, mod = self.embodiment, self.modality
        for section, keys in (
            ("state", emb.state.keys),
            ("action", emb.action.keys),
            ("video", emb.video.keys),
        ):
            have = _section(mod, section)
            missing = [k for k in keys if k not in have]
            if missing:
                raise KeyError(
                    f"{self.root}/meta/modality.json: {section} keys {missing} required by embodiment "
                    f"{emb.tag!r} ({emb.source}) are missing; it has {sorted(have)}"
                )
        self._language_columns()

    def _episode(self, episode: int) -> _Episode:
        key = (os.getpid(), episode)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        emb = self.embodiment
        state_slices = {k: _slice(self.modality, "state", k) for k in emb.state.keys}
        action_slices = {k: _slice(self.modality, "action", k) for k in emb.action.keys}
        numeric = sorted({c for c, _, _ in state_slices.values()} | {c for c, _, _ in action_slices.values()})
        has_ts = "timestamp" in self.reader.features
        lang = self._language_columns()
        columns = numeric + (["timestamp"] if has_ts else []) + sorted({c for _, _, c in lang})
        table = self.reader.episode_data(episode, columns)
        arrays = {c: _matrix(table[c], self.root, c) for c in numeric}
        length = int(self.reader.episode_length(episode))
        timestamps = table["timestamp"].reshape(length, -1)[:, 0] if has_ts else np.arange(length) / self.fps
        language = {
            key: self.modality.annotation_text(name, table[column], self.reader.tasks, episode)
            for key, name, column in lang
        }
        ep = _Episode(
            index=episode,
            length=length,
            timestamps=np.asarray(timestamps, dtype=np.float64),
            state={k: arrays[c][:, a:b].astype(np.float32) for k, (c, a, b) in state_slices.items()},
            action={k: arrays[c][:, a:b].astype(np.float32) for k, (c, a, b) in action_slices.items()},
            language=language,
        )
        self._cache[key] = ep
        self._cache_bytes += ep.nbytes
        while self._cache_bytes > EPISODE_CACHE_BYTES and len(self._cache) > 1:
            self._cache_bytes -= self._cache.popitem(last=False)[1].nbytes
        return ep

    def _language_columns(self) -> list[tuple[str, str, str]]:
        """(language key, annotation name, parquet column) of the embodiment's language channels: the
        first key alone unless the embodiment combines several (`gr00t.data.language`)."""
        language = self.embodiment.language
        out = []
        for key in language.keys if language.mode != "first" else language.keys[:1]:
            name = key[len("annotation.") :] if key.startswith("annotation.") else key
            annotations = _section(self.modality, "annotation")
            if name not in annotations:
                raise KeyError(
                    f"{self.root}/meta/modality.json: language key {key!r} of embodiment {self.embodiment.tag!r} "
                    f"needs annotation {name!r}; the file has annotations {sorted(annotations)}"
                )
            out.append((key, name, str(_get(annotations[name], "original_key"))))
        return out

    def _frames(self, ep: _Episode, view: str, rows: np.ndarray) -> np.ndarray:
        # The reader knows whether the camera is an mp4 video or an image feature in the parquet rows.
        original = _video_key(self.modality, view)
        return self.reader.decode_frames(ep.index, original, rows, backend=self.video_backend)

    def sample(self, episode: int, step: int, with_video: bool | None = None) -> dict[str, Any]:
        """The raw sample at (episode, step)."""
        ep = self._episode(episode)
        emb = self.embodiment
        clamp = lambda deltas: np.clip(step + np.asarray(deltas), 0, ep.length - 1)  # noqa: E731
        state_rows, video_rows, action_rows = (
            clamp(emb.state.delta_indices),
            clamp(emb.video.delta_indices),
            step + np.asarray(emb.action.delta_indices),
        )
        out: dict[str, Any] = {
            "video": {},
            "state": {k: v[state_rows] for k, v in ep.state.items()},
            "action": {k: v[action_rows] for k, v in ep.action.items()},
            "language": _language_at(ep.language, step),
            "embodiment": emb.tag,
            "episode_index": int(episode),
            "step": int(step),
        }
        if self.load_video if with_video is None else with_video:
            out["video"] = {view: self._frames(ep, view, video_rows) for view in emb.video.keys}
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.sample(*self.locate(int(index)))

    # ---- windows (decode-aware access) ------------------------------------------------------------
    def window(self, episode: int, first_step: int, num_steps: int, slot: int = 0) -> list[dict[str, Any]]:
        """Raw samples of steps ``first_step … first_step+num_steps−1`` of an episode, equal to
        ``sample(episode, step)`` each; every camera's needed frames are decoded in one sorted pass by
        decoder ``slot`` of its file, which stays positioned for the window that follows."""
        ep = self._episode(episode)
        emb = self.embodiment
        rows = np.clip(
            np.arange(first_step, first_step + num_steps)[:, None] + np.asarray(emb.video.delta_indices),
            0,
            ep.length - 1,
        )
        needed, where = np.unique(rows, return_inverse=True)
        where = where.reshape(rows.shape)
        frames = {}
        if self.load_video:
            for view in emb.video.keys:
                original = _video_key(self.modality, view)
                frames[view] = self.reader.decode_frames(
                    ep.index, original, needed, backend=self.video_backend, slot=slot
                )
        out = []
        for k in range(num_steps):
            s = self.sample(episode, first_step + k, with_video=False)
            lo = int(where[k, 0])
            if np.array_equal(where[k], np.arange(lo, lo + where.shape[1])):  # consecutive rows: views
                s["video"] = {view: f[lo : lo + where.shape[1]] for view, f in frames.items()}
            else:
                s["video"] = {view: f[where[k]] for view, f in frames.items()}
            out.append(s)
        return out

    def keyframe_layout(self) -> tuple[int, int]:
        """`(spacing, first)` of the cameras' keyframes, from the first episode's container index:
        the largest spacing over the cameras and the first camera's grid (`LeRobotReader.keyframe_layout`).
        ``(1, 0)`` without video."""
        if self._keyframes is None:
            spacing, first = 1, 0
            if self.load_video and self.embodiment.video.keys:
                ep = self.episode_indices[0]
                layouts = [
                    self.reader.keyframe_layout(ep, _video_key(self.modality, v), backend=self.video_backend)
                    for v in self.embodiment.video.keys
                ]
                spacing, first = max(s for s, _ in layouts), layouts[0][1]
            self._keyframes = (spacing, first)
        return self._keyframes

    def chunks(self, min_steps: int = MIN_CHUNK_STEPS) -> np.ndarray:
        """The valid steps cut into runs for decode-aware reading: int64 ``[n, 4]`` rows of
        ``(episode, first step, steps, sample index of the first step)``, covering every sample once.

        Runs are ``min_steps`` rounded up to a multiple of the keyframe spacing ``g`` and cut where the
        first frame a step needs falls on the keyframe grid, so reading a run from its start never decodes
        frames before it. An episode's last run shorter than ``min_steps`` joins the run before it (read
        forward, it costs nothing more; on its own it would cost a decoder open and a seek per camera).
        The grid is the first episode's, shifted by each episode's start inside its file (LeRobot v3
        files hold many episodes); a video that breaks the pattern only costs time.
        """
        spacing, first = self.keyframe_layout()
        length = spacing * -(-max(1, int(min_steps)) // spacing)
        lead = min(self.embodiment.video.delta_indices) if self.embodiment.video.keys else 0
        rows = []
        for pos, (ep, ep_len) in enumerate(zip(self.episode_indices, self.episode_lengths)):
            lo, n = self.first_valid_step(), self.num_valid_steps(ep_len)
            phase = (first + self._episode_shift(ep)) % spacing
            cuts = np.arange(phase - lead, lo + n, length)
            starts = np.unique(np.concatenate([[lo], cuts[(cuts > lo) & (cuts < lo + n)]]))
            if len(starts) > 1 and lo + n - starts[-1] < min_steps:
                starts = starts[:-1]
            ends = np.append(starts[1:], lo + n)
            index = int(self._starts[pos]) + starts - lo
            rows.append(np.column_stack([np.full(len(starts), ep), starts, ends - starts, index]))
        return np.concatenate(rows).astype(np.int64)

    def _episode_shift(self, episode: int) -> int:
        """Frames between the first episode's and this episode's start inside their mp4 files."""
        if not (self.load_video and self.embodiment.video.keys):
            return 0
        key = _video_key(self.modality, self.embodiment.video.keys[0])
        if key not in self.reader.video_keys:
            return 0
        first = self.reader.video_location(self.episode_indices[0], key)[1]
        return round((float(first) - float(self.reader.video_location(episode, key)[1])) * self.fps)

    def video_file(self, episode: int) -> str:
        """Identifies the mp4 file of the episode's first camera (episodes sharing a file share it)."""
        keys = self.embodiment.video.keys
        key = _video_key(self.modality, keys[0]) if keys else None
        if key is None or key not in self.reader.video_keys:
            return f"episode-{episode}"
        return str(self.reader.video_location(episode, key)[0])


class MixtureDataset(Dataset):
    """Concatenation of datasets (global index = offset + local index), optionally processed.

    ``transform`` (e.g. a `Gr00tProcessor`) runs in the worker with ``rng=sample_rng(index, seed)``:
    for the `SampleIndex` a `MixtureSampler` yields, a generator keyed by the sample's
    (sampler seed, epoch, position) — so augmentation is identical after a resume and whatever the
    number of workers; for a plain ``int`` index, one keyed by (``seed``, index).
    """

    def __init__(
        self, datasets: Sequence[Gr00tDataset], transform: Callable[..., Any] | None = None, seed: int = 0
    ) -> None:
        if not datasets:
            raise ValueError("MixtureDataset needs at least one dataset")
        self.datasets = list(datasets)
        self.transform = transform
        self.seed = int(seed)
        self.sizes = [len(d) for d in self.datasets]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @classmethod
    def from_mixture(
        cls,
        mixture: Any,
        transform: Callable[..., Any] | None = None,
        video_backend: str = "auto",
        seed: int = 0,
    ) -> MixtureDataset:
        """One `Gr00tDataset` per entry of a `gr00t.data.mixture.Mixture`, in order; pair it with
        ``MixtureSampler(dataset.sizes, weights=mixture.weights, ...)``."""
        datasets = [Gr00tDataset(e.path, e.embodiment, video_backend=video_backend) for e in mixture.entries]
        return cls(datasets, transform, seed=seed)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def raw(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range ({len(self)} samples)")
        i = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.datasets[i][int(index - self.offsets[i])]

    def __getitem__(self, index: int) -> Any:
        sample = self.raw(int(index))
        if self.transform is None:
            return sample
        return self.transform(sample, rng=sample_rng(index, self.seed))


# ---- modality helpers ---------------------------------------------------------------------------


def _language_at(language: Mapping[str, list[str]], step: int) -> str | dict[str, str]:
    """The instruction of one frame: a string for one channel, ``{key: text}`` for several (the
    processor combines them, `gr00t.data.language`)."""
    if len(language) == 1:
        return next(iter(language.values()))[step]
    return {key: texts[step] for key, texts in language.items()}


def _section(modality: Any, section: str) -> Mapping[str, Any]:
    value = getattr(modality, section, None)
    if value is None and isinstance(modality, Mapping):
        value = modality.get(section)
    return value or {}


def _get(spec: Any, name: str, default: Any = None) -> Any:
    return spec.get(name, default) if isinstance(spec, Mapping) else getattr(spec, name, default)


def _slice(modality: Any, section: str, key: str) -> tuple[str, int, int]:
    spec = _section(modality, section)[key]
    column = _get(spec, "original_key") or ("observation.state" if section == "state" else "action")
    return str(column), int(_get(spec, "start")), int(_get(spec, "end"))


def _video_key(modality: Any, view: str) -> str:
    spec = _section(modality, "video")[view]
    return str(_get(spec, "original_key") or view)


def _matrix(values: Any, root: Path, column: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.stack([np.asarray(v, dtype=np.float64) for v in arr])
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{root}: column {column!r} has shape {arr.shape}, expected [frames, dims]")
    return arr.astype(np.float64)
