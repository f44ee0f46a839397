"""The GPU check of issue 8, run by `bash bench/gpu.sh` (one H100/H200, < 8 minutes, no internet).

Sections, each guarded (a failure or a missing package prints SKIPPED with the reason and the
next section runs), each printing a table and appending JSON rows to `$OUT/gpu_results.jsonl`:

1. environment: torch, device, peak bf16 FLOP/s used for MFU, optional packages;
2. train: `n16_release` default finetune (top-4 LLM layers, projectors, DiT, vlln; the precision
   policy: frozen bf16, trainable float32 master weights, bf16 autocast), synthetic batches of
   the released shapes (horizon 50, 128/128, one 256x256 camera = 81 image tokens, 48 text
   tokens), per-device batch 8/16/32 under `memory=default` and `memory=24gb` (the 24gb runs
   are capped at 24 GiB with `torch.cuda.set_per_process_memory_fraction`): real peak
   allocated memory, step time, samples/s and MFU (model FLOPs of forward+backward counted by
   `torch.utils.flop_counter` on the default profile, recomputation not counted), next to
   bench/memory.py's estimate;
3. attention: the backbone's LLM with flash-attn 2 vs SDPA (skipped when flash_attn is absent);
4. latency: `get_action` at batch 1 (4 denoising steps), eager and `compile_inference()`.

`--cpu-smoke` runs every section on the CPU with the tiny model and the released shapes, one
step per configuration (what the test suite checks); estimates are computed at batch 1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import memory  # noqa: E402  (bench/memory.py)

from gr00t.model.gr00t_n16 import Gr00tN16Model  # noqa: E402

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks
RESULTS: list[dict[str, Any]] = []


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.smoke = args.cpu_smoke
        self.device = torch.device("cpu" if self.smoke or not torch.cuda.is_available() else "cuda")
        self.batches = [2] if self.smoke else args.batches
        self.steps, self.warmup = (1, 0) if self.smoke else (args.steps, args.warmup)
        self.deadline = time.perf_counter() + args.budget_s
        self.text_tokens = 48

    def config(self, **overrides: Any):
        if self.smoke:  # the tiny network with the released shapes
            release = {"action_horizon": 50, "max_state_dim": 128, "max_action_dim": 128,
                       "apply_sincos_state_encoding": True, "model_dtype": "bfloat16"}  # fmt: skip
            return memory.preset_config("n16_tiny", **{**release, **overrides})
        return memory.preset_config("n16_release", **overrides)


def record(section: str, **row: Any) -> None:
    RESULTS.append({"section": section, **row})
    out = os.environ.get("OUT")
    if out:
        with open(Path(out) / "gpu_results.jsonl", "a") as f:
            f.write(json.dumps({"section": section, **row}) + "\n")


@contextlib.contextmanager
def section(name: str, ctx: Context):
    print(f"\n== {name} ==", flush=True)
    if time.perf_counter() > ctx.deadline:
        print(f"SKIPPED {name}: out of the time budget", flush=True)
        record(name, skipped="time budget")
        yield False
        return
    try:
        yield True
    except Exception as exc:  # every section is independent: report and go on
        print(f"SKIPPED {name}: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc(limit=3)
        record(name, skipped=f"{type(exc).__name__}: {exc}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def environment(ctx: Context) -> None:
    name = torch.cuda.get_device_name() if ctx.device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    extras = {m: importlib.util.find_spec(m) is not None for m in ("flash_attn", "bitsandbytes", "deepspeed")}
    print(f"torch {torch.__version__}, device {name}, peak bf16 {peak and peak / 1e12} TFLOP/s, {extras}")
    record("environment", torch=torch.__version__, device=name, peak_flops=peak, **extras)
    ctx.peak_flops = peak


# ---- training steps ---------------------------------------------------------------------------------------


def build(ctx: Context, setup: memory.Setup, **overrides: Any) -> tuple[Gr00tN16Model, Any]:
    from gr00t.train.grad_checkpointing import enable_gradient_checkpointing
    from gr00t.train.optim import OptimizerSettings, build_optimizer

    torch.manual_seed(0)
    with torch.device(ctx.device):
        model = Gr00tN16Model(ctx.config(**overrides)).train()
    if setup.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model, build_optimizer(model, OptimizerSettings(optimizer=setup.optimizer))


def make_batch(ctx: Context, model: Gr00tN16Model, batch: int, with_action: bool = True):
    shapes = torch.tensor([[18, 18]] * batch)
    with torch.device(ctx.device):
        data = memory.fake_batch(model, batch, ctx.text_tokens, shapes)
    data.backbone.spatial_shapes = shapes.to(ctx.device)
    if not with_action:
        data.head.action = data.head.action_mask = None
    return data


def step(model: Gr00tN16Model, optimizer: Any, data: Any, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = model(data).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def model_flops(ctx: Context, batch: int) -> float:
    """Forward + backward FLOPs of the default profile at `batch` (no recomputation)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, _ = build(ctx, memory.Setup("default"))
    data = make_batch(ctx, model, batch)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
            loss = model(data).loss
        loss.backward()
    del model, data, loss
    return float(counter.get_total_flops())


