"""WindowStream on real mp4 video: samples equal random access, DataLoader workers follow the plan and
resume exactly, and the keyframe spacing decides the chunks (g=2 and g=250 videos, decoded frames
counted with the PyAV backend)."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gr00t.data import video
from gr00t.data.collator import Gr00tCollator
from gr00t.data.dataset import MIN_CHUNK_STEPS, Gr00tDataset, MixtureDataset
from gr00t.data.demo import read_frame_code, write_demo_dataset
from gr00t.data.image_transforms import ImageTransformConfig
from gr00t.data.processor import Gr00tProcessor
from gr00t.data.stats import compute_and_write, load_stats
from gr00t.data.tokenizer import build_tiny_tokenizer
from gr00t.data.window_sampler import WindowSampler
from gr00t.data.window_stream import WindowStream
from gr00t.model.batch import Gr00tBatch
from gr00t.model.presets import load_preset

EMB = "new_embodiment"


def stream_of(datasets, transform=None, seed=0, lanes=4, window=4, rank=0, world=1, batch=8, workers=0):
    data = MixtureDataset(datasets, transform=transform)
    sampler = WindowSampler(
        [d.chunks() for d in datasets], seed=seed, lanes=lanes, window=window, rank=rank, world_size=world
    )
    sampler.configure_loader(batch, workers)
    return WindowStream(data, sampler)


def ids(samples) -> list[tuple[int, int]]:
    return [(int(s["episode_index"]), int(s["step"])) for s in samples]


@pytest.mark.parametrize("fixture", ["demo_dataset_v3", "demo_dataset_v21"])
def test_samples_equal_random_access(fixture: str, request: pytest.FixtureRequest) -> None:
    ds = Gr00tDataset(request.getfixturevalue(fixture), EMB)
    it = iter(stream_of([ds], seed=1))
    got = [next(it) for _ in range(70)]
    assert len(set(ids(got))) == 70  # windows of different chunks, no repeats this early
    for s in got[::7]:
        ref = ds.sample(s["episode_index"], s["step"])
        for view in ("front", "wrist"):
            assert np.array_equal(s["video"][view], ref["video"][view])
            assert read_frame_code(s["video"][view][0]) == (s["episode_index"], s["step"])
        for key in ("arm", "gripper"):
            np.testing.assert_array_equal(s["state"][key], ref["state"][key])
            np.testing.assert_array_equal(s["action"][key], ref["action"][key])
        assert s["language"] == ref["language"]


def test_window_with_negative_deltas_copies_per_sample(demo_dataset_v21: Path) -> None:
    data = Gr00tDataset(demo_dataset_v21, EMB).embodiment.to_dict()
    data["video"]["delta_indices"] = [-3, 0]
    ds = Gr00tDataset(demo_dataset_v21, data)
    window = ds.window(2, 0, 6)
    for k, s in enumerate(window):
        assert [read_frame_code(f) for f in s["video"]["front"]] == [(2, max(k - 3, 0)), (2, k)]


@pytest.fixture(scope="module")
def processor(demo_dataset_v3: Path, tmp_path_factory) -> Gr00tProcessor:
    root = tmp_path_factory.mktemp("stats") / "demo"
    shutil.copytree(demo_dataset_v3, root)
    compute_and_write(root, EMB)
    stats, relative = load_stats(root, EMB)
    return Gr00tProcessor.from_config(
        load_preset("n16_tiny"),
        [(EMB, stats, relative)],
        build_tiny_tokenizer(),
        ImageTransformConfig(size=64, rotation_degrees=5.0, brightness=0.2),
        training=True,
        vlm_overrides={"pixel_transport": "uint8"},
    )


def _loader(stream: WindowStream, batch: int, workers: int) -> DataLoader:
    collate = Gr00tCollator(pad_token_id=0)
    return DataLoader(stream, batch_size=batch, num_workers=workers, collate_fn=collate)


def test_workers_resume_exactly_with_augmentation(demo_dataset_v3: Path, processor) -> None:
    ds = Gr00tDataset(demo_dataset_v3, EMB)

    def run(consumed: int, n: int, workers: int) -> list[Gr00tBatch]:
        stream = stream_of([ds], transform=processor, seed=5, batch=6, workers=workers)
        stream.sampler.load_state_dict(stream.sampler.state_dict(consumed=consumed))
        stream.sampler.configure_loader(6, workers)
        it = iter(_loader(stream, 6, workers))
        return [next(it) for _ in range(n)]

    full = run(0, 9, workers=2)
    resumed = run(4 * 6, 5, workers=2)
    for a, b in zip(full[4:], resumed):
        a, b = a.tensors(), b.tensors()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert full[0].backbone.pixel_values.dtype == torch.uint8
    # in-process: the same samples as the plan's single stream, processed identically
    single = run(0, 2, workers=0)
    plan = single[0].tensors()
    again = run(0, 1, workers=0)[0].tensors()
    assert all(torch.equal(plan[k], again[k]) for k in plan)


def test_ranks_and_workers_share_the_data(demo_dataset_v3: Path) -> None:
    ds = Gr00tDataset(demo_dataset_v3, EMB, load_video=False)
    counts: collections.Counter = collections.Counter()
    for rank in range(2):
        stream = stream_of([ds], seed=3, rank=rank, world=2, batch=5, workers=2, lanes=2, window=5)
        loader = DataLoader(stream, batch_size=5, num_workers=2, collate_fn=ids)
        it = iter(loader)
        for _ in range(4 * len(ds) // 10):  # 4 epochs' worth over both ranks
            counts.update(next(it))
    assert len(counts) == len(ds)  # every sample reached
    assert max(counts.values()) <= 8 and min(counts.values()) >= 1


# ---- keyframe spacing: g=2 keeps short chunks, g=250 reads forward from keyframes -------------------
@pytest.fixture(scope="module", params=[("v2.1", 2), ("v2.1", 250), ("v3.0", 250)], ids=str)
def gop_dataset(request, tmp_path_factory) -> tuple[int, Path]:
    """3 episodes of 300 frames; v3.0 packs them into one mp4 per camera, so episodes 1 and 2 start
    between keyframes (file frames 300 and 600 on a grid of 250)."""
    version, gop = request.param
    root = tmp_path_factory.mktemp(f"gop{gop}") / "dataset"
    write_demo_dataset(root, version=version, num_episodes=3, episode_length=300, gop=gop)
    return gop, root


def test_keyframe_spacing_decides_the_chunks(gop_dataset) -> None:
    gop, root = gop_dataset
    ds = Gr00tDataset(root, EMB, video_backend="pyav")
    assert ds.keyframe_layout() == (gop, 0)
    assert Gr00tDataset(root, EMB, video_backend="torchcodec").keyframe_layout() == (gop, 0)
    chunks = ds.chunks()
    assert chunks[:, 2].sum() == len(ds)
    starts = sorted({int(s) for s in chunks[chunks[:, 0] == 0, 1]})
    # cut every 64 steps (g=2) or at each keyframe (g=250); the last 29 / 35 steps, shorter than the
    # 64-step minimum, join the run before them instead of costing a decoder open per camera
    assert starts == (list(range(0, 256, 64)) if gop == 2 else [0])
    assert sorted(int(n) for n in chunks[chunks[:, 0] == 0, 2]) == ([64, 64, 64, 93] if gop == 2 else [285])
    # every chunk after an episode's first starts where the first frame it needs is a keyframe of the file
    key = ds.reader.video_keys[0]
    lead = min(ds.embodiment.video.delta_indices)
    for episode, start, steps, _ in chunks.tolist():
        path, from_ts = ds.reader.video_location(episode, key)
        keyframes = set(video.keyframe_indices(path).tolist())
        if start > ds.first_valid_step():
            assert round(float(from_ts) * ds.fps) + start + lead in keyframes, (episode, start)
        if gop == 250:  # long GOP: whole keyframe intervals, plus a tail shorter than the minimum
            assert steps <= 250 + MIN_CHUNK_STEPS
    if gop == 250:
        assert len(chunks) <= 3 * 3  # <= 2 keyframes per episode + its first step


def test_long_gops_never_decode_from_a_keyframe_per_sample(gop_dataset) -> None:
    """Decoded frames per needed frame, counted in the PyAV backend: the stream decodes each needed
    frame about once on both videos; random access pays the keyframe distance on g=250."""
    gop, root = gop_dataset
    ds = Gr00tDataset(root, EMB, video_backend="pyav")
    video.clear_decoder_cache()
    before = video.pyav_decoded_frames()
    stream = stream_of([ds], seed=0, lanes=3, window=8)
    it = iter(stream)
    for _ in range(24 * 8):
        next(it)
    decoded = video.pyav_decoded_frames() - before
    # What a chunk's first read may cost on top: decoding from the keyframe before its first frame, once
    # per chunk and camera (an episode of a v3.0 file starts between keyframes; x264's scene cut at an
    # episode change moves one camera's grid), plus a few frames of B-frame reordering per seek.
    blocks = stream.sampler.blocks(0, 1)
    firsts = {(p.episode, p.first_step) for _ in range(8) for w in next(blocks).windows for p in w}
    starts = {(int(e), int(s)) for e, s in ds.chunks()[:, :2]}
    lead = min(ds.embodiment.video.delta_indices)
    reads = [(e, s, key) for e, s in firsts & starts for key in ds.reader.video_keys]  # chunks' first reads
    lead_in = 0
    for episode, step, key in reads:
        path, from_ts = ds.reader.video_location(episode, key)
        frame = round(float(from_ts) * ds.fps) + step + lead
        keyframes = video.keyframe_indices(path)
        lead_in += frame - int(keyframes[keyframes <= frame].max())
    if (root / "meta" / "episodes.jsonl").exists():  # v2.1, a file per episode: chunks start on keyframes
        assert lead_in == 0
    needed = 24 * 8 * 2
    assert decoded <= needed + lead_in + 4 * len(reads), (decoded, needed, lead_in)
    assert decoded / needed < 2.0
    video.clear_decoder_cache()
    before = video.pyav_decoded_frames()
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(ds), size=12)
    for i in picks:
        ds[int(i)]
        video.clear_decoder_cache()  # each sample on its own, as a random-access loader meets it
    per_sample = (video.pyav_decoded_frames() - before) / (12 * 2)
    expected = np.mean([ds.locate(int(i))[1] % gop for i in picks])
    if gop == 250:
        assert per_sample > 20 and per_sample >= 0.5 * expected
    else:
        assert per_sample < 4  # short GOP: per-sample access stays cheap
