"""Data loading throughput on realistic video, through the default training loader.

Generates LeRobot v2.1 datasets the way robot data comes: h264 with libx264 defaults (a keyframe
every 250 frames, B-frames) and AV1 with LeRobot's settings (libsvtav1, g=2, crf 30); 20 episodes ×
300 frames, 2 cameras 256², 44-dim state/action, horizon 16 (``--quick``: 8 episodes). Then, per
codec, measured interleaved in rounds (each round runs every path once, in rotating order, so that
load on a shared machine hits all alike):

* ``training loader``: `gr00t.train.loader.build_train_dataloader` exactly as training builds it
  (the default decode-aware sampling, processor, collator), with 0 (in-process), 1 and 2 workers,
  model-ready samples/s;
* ``random access``: the same with ``dataloader_sampling=random`` (one seek per sample), in-process;
* ``raw frames``: the default stream without the processor (decoded windows + state/action), and
  random access without the processor;
* ``decode limit``: every sample of some episodes, only the needed frames, grouped per episode and
  camera, decoded in one sorted pass each — the most any loader can get out of the decoder.

It prints samples/s with ratios (to the decode limit, to NVIDIA's reference loader as measured in
issue 13 on this machine: 101 / 64 samples/s, and 2 workers / 1 worker), the randomness of batches
of 64 (distinct episodes, neighbours from the same episode) against random access, time to the
first batch and per-worker memory with 300- and 3000-frame episodes, and the load average.

Usage: .venv/bin/python bench/data.py [--quick] [--codecs h264 av1] [--rounds N] [--batches N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from gr00t.data.collator import Gr00tCollator  # noqa: E402
from gr00t.data.dataset import Gr00tDataset, MixtureDataset  # noqa: E402
from gr00t.data.demo import BOOKKEEPING_COLUMNS  # noqa: E402
from gr00t.data.sampler import MixtureSampler  # noqa: E402
from gr00t.data.video import clear_decoder_cache, decode_frames  # noqa: E402
from gr00t.data.video_encode import encode_video  # noqa: E402
from gr00t.train.loader import build_train_dataloader, finish_pixel_values, make_sampler  # noqa: E402
from gr00t.train.settings import TrainingSettings  # noqa: E402

FPS = 30
SIZE = 256
DIM = 44
HORIZON = 16
VIEWS = ("front", "wrist")
TASK = "move the object to the goal"
# (codec, keyframe spacing, crf): libx264's defaults, LeRobot's AV1 settings.
ENCODINGS = {"h264": ("h264", 250, 23), "av1": ("av1", 2, 30)}
# NVIDIA's reference N1.6 loader on this machine, 1 pinned core, same datasets (issue 13).
REFERENCE = {"h264": 101.0, "av1": 64.0}
EMBODIMENT = {
    "tag": "new_embodiment",
    "projector_index": 10,
    "video": {"keys": list(VIEWS), "delta_indices": [0]},
    "state": {"keys": ["body"], "delta_indices": [0]},
    "action": {"horizon": HORIZON, "groups": [{"key": "body", "rep": "relative", "type": "joint"}]},
    "language": {"keys": ["annotation.human.task_description"], "delta_indices": [0]},
}


# ---------------------------------------------------------------------------- datasets
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


def write_bench_dataset(root: Path, encoding: str, lengths: list[int]) -> Path:
    """A LeRobot v2.1 dataset with 44-dim state/action and two 256×256 cameras (kept between runs)."""
    if (root / "meta/info.json").is_file():
        return root
    codec, gop, crf = ENCODINGS[encoding]
    root.parent.mkdir(parents=True, exist_ok=True)
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
                f"observation.images.{v}": {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": None}
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
        traj = np.cumsum(np.random.default_rng(ep).normal(0, 0.02, size=(length + 1, DIM)), axis=0)
        traj = traj.astype(np.float32)
        columns = {
            "observation.state": pa.array(list(traj[:-1]), type=pa.list_(pa.float32())),
            "action": pa.array(list(traj[1:]), type=pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(length, dtype=np.float32) / FPS),
            "frame_index": pa.array(np.arange(length, dtype=np.int64)),
            "episode_index": pa.array(np.full(length, ep, dtype=np.int64)),
            "index": pa.array(np.arange(first, first + length, dtype=np.int64)),
            "task_index": pa.array(np.zeros(length, dtype=np.int64)),
            "annotation.human.task_description": pa.array(np.zeros(length, dtype=np.int64)),
        }
        path = tmp / info["data_path"].format(episode_chunk=0, episode_index=ep)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        for v, view in enumerate(VIEWS):
            key = f"observation.images.{view}"
            vpath = tmp / info["video_path"].format(episode_chunk=0, video_key=key, episode_index=ep)
            encode_video(vpath, _frames(ep, length, v), FPS, codec=codec, gop=gop, crf=crf)
        episodes.append({"episode_index": ep, "tasks": [TASK], "length": length})
        first += length
    meta = tmp / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "info.json").write_text(json.dumps(info, indent=2))
    (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    (meta / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": TASK}) + "\n")
    modality = {
        "state": {"body": {"start": 0, "end": DIM}},
        "action": {"body": {"start": 0, "end": DIM, "absolute": False}},
        "video": {v: {"original_key": f"observation.images.{v}"} for v in VIEWS},
        "annotation": {"human.task_description": {}},
    }
    (meta / "modality.json").write_text(json.dumps(modality, indent=2))
    from gr00t.data.stats import compute_and_write

    compute_and_write(tmp, embodiment())
    os.replace(tmp, root)
    return root


def embodiment():
    from gr00t.data.embodiment import EmbodimentConfig

    return EmbodimentConfig.from_dict(EMBODIMENT, source="bench/data.py")


def make_processor(root: Path, resize_backend: str = "torch"):
    from gr00t.data.processor import Gr00tProcessor
    from gr00t.data.stats import load_stats
    from gr00t.data.tokenizer import build_tiny_tokenizer
    from gr00t.model.presets import load_preset

    config = load_preset("n16_tiny", max_state_dim=64, max_action_dim=64, use_relative_action=True)
    stats, rel = load_stats(root, embodiment())
    return Gr00tProcessor.from_config(
        config,
        [(embodiment(), stats, rel)],
        build_tiny_tokenizer(),
        training=True,
        vlm_overrides={"pixel_transport": "uint8", "resize_backend": resize_backend},  # as the recipes do
    )


# ---------------------------------------------------------------------------- the loaders
class Pipeline:
    """The training data path of one dataset, built the way `gr00t.train.build` builds it."""

    def __init__(self, root: Path, batch: int) -> None:
        self.root, self.batch = root, batch
        self.dataset = Gr00tDataset(root, embodiment())
        self.processor = make_processor(root)
        self.pil_processor = make_processor(root, "pil")  # vlm.resize_backend=pil: the bit-exact Eagle resize
        self.collator = Gr00tCollator(pad_token_id=self.processor.tokenizer.pad_token_id)
        self.position = 0  # global draws already read: every run reads fresh samples

    def loader(
        self,
        workers: int,
        sampling: str = "windows",
        processed: bool = True,
        position: int | None = None,
        resize: str = "torch",
    ):
        settings = TrainingSettings(
            per_device_batch_size=self.batch,
            dataloader_num_workers=workers,
            dataloader_sampling=sampling,
            dataloader_pin_memory=False,
            seed=0,
        )
        processor = self.processor if resize == "torch" else self.pil_processor
        data = MixtureDataset([self.dataset], transform=processor if processed else None)
        sampler = make_sampler(data, settings, rank=0, world_size=1)
        if sampling == "windows":
            sampler.consumed = position if position is not None else self.position
        else:
            sampler.load_state_dict(
                sampler.state_dict(consumed=position if position is not None else self.position)
            )
        collate = self.collator if processed else list
        return build_train_dataloader(data, sampler, collate, settings, 0)

    def rate(
        self,
        batches: int,
        workers: int,
        sampling: str = "windows",
        processed: bool = True,
        resize: str = "torch",
    ) -> tuple[float, float]:
        """(wall seconds, CPU seconds of the main process and the workers) for ``batches`` batches in
        steady state: the clocks start once every worker delivered its first blocks (start-up is not
        counted; what the workers' queues hold then they hold in steady state anyway)."""
        loader = self.loader(workers, sampling, processed, resize=resize)
        it = iter(loader)
        for _ in range(2 * max(1, workers)):  # each worker's first block (resuming mid-chunk seeks)
            next(it)
        pids = [w.pid for w in getattr(it, "_workers", [])]
        c0 = time.process_time() + sum(_cpu_seconds(p) for p in pids)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() + sum(_cpu_seconds(p) for p in pids) - c0
        del it
        # the next run starts after what this one read or prefetched, on a block boundary of every stream
        self.position += (batches + 4 * max(workers, 1)) * self.batch
        self.position = -(-self.position // (8 * self.batch)) * 8 * self.batch
        return elapsed, cpu

    def decode_limit(self, episodes: list[int]) -> tuple[float, float, int]:
        """(wall seconds, CPU seconds, samples): decoding the needed frames of every sample of
        ``episodes``, grouped per episode and camera, sorted, in one forward pass each (opening the
        files is not timed)."""
        ds = self.dataset
        clear_decoder_cache()
        seconds, cpu, samples = 0.0, 0.0, 0
        deltas = np.asarray(EMBODIMENT["video"]["delta_indices"])
        for pos in episodes:
            ep, length = ds.episode_indices[pos], ds.episode_lengths[pos]
            steps = np.arange(ds.first_valid_step(), ds.first_valid_step() + ds.num_valid_steps(length))
            rows = np.unique(np.clip(steps[:, None] + deltas, 0, length - 1))
            for view in VIEWS:  # handed out 16 frames at a time by one decoder moving forward
                key = f"observation.images.{view}"
                path, ts = ds.reader.video_location(ep, key)[0], ds.reader.frame_timestamps(ep, rows, key)
                decode_frames(path, ts[:1])
                t0, c0 = time.perf_counter(), time.process_time()
                for k in range(1, len(ts), 16):
                    decode_frames(path, ts[k : k + 16])
                seconds += time.perf_counter() - t0
                cpu += time.process_time() - c0
            samples += len(steps) - 1
        return seconds, cpu, samples


def interleaved(pipe: Pipeline, rounds: int, batches: int, workers: list[int]) -> dict[str, dict[str, float]]:
    """Per path: samples per wall second and per CPU second (all its processes), measured in rotating
    order over ``rounds`` rounds."""
    n_eps = len(pipe.dataset.episode_indices)
    jobs = {
        "decode limit": None,
        "raw frames (windows)": ("windows", False, 0, "torch"),
        "raw frames (random access)": ("random", False, 0, "torch"),
    }
    for w in workers:
        name = f"training loader, {w} worker{'s' if w != 1 else ''}" if w else "training loader, in-process"
        jobs[name] = ("windows", True, w, "torch")
    jobs["training loader, in-process, PIL resize"] = ("windows", True, 0, "pil")
    jobs["random access, in-process"] = ("random", True, 0, "torch")
    seconds = dict.fromkeys(jobs, 0.0)
    cpu = dict.fromkeys(jobs, 0.0)
    samples = dict.fromkeys(jobs, 0)
    names = list(jobs)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            job = jobs[name]
            if job is None:
                eps = [(r * 2 + k) % n_eps for k in range(2)]
                dt, dc, k = pipe.decode_limit(eps)
                seconds[name] += dt
                cpu[name] += dc
                samples[name] += k
            else:
                sampling, processed, w, resize = job
                steps = batches if sampling == "windows" or not processed else max(1, batches // 4)
                dt, dc = pipe.rate(steps, w, sampling, processed, resize)
                seconds[name] += dt
                cpu[name] += dc
                samples[name] += steps * pipe.batch
    return {name: {"wall": samples[name] / seconds[name], "cpu": samples[name] / cpu[name]} for name in names}


def raw_samples(pipe: Pipeline, samples: int) -> list:
    """The first ``samples`` raw samples of the default stream (decoded frames, no processor)."""
    loader = iter(pipe.loader(0, processed=False, position=0))
    return [s for _ in range(-(-samples // pipe.batch)) for s in next(loader)][:samples]


def resampling_floor(pipe: Pipeline, samples: int = 128) -> float:
    """ms per sample of the image resampling alone that a model-ready sample needs: per camera the
    transform's crop and resize to the short side 256 (`ImageTransform.apply`, uint8) and Eagle's
    bicubic resize to its 28-multiple (the processor's default torch backend), on decoded bench frames."""
    from gr00t.data.image_transforms import ImageTransform
    from gr00t.model.backbones.eagle_processing import _resize_uint8_hwc

    raw = raw_samples(pipe, samples)
    transform = ImageTransform(pipe.processor.image_config, train=True)
    vlm = pipe.processor.vlm
    draws = [transform.draw(i) for i in range(len(raw))]
    t0 = time.perf_counter()
    for sample, draw in zip(raw, draws):
        for view in VIEWS:
            frame = transform.apply(sample["video"][view], draw, view)[0]
            _resize_uint8_hwc(frame, vlm.target_size(*frame.shape[:2]), vlm.resize_backend)
    return 1000 * (time.perf_counter() - t0) / len(raw)


def processor_cost(pipe: Pipeline, height: int, width: int, samples: int = 64) -> float:
    """ms per sample of the processor alone (train mode) on the bench's samples with both cameras'
    frames replaced by ``height`` × ``width`` ones: what larger cameras cost (a 480×640 camera is
    first shrunk to the short side 256 by area averaging)."""
    rng = np.random.default_rng(0)
    raw = raw_samples(pipe, samples)
    frames = {v: rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8) for v in VIEWS}
    raw = [{**s, "video": frames} for s in raw]
    pipe.processor(raw[0], rng=0)
    t0 = time.perf_counter()
    for i, sample in enumerate(raw):
        pipe.processor(sample, rng=i)
    return 1000 * (time.perf_counter() - t0) / len(raw)


# ---------------------------------------------------------------------------- randomness and memory
def finish_cost(pipe: Pipeline, repeats: int = 5) -> float:
    """ms per batch of `finish_pixel_values` on this CPU (what a CPU-only trainer pays per batch; on a
    GPU it runs on the device)."""
    batch = next(iter(pipe.loader(0)))
    t0 = time.perf_counter()
    for _ in range(repeats):
        finish_pixel_values(batch)
    return 1000 * (time.perf_counter() - t0) / repeats


def randomness(pipe: Pipeline, batch: int = 64, batches: int = 200) -> dict[str, dict[str, float]]:
    """Distinct episodes per batch and the share of neighbours (within a batch) from one episode."""
    ds = pipe.dataset
    settings = TrainingSettings(per_device_batch_size=batch, seed=0)
    data = MixtureDataset([ds])
    windows = make_sampler(data, settings, 0, 1)
    draws = windows.draws(0, 1)
    orders = {
        "windows": [int(next(draws)[1]) for _ in range(batch * batches)],
        "random access": list(MixtureSampler([len(ds)], seed=0))[: batch * batches],
    }
    while len(orders["random access"]) < batch * batches:
        orders["random access"] += orders["random access"]
    out = {}
    for name, order in orders.items():
        eps = np.asarray([ds.locate(i)[0] for i in order[: batch * batches]]).reshape(batches, batch)
        distinct, same, lag1 = [], [], []
        for ids in eps:
            p = np.unique(ids, return_counts=True)[1] / batch
            chance = float((p**2).sum())  # two random members of this batch share an episode
            hit = float(np.mean(ids[1:] == ids[:-1]))
            distinct.append(len(p))
            same.append(hit)
            lag1.append((hit - chance) / (1 - chance) if chance < 1 else 0.0)
        out[name] = {"distinct": np.mean(distinct), "same_neighbour": np.mean(same), "lag1": np.mean(lag1)}
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory(pid: int) -> tuple[float, float]:
    """(peak RSS, private memory now) of a process in MB, from /proc."""
    peak = private = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                private += int(line.split()[1]) / 1024
    return peak, private


def first_batch_and_memory(pipe: Pipeline, workers: int, batches: int) -> dict[str, float]:
    """Time to the first batch of a fresh training loader (from the start of the data), then the
    workers' memory after ``batches`` more batches."""
    t0 = time.perf_counter()
    it = iter(pipe.loader(workers, position=0))
    next(it)
    first = time.perf_counter() - t0
    for _ in range(batches):
        next(it)
    mem = [_memory(w.pid) for w in it._workers]  # noqa: SLF001 - the workers' own memory
    del it
    return {
        "first_batch_s": first,
        "worker_peak_rss_mb": max(m[0] for m in mem),
        "worker_private_mb": max(m[1] for m in mem),
    }


def _single_process(root: str, batch: int, batches: int, queue) -> None:
    torch.set_num_threads(1)
    it = iter(Pipeline(Path(root), batch).loader(0))
    for _ in range(batches):
        next(it)
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forked parent from before exec
    queue.put(_memory(os.getpid())[0])


def single_process_peak_rss(root: Path, batch: int, batches: int) -> float:
    """Peak RSS (MB) of a fresh process (spawned, like a worker started by ``spawn``) that imports
    everything and reads ``batches`` batches through the default loader in-process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_single_process, args=(str(root), batch, batches, queue))
    proc.start()
    value = queue.get(timeout=900)
    proc.join()
    return value


# ---------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gr00t_bench_data")
    parser.add_argument(
        "--quick", action="store_true", help="8 episodes, 1 round, fewer batches, no 3000-frame RSS"
    )
    parser.add_argument("--codecs", nargs="+", default=["h264", "av1"], choices=sorted(ENCODINGS))
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument(
        "--batches", type=int, default=None, help="batches per measurement (default 10, quick 5)"
    )
    parser.add_argument("--batch", type=int, default=64, help="per-device batch size")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    batches = args.batches or (5 if args.quick else 10)
    episodes = 8 if args.quick else 20
    torch.set_num_threads(1)
    load = open("/proc/loadavg").read().split()[:3]
    print(
        f"bench/data.py: {episodes} episodes x 300 frames, {len(VIEWS)} cameras {SIZE}x{SIZE}, state/action {DIM}-dim, "
        f"horizon {HORIZON}, batch {args.batch}, {rounds} interleaved round(s) x {batches} batches\n"
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads 1; "
        f"load average {' '.join(load)}"
    )
    rows = []
    for codec in args.codecs:
        t0 = time.perf_counter()
        root = write_bench_dataset(args.workdir / f"{codec}_{episodes}x300", codec, [300] * episodes)
        pipe = Pipeline(root, args.batch)
        print(
            f"[{codec}] dataset ready in {time.perf_counter() - t0:.0f}s; keyframe spacing {pipe.dataset.keyframe_layout()[0]}"
        )
        rates = interleaved(pipe, rounds, batches, args.workers)
        limit = rates["decode limit"]
        for name, r in rates.items():
            extra = ""
            if name.startswith("training loader"):
                extra = f"  {r['wall'] / REFERENCE[codec]:.2f}x NVIDIA reference ({REFERENCE[codec]:.0f})"
            print(
                f"[{codec}] {name:40s} {r['wall']:6.1f} samples/s = {100 * r['wall'] / limit['wall']:5.1f}% of "
                f"the decode limit; {r['cpu']:6.1f} per CPU-second = {100 * r['cpu'] / limit['cpu']:5.1f}%{extra}"
            )
        floor = resampling_floor(pipe)
        ceiling = 100 / (1 + limit["wall"] * floor / 1000)
        print(
            f"[{codec}] image resampling alone (crop + resize to 256, Eagle resize to 252, 2 cameras): "
            f"{floor:.2f} ms per sample; with decoding at the decode limit one process reaches at most "
            f"{ceiling:.0f}% of it model-ready"
        )
        sizes = {f"{h}x{w}": processor_cost(pipe, h, w) for h, w in ((SIZE, SIZE), (480, 640))}
        print(
            f"[{codec}] the processor alone, 2 cameras: "
            + ", ".join(f"{k} {ms:.2f} ms per sample" for k, ms in sizes.items())
        )
        one, two = rates.get("training loader, 1 worker"), rates.get("training loader, 2 workers")
        if one and two:
            load_now = open("/proc/loadavg").read().split()[0]
            print(
                f"[{codec}] 2 workers / 1 worker: {two['wall'] / one['wall']:.2f}x (load average {load_now})"
            )
        print(
            f"[{codec}] the trainer's uint8 -> float pixel finish: {finish_cost(pipe):.0f} ms per batch on this CPU "
            "(runs on the device when training on a GPU; not in the figures above)"
        )
        rnd = randomness(pipe)
        for name, r in rnd.items():
            print(
                f"[{codec}] {name:14s}: {r['distinct']:.1f} distinct episodes per batch of 64; neighbours in a "
                f"batch from one episode {100 * r['same_neighbour']:.1f}%, lag-1 autocorrelation of episode "
                f"ids {r['lag1']:+.3f}"
            )
        mem = {}
        for length in [300] if args.quick else [300, 3000]:
            target = pipe
            if length != 300:
                long_root = write_bench_dataset(args.workdir / f"{codec}_2x{length}", codec, [length] * 2)
                target = Pipeline(long_root, args.batch)
            mem[length] = m = first_batch_and_memory(target, 2, batches)
            m["process_peak_rss_mb"] = single_process_peak_rss(target.root, args.batch, batches)
            print(
                f"[{codec}] {length}-frame episodes: first batch {m['first_batch_s']:.2f}s with 2 workers; "
                f"one loader process (fresh interpreter) peaks at {m['process_peak_rss_mb']:.0f} MB RSS; "
                f"forked workers: peak RSS {m['worker_peak_rss_mb']:.0f} MB incl. pages shared with the "
                f"parent, {m['worker_private_mb']:.0f} MB private"
            )
        rows.append((codec, rates, rnd, mem))
    print("\nload average at the end:", " ".join(open("/proc/loadavg").read().split()[:3]))
    print_markdown(rows)


def print_markdown(rows) -> None:
    """The table BENCHMARKS.md records: samples/s, and its share of the decode limit by wall and CPU time."""
    head = " | ".join(f"{c} samples/s | % of limit (wall / CPU)" for c, *_ in rows)
    print(f"\n| path | {head} |\n|---|" + "---|---|" * len(rows))
    for name in rows[0][1]:
        cells = []
        for _, rates, _, _ in rows:
            r, limit = rates[name], rates["decode limit"]
            cells += [
                f"{r['wall']:.0f}",
                f"{100 * r['wall'] / limit['wall']:.0f} / {100 * r['cpu'] / limit['cpu']:.0f} %",
            ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