def train(ctx: Context) -> None:
    flops = model_flops(ctx, ctx.batches[0]) / ctx.batches[0]  # per sample
    print(f"model FLOPs per sample (forward+backward): {flops / 1e12:.3f} TFLOP")
    header = f"{'profile':>8} {'batch':>5} {'peak GiB':>9} {'estimate':>9} {'s/step':>7} {'samples/s':>10} {'MFU':>6}"
    print(header)
    for name in ("default", "24gb"):
        setup = memory.profile_setup(name)
        for batch in ctx.batches:
            if time.perf_counter() > ctx.deadline:
                print(f"{name:>8} {batch:>5}  skipped: time budget")
                continue
            try:
                estimate = estimate_for(ctx, setup, batch)
                row = train_config(ctx, setup, batch)
            except ImportError as exc:  # e.g. bitsandbytes absent: report the row, go on
                print(f"{name:>8} {batch:>5}  SKIPPED: {exc}", flush=True)
                record("train", profile=name, batch=batch, skipped=str(exc))
                continue
            mfu = (
                row.get("samples_s", 0) * flops / ctx.peak_flops
                if ctx.peak_flops and "samples_s" in row
                else None
            )
            print(f"{name:>8} {batch:>5} {row.get('peak_gib', 'OOM')!s:>9} {estimate!s:>9} "
                  f"{row.get('s_step', '-')!s:>7} {row.get('samples_s', '-')!s:>10} "
                  f"{'-' if mfu is None else f'{mfu:.1%}':>6}", flush=True)  # fmt: skip
            record("train", profile=name, batch=batch, estimate_gib=estimate, mfu=mfu, **row)


def estimate_for(ctx: Context, setup: memory.Setup, batch: int) -> float | None:
    if ctx.smoke and batch != ctx.batches[0]:
        return None
    return memory.measure(setup, 1 if ctx.smoke else batch, ctx.text_tokens)["peak_gib"]


def train_config(ctx: Context, setup: memory.Setup, batch: int) -> dict[str, Any]:
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(0).total_memory
        cap = 24 * 1024**3 / total if setup.name == "24gb" else 1.0
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap))
        torch.cuda.reset_peak_memory_stats()
    model = optimizer = data = None
    try:
        model, optimizer = build(ctx, setup)
        data = make_batch(ctx, model, batch)
        for _ in range(ctx.warmup):
            step(model, optimizer, data, ctx.device)
        sync(ctx.device)
        times = []
        for _ in range(ctx.steps):
            start = time.perf_counter()
            step(model, optimizer, data, ctx.device)
            sync(ctx.device)
            times.append(time.perf_counter() - start)
        s_step = statistics.median(times)
        peak = torch.cuda.max_memory_allocated() / 1024**3 if cuda else None
        return {"peak_gib": None if peak is None else round(peak, 2), "s_step": round(s_step, 3),
                "samples_s": round(batch / s_step, 1)}  # fmt: skip
    except torch.OutOfMemoryError:
        return {"oom": True}
    finally:
        del model, optimizer, data
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(1.0)


# ---- attention and latency ----------------------------------------------------------------------------------


def attention(ctx: Context) -> None:
    if importlib.util.find_spec("flash_attn") is None:
        print("SKIPPED flash-attn vs SDPA: flash_attn is not installed (SDPA is the default)")
        record("attention", skipped="flash_attn not installed")
        return
    batch = 16 if not ctx.smoke else 2
    for impl in ("sdpa", "flash_attention_2"):
        model, optimizer = build(ctx, memory.profile_setup("default"), backbone_attn_implementation=impl)
        data = make_batch(ctx, model, batch)
        step(model, optimizer, data, ctx.device)
        sync(ctx.device)
        start = time.perf_counter()
        for _ in range(ctx.steps):
            step(model, optimizer, data, ctx.device)
        sync(ctx.device)
        s_step = (time.perf_counter() - start) / ctx.steps
        print(f"{impl:>18}: {s_step:.3f} s/step at batch {batch}")
        record("attention", impl=impl, batch=batch, s_step=round(s_step, 4))
        del model, optimizer, data


def latency(ctx: Context) -> None:
    model, _ = build(ctx, memory.Setup("default"))
    model.eval()
    data = make_batch(ctx, model, 1, with_action=False)
    runs = 3 if ctx.smoke else 20
    for mode in ("eager", "compiled"):
        if mode == "compiled":
            if ctx.smoke or time.perf_counter() > ctx.deadline - 120:
                print("SKIPPED compiled get_action: " + ("CPU smoke run" if ctx.smoke else "time budget"))
                record("latency", mode=mode, skipped=True)
                continue
            start = time.perf_counter()
            model.compile_inference()
            model.get_action(data)
            sync(ctx.device)
            print(f"compile + first call: {time.perf_counter() - start:.1f} s")
        for _ in range(2):
            model.get_action(data)
        times = []
        for _ in range(runs):
            sync(ctx.device)
            start = time.perf_counter()
            model.get_action(data)
            sync(ctx.device)
            times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times)
        print(f"get_action {mode}: {ms:.1f} ms (median of {runs}, batch 1, 4 denoising steps)")
        record("latency", mode=mode, ms=round(ms, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="every section on the CPU, tiny model")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=420.0, help="sections after this are skipped")
    args = parser.parse_args(argv)
    ctx = Context(args)
    ctx.peak_flops = None
    if ctx.device.type != "cuda" and not ctx.smoke:
        print("no CUDA device: run with --cpu-smoke for the CPU check")
        return 2
    started = time.perf_counter()
    for name, fn in (
        ("environment", environment),
        ("train", train),
        ("attention", attention),
        ("latency", latency),
    ):
        with section(name, ctx) as go:
            if go:
                fn(ctx)
    print(f"\ndone in {time.perf_counter() - started:.0f} s; {len(RESULTS)} result rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
