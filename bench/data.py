"""Data pipeline throughput: model-ready samples/s per worker process vs the raw decode rate.

Generates its own LeRobot v2.1 datasets (2 cameras 256×256, state/action 44-dim, h264 and AV1,
short and long episodes) and prints, per codec:

* random access: model-ready samples/s (dataset + processor, one process, one thread) and the raw
  decode rate of exactly the same frames with the same decoder, measured interleaved in chunks so
  that load on a shared machine hits both alike, and their ratio (target >= 60 %); once with the
  default torch Eagle resize and once with the bit-exact PIL one (``vlm.resize_backend=pil``);
* peak RSS of a fresh worker process reading samples from short vs long episodes;
* the sequential decode rate (every frame in order) and the samples/s it would allow;
* segment mode: samples/s, as a fraction of that sequential limit, and distinct episodes per batch.

Usage: python bench/data.py [--workdir DIR] [--samples N] [--codecs h264 av1] [--parts random rss ...]
                            [--eagle-resize pil torch]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from gr00t.data.dataset import Gr00tDataset  # noqa: E402
from gr00t.data.demo import BOOKKEEPING_COLUMNS  # noqa: E402
from gr00t.data.segment_stream import SegmentStream  # noqa: E402
from gr00t.data.video import clear_decoder_cache, decode_frames, decode_segment  # noqa: E402
from gr00t.data.video_encode import encode_video  # noqa: E402

FPS = 30
SIZE = 256
DIM = 44
HORIZON = 16
VIEWS = ("front", "wrist")
TASK = "move the object to the goal"

EMBODIMENT = {
    "tag": "new_embodiment",
    "projector_index": 10,
    "video": {"keys": list(VIEWS), "delta_indices": [0]},
    "state": {"keys": ["body"], "delta_indices": [0]},
    "action": {"horizon": HORIZON, "groups": [{"key": "body", "rep": "relative", "type": "joint"}]},
    "language": {"keys": ["annotation.human.task_description"], "delta_indices": [0]},
}


# ---------------------------------------------------------------------------- dataset generation
def _frames(episode: int, length: int, view: int):
    """Moving textured frames (so that the codec has real work), one at a time."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    rng = np.random.default_rng(episode * 10 + view)
    texture = rng.integers(0, 64, size=(SIZE // 8, SIZE // 8, 3)).repeat(8, 0).repeat(8, 1).astype(np.float32)
    for i in range(length):
        phase = 0.05 * i + episode + view
        base = 127 + 100 * np.sin(xx / 23.0 + phase)[..., None] * np.cos(yy / 31.0 - phase)[..., None]
        cx, cy = SIZE / 2 + 80 * np.sin(phase), SIZE / 2 + 80 * np.cos(0.7 * phase)
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < 30**2)[..., None] * np.array([90, -60, 40], np.float32)
        yield np.clip(base + blob + np.roll(texture, i, axis=1), 0, 255).astype(np.uint8)


def write_bench_dataset(root: Path, codec: str, lengths: list[int]) -> Path:
    """A LeRobot v2.1 dataset with 44-dim state/action and two 256×256 cameras."""
    if (root / "meta/info.json").is_file():
        return root
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    info = {
        "codebase_version": "v2.1",
        "robot_type": "bench",
        "total_episodes": len(lengths),
        "total_frames": int(sum(lengths)),
        "total_tasks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            **{
                f"observation.images.{v}": {
                    "dtype": "video",
                    "shape": [SIZE, SIZE, 3],
                    "names": ["height", "width", "channels"],
                    "info": {"video.fps": FPS, "video.codec": codec},
                }
                for v in VIEWS
            },
            "observation.state": {"dtype": "float32", "shape": [DIM], "names": None},
            "action": {"dtype": "float32", "shape": [DIM], "names": None},
            **{k: {"dtype": t, "shape": [1], "names": None} for k, t in BOOKKEEPING_COLUMNS},
        },
    }
    first = 0
    episodes = []
    for ep, length in enumerate(lengths):
        rng = np.random.default_rng(ep)
        traj = np.cumsum(rng.normal(0, 0.02, size=(length + 1, DIM)), axis=0).astype(np.float32)
        table = pa.table(
            {
                "observation.state": pa.array(list(traj[:-1]), type=pa.list_(pa.float32())),
                "action": pa.array(list(traj[1:]), type=pa.list_(pa.float32())),
                "timestamp": pa.array(np.arange(length, dtype=np.float32) / FPS),
                "frame_index": pa.array(np.arange(length, dtype=np.int64)),
                "episode_index": pa.array(np.full(length, ep, dtype=np.int64)),
                "index": pa.array(np.arange(first, first + length, dtype=np.int64)),
                "task_index": pa.array(np.zeros(length, dtype=np.int64)),
                "annotation.human.task_description": pa.array(np.zeros(length, dtype=np.int64)),
            }
        )
        path = tmp / info["data_path"].format(episode_chunk=0, episode_index=ep)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        for v, view in enumerate(VIEWS):
            vpath = tmp / info["video_path"].format(
                episode_chunk=0, video_key=f"observation.images.{view}", episode_index=ep
            )
            encode_video(vpath, _frames(ep, length, v), FPS, codec=codec, gop=2, crf=30)
        episodes.append({"episode_index": ep, "tasks": [TASK], "length": length})
        first += length
    meta = tmp / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "info.json").write_text(json.dumps(info, indent=2))
    (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    (meta / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": TASK}) + "\n")
    (meta / "modality.json").write_text(
        json.dumps(
            {
                "state": {"body": {"start": 0, "end": DIM}},
                "action": {"body": {"start": 0, "end": DIM, "absolute": False}},
                "video": {v: {"original_key": f"observation.images.{v}"} for v in VIEWS},
                "annotation": {"human.task_description": {}},
            },
            indent=2,
        )
    )
    from gr00t.data.stats import compute_and_write

    compute_and_write(tmp, Gr00tDatasetEmbodiment())
    os.replace(tmp, root)
    return root


def Gr00tDatasetEmbodiment():  # noqa: N802 - a constructor-like helper
    from gr00t.data.embodiment import EmbodimentConfig

    return EmbodimentConfig.from_dict(EMBODIMENT, source="bench/data.py")


def make_processor(root: Path, resize_backend: str = "torch"):
    from gr00t.data.processor import Gr00tProcessor
    from gr00t.data.stats import load_stats
    from gr00t.data.tokenizer import build_tiny_tokenizer
    from gr00t.model.presets import load_preset

    emb = Gr00tDatasetEmbodiment()
    config = load_preset("n16_tiny", max_state_dim=64, max_action_dim=64, use_relative_action=True)
    stats, rel = load_stats(root, emb)
    return Gr00tProcessor.from_config(
        config,
        [(emb, stats, rel)],
        build_tiny_tokenizer(),
        training=True,
        vlm_overrides={"resize_backend": resize_backend},
    )


# ---------------------------------------------------------------------------- measurements
def random_access(
    root: Path, n: int, seed: int = 0, rounds: int = 10, backends: tuple[str, ...] = ("pil",)
) -> dict:
    """Model-ready vs raw-decode rate on the same random samples, per Eagle resize backend.

    The raw decode and one full pipeline per backend are measured interleaved in ``rounds`` chunks
    (rotating which goes first) so that load changes on a shared machine hit all alike; each ratio
    is of the summed times.
    """
    ds = Gr00tDataset(root, Gr00tDatasetEmbodiment())
    procs = {b: make_processor(root, b) for b in backends}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ds), size=n)
    for proc in procs.values():  # warm-up: open decoders, tokenizer caches
        proc(ds[int(idx[0])], rng=0)
    plan = []  # the same frames with the same decoder, nothing else
    for i in idx:
        ep, step = ds.locate(int(i))
        e = ds._episode(ep)
        plan.append(
            [(ds.reader.video_location(ep, f"observation.images.{v}"), e.timestamps[step]) for v in VIEWS]
        )

    def full(proc, sel: np.ndarray) -> float:
        t0 = time.perf_counter()
        for i in idx[sel]:
            proc(ds[int(i)], rng=rng)
        return time.perf_counter() - t0

    def raw(sel: np.ndarray) -> float:
        t0 = time.perf_counter()
        for j in sel:
            for (path, offset), ts in plan[j]:
                decode_frames(path, [offset + ts])
        return time.perf_counter() - t0

    jobs = [("raw", raw)] + [(b, lambda sel, p=p: full(p, sel)) for b, p in procs.items()]
    totals = dict.fromkeys([name for name, _ in jobs], 0.0)
    for r, sel in enumerate(np.array_split(np.arange(n), rounds)):
        for name, job in jobs[r % len(jobs) :] + jobs[: r % len(jobs)]:
            totals[name] += job(sel)
    out = {"raw_decode_samples_per_s": n / totals["raw"]}
    for b in backends:
        out[b] = {"model_ready_samples_per_s": n / totals[b], "ratio": totals["raw"] / totals[b]}
    return out


