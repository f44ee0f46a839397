"""Training throughput and memory.

CPU (always): the tiny model (`n16_tiny`) finetuned on the demo dataset through the real command
(`gr00t-finetune` under `torchrun`, 1 and 2 processes); samples/s and peak memory per process
come from the trainer's own per-step metrics (`run_dir/metrics.jsonl`), warm-up steps excluded.

CUDA (when a GPU is present): the full `n16` model with the default finetune unfreezing (top 4
LLM layers, projector, DiT, VLLN), bf16 autocast, AdamW, synthetic batches shaped like one
256x256 camera (81 image tokens) + a 20-token instruction; per-device batch 8/16/32: step time,
samples/s, peak allocated memory; then the largest batch that fits when the process may use only
24 GB (`torch.cuda.set_per_process_memory_fraction`). Skipped with a message on CPU machines.

    .venv/bin/python bench/train.py [--steps 12] [--warmup 4] [--procs 1 2] [--skip-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ---- CPU: the real command under torchrun ---------------------------------------------------------------


def cpu_run(
    nproc: int,
    steps: int,
    warmup: int,
    per_device_batch: int,
    data: Path,
    work: Path,
    threads: int | None = None,
) -> dict:
    """One `gr00t-finetune` run of the tiny model with `nproc` processes; metrics after warm-up."""
    run_dir = work / f"run-{nproc}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:0",
        "-m",
        "gr00t.cli.finetune",
        "embodiment=new_embodiment",
        f"data={data}",
        "model=n16_tiny",
        "trainer=demo",
        f"run_dir={run_dir}",
        f"trainer.max_steps={steps}",
        "trainer.logging_steps=1",
        f"trainer.save_steps={steps * 10}",
        f"trainer.global_batch_size={per_device_batch * nproc}",
        "trainer.deepspeed=none",
    ]
    threads = threads or max(1, (os.cpu_count() or 2) // nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step_time_s" in r and r.get("step", 0) > warmup]
    if not rows:
        raise RuntimeError(f"no per-step metrics after warm-up step {warmup} in {run_dir / 'metrics.jsonl'}")
    step_time = sum(r["step_time_s"] for r in rows) / len(rows)
    return {
        "processes": nproc,
        "threads_per_process": threads,
        "per_device_batch": per_device_batch,
        "global_batch": per_device_batch * nproc,
        "steps_measured": len(rows),
        "step_time_s": step_time,
        "samples_per_s": per_device_batch * nproc / step_time,
        "peak_mem_mb_rank0": max(r.get("peak_mem_mb", 0.0) for r in rows),
        "wall_s_total": wall,
    }


def bench_cpu(args: argparse.Namespace) -> None:
    from gr00t.data.demo import write_demo_dataset

    work = Path(tempfile.mkdtemp(prefix="gr00t-bench-train-"))
    try:
        data = write_demo_dataset(work / "demo_data")
        print(
            f"CPU: n16_tiny, demo dataset, {os.cpu_count()} cores, per-device batch {args.batch}, "
            f"{args.steps} steps ({args.warmup} warm-up excluded)"
        )
        print(
            f"{'procs':>5} {'threads':>7} {'global batch':>12} {'step s':>8} {'samples/s':>10} {'peak MiB/proc':>14} {'wall s':>7}"
        )
        for nproc in args.procs:
            r = cpu_run(nproc, args.steps, args.warmup, args.batch, data, work, args.threads)
            print(
                f"{r['processes']:>5} {r['threads_per_process']:>7} {r['global_batch']:>12} {r['step_time_s']:>8.3f} {r['samples_per_s']:>10.2f} "
                f"{r['peak_mem_mb_rank0']:>14.0f} {r['wall_s_total']:>7.1f}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- CUDA: n16 default finetune unfreezing ----------------------------------------------------------------


def synthetic_batch(config, batch_size: int, device, text_tokens: int = 20, image_side: int = 252):
    """A `Gr00tBatch` (eagle backbone) for one camera of `image_side` pixels."""
    import torch

    from gr00t.model.backbones.eagle_processing import EagleInputs
    from gr00t.model.batch import Gr00tBatch, HeadInputs

    patch = int(config.vision_config.get("patch_size", 14))
    grid = image_side // patch
    merge = int(config.downsample_factor)
    n_img_tokens = (grid // merge) ** 2
    seq = text_tokens + n_img_tokens + 2
    vocab = int(config.text_config["vocab_size"])
    special = {config.image_token_id, config.img_start_token_id, config.img_end_token_id}
    text = torch.randint(0, min(vocab, 1000), (batch_size, text_tokens))
    text[torch.isin(text, torch.tensor(sorted(special)))] = 1
    ids = torch.cat(
        [
            text,
            torch.full((batch_size, 1), config.img_start_token_id),
            torch.full((batch_size, n_img_tokens), config.image_token_id),
            torch.full((batch_size, 1), config.img_end_token_id),
        ],
        dim=1,
    )
    a, s = config.max_action_dim, config.max_state_dim
    backbone = EagleInputs(
        input_ids=ids,
        attention_mask=torch.ones(batch_size, seq, dtype=torch.long),
        pixel_values=torch.rand(batch_size, grid * grid, 3 * patch * patch) * 2 - 1,
        pixel_attention_mask=torch.ones(batch_size, grid * grid, dtype=torch.bool),
        spatial_shapes=torch.tensor([[grid, grid]] * batch_size, dtype=torch.long),
    )
    head = HeadInputs(
        state=torch.randn(batch_size, 1, s),
        embodiment_id=torch.full((batch_size,), 10, dtype=torch.long),
        action=torch.randn(batch_size, config.action_horizon, a),
        action_mask=torch.ones(batch_size, config.action_horizon, a),
    )
    return Gr00tBatch(backbone, head).to(device)


def train_steps(model, optimizer, batch, steps: int, dtype) -> float:
    """Mean seconds per optimiser step (bf16 autocast, grad clip 1.0) after one warm-up step."""
    import torch

    device = batch.backbone.input_ids.device
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def build_finetune_model(preset: str, device):
    """The preset with the finetune recipe's switches, its default unfreezing, and AdamW."""
    import torch

    from gr00t.model.gr00t_n16 import Gr00tN16Model
    from gr00t.model.presets import load_preset
    from gr00t.train.optim import OptimizerSettings, build_optimizer

    model = Gr00tN16Model(load_preset(preset, use_relative_action=True)).to(device)
    model.train()
    optimizer = build_optimizer(model, OptimizerSettings())
    return model, optimizer, torch.bfloat16 if device.type == "cuda" else torch.float32