def sequential(root: Path, chunk: int = 64) -> dict:
    ds = Gr00tDataset(root, Gr00tDatasetEmbodiment())
    ep = ds.episode_indices[0]
    length = ds.episode_lengths[0]
    frames = 0
    t0 = time.perf_counter()
    for view in VIEWS:
        path, offset = ds.reader.video_location(ep, f"observation.images.{view}")
        for start in range(0, length, chunk):
            k = min(chunk, length - start)
            decode_segment(path, offset + start / FPS, k)
            frames += k
    fps = frames / (time.perf_counter() - t0)
    return {"sequential_frames_per_s": fps, "sequential_limit_samples_per_s": fps / len(VIEWS)}


def segment_mode(root: Path, groups: int = 4, batch_size: int = 32) -> dict:
    """Whole groups (8 segments × 32 steps = 256 samples each), decoding included."""
    ds = Gr00tDataset(root, Gr00tDatasetEmbodiment())
    n = groups * 8 * 32

    def stream(transform=None):
        return iter(
            SegmentStream(
                [ds],
                segment_length=32,
                segments_per_group=8,
                batch_size=batch_size,
                seed=0,
                transform=transform,
            )
        )

    proc = make_processor(root)
    proc(ds[0], rng=0)  # warm-up of the processor only
    it = stream(proc)
    t0 = time.perf_counter()
    for _ in range(n // 2):
        next(it)
    rate = (n // 2) / (time.perf_counter() - t0)
    raw = stream()
    distinct = []
    t0 = time.perf_counter()
    for _ in range(n // batch_size):
        distinct.append(len({next(raw)["episode_index"] for _ in range(batch_size)}))
    raw_rate = n / (time.perf_counter() - t0)
    return {
        "segment_samples_per_s": rate,
        "segment_raw_samples_per_s": raw_rate,
        "distinct_episodes_per_batch": float(np.mean(distinct)),
    }


def _rss_worker(root: str, n: int, queue) -> None:
    ds = Gr00tDataset(root, Gr00tDatasetEmbodiment())
    proc = make_processor(Path(root))
    rng = np.random.default_rng(1)
    for i in rng.integers(0, len(ds), size=n):
        proc(ds[int(i)], rng=rng)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def peak_rss_mb(root: Path, n: int) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_rss_worker, args=(str(root), n, q))
    p.start()
    value = q.get(timeout=600)
    p.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gr00t_bench_data")
    parser.add_argument("--samples", type=int, default=150)
    parser.add_argument("--codecs", nargs="+", default=["h264", "av1"])
    parser.add_argument("--short", type=int, default=150, help="frames per short episode (16 episodes)")
    parser.add_argument("--long", type=int, default=3000, help="frames per long episode (2 episodes)")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["random", "rss", "sequential", "segment"],
        choices=["random", "rss", "sequential", "segment"],
        help="measurements to run",
    )
    parser.add_argument(
        "--eagle-resize",
        nargs="+",
        default=["pil", "torch"],
        choices=["pil", "torch"],
        help="Eagle resize backends measured side by side in the random-access part",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker = one process, one thread
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"bench/data.py: {SIZE}x{SIZE} x {len(VIEWS)} cameras, state/action {DIM}-dim, horizon {HORIZON}, "
        f"{args.samples} samples per measurement, 1 process / 1 thread, video backend auto"
    )
    for codec in args.codecs:
        t0 = time.perf_counter()
        short = write_bench_dataset(args.workdir / f"{codec}_short", codec, [args.short] * 16)
        long = write_bench_dataset(args.workdir / f"{codec}_long", codec, [args.long] * 2)
        print(f"[{codec}] datasets ready in {time.perf_counter() - t0:.0f}s")
        clear_decoder_cache()
        ra = seq = None
        if "random" in args.parts:
            ra = random_access(short, args.samples, backends=tuple(args.eagle_resize))
            for b in args.eagle_resize:
                note = (
                    " (opt-in vlm.resize_backend=pil, bit-exact reference)"
                    if b == "pil"
                    else " (default, within +-2 of PIL)"
                )
                print(
                    f"[{codec}] random access, Eagle resize {b}{note}: model-ready "
                    f"{ra[b]['model_ready_samples_per_s']:.1f} samples/s, raw decode of the same frames "
                    f"{ra['raw_decode_samples_per_s']:.1f} samples/s -> ratio {100 * ra[b]['ratio']:.0f}%"
                )
        if "rss" in args.parts:
            rss_short, rss_long = peak_rss_mb(short, args.samples), peak_rss_mb(long, args.samples)
            print(
                f"[{codec}] peak RSS per worker: short episodes ({args.short} frames) {rss_short:.0f} MB, "
                f"long episodes ({args.long} frames) {rss_long:.0f} MB"
            )
        if "sequential" in args.parts:
            seq = sequential(long)
            line = (
                f"[{codec}] sequential decode: {seq['sequential_frames_per_s']:.0f} frames/s -> limit "
                f"{seq['sequential_limit_samples_per_s']:.1f} samples/s ({len(VIEWS)} views/sample)"
            )
            if ra is not None:
                line += (
                    f"; random-access raw decode is "
                    f"{ra['raw_decode_samples_per_s'] / seq['sequential_limit_samples_per_s']:.2f}x of it"
                )
            print(line)
        if "segment" in args.parts:
            sm = segment_mode(short)
            limit = seq["sequential_limit_samples_per_s"] if seq is not None else float("nan")
            print(
                f"[{codec}] segment mode: {sm['segment_samples_per_s']:.1f} samples/s = "
                f"{100 * sm['segment_samples_per_s'] / limit:.0f}% of the sequential limit "
                f"(decode + windows only: {sm['segment_raw_samples_per_s']:.1f} samples/s = "
                f"{100 * sm['segment_raw_samples_per_s'] / limit:.0f}%), "
                f"{sm['distinct_episodes_per_batch']:.1f} distinct episodes per batch of 32 "
                f"(segments of 32 steps, 8 segments per group)"
            )


if __name__ == "__main__":
    main()