def measure_batch(preset: str, batch_size: int, steps: int, device) -> dict:
    import torch

    model, optimizer, dtype = build_finetune_model(preset, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batch = synthetic_batch(model.config, batch_size, device)
    step = train_steps(model, optimizer, batch, steps, dtype)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    del model, optimizer, batch
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"batch": batch_size, "step_s": step, "samples_per_s": batch_size / step, "peak_gib": peak}


def fits(preset: str, batch_size: int, device) -> bool:
    import torch

    try:
        measure_batch(preset, batch_size, 1, device)
        return True
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return False


def bench_cuda(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        print(
            "CUDA: no GPU on this machine; skipped the n16 bf16 figures (batch 8/16/32, largest batch in 24 GB)"
        )
        return
    device = torch.device("cuda", 0)
    name = torch.cuda.get_device_name(device)
    total = torch.cuda.get_device_properties(device).total_memory
    print(f"CUDA: {name}, {total / 2**30:.0f} GiB; n16 default finetune unfreezing, bf16 autocast, AdamW")
    model, _, _ = build_finetune_model("n16", device)
    parts = model.num_parameters_by_part(), model.num_parameters_by_part(trainable_only=True)
    print(
        f"  parameters: total {parts[0]['total']:,}, trainable {parts[1]['total']:,} "
        f"(backbone {parts[1]['backbone']:,}, action head {parts[1]['action_head']:,})"
    )
    del model
    torch.cuda.empty_cache()
    print(f"{'batch':>6} {'step s':>8} {'samples/s':>10} {'peak GiB':>9}")
    for bs in args.cuda_batches:
        try:
            r = measure_batch("n16", bs, args.cuda_steps, device)
            print(
                f"{r['batch']:>6} {r['step_s']:>8.3f} {r['samples_per_s']:>10.1f} {r['peak_gib']:>9.1f}",
                flush=True,
            )
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            print(f"{bs:>6} out of memory")
    limit = 24 * 2**30
    if total > limit:
        torch.cuda.set_per_process_memory_fraction(limit / total, device)
    lo, hi = 0, 1
    while fits("n16", hi, device):
        lo, hi = hi, hi * 2
        if hi > 1024:
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits("n16", mid, device) else (lo, mid)
    print(f"  largest per-device batch within 24 GB: {lo}" + ("" if lo else " (batch 1 does not fit)"))
    torch.cuda.set_per_process_memory_fraction(1.0, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12, help="CPU: optimiser steps per run")
    parser.add_argument("--warmup", type=int, default=4, help="CPU: first steps excluded from the figures")
    parser.add_argument("--batch", type=int, default=2, help="CPU: per-device batch")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="CPU: process counts to compare")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU: OMP threads per process (default: cores / processes)"
    )
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--cuda-batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--cuda-steps", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.skip_cpu:
        bench_cpu(args)
    bench_cuda(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
