"""Peak training memory of the full-size n16_release default finetune, estimated without allocating it.

The model is built on the meta device with the shipped `n16_release` preset and the precision
policy (frozen weights bf16, trainable ones float32 master weights), then materialised as fake
tensors (`torch._subclasses.FakeTensorMode`): shapes, dtypes and storage sizes are real, no
byte is allocated and no arithmetic runs. One real training step runs on those fake tensors —
the model's own forward (bf16 autocast, as the trainer runs it) on a realistic batch, backward,
gradient clipping and the profile's optimiser step — under torch's
`LiveStorages`, a TorchDispatchMode that follows every live storage and sorts it into parameters,
gradients, optimiser state and activations/temporaries (torch's MemTracker does the same with
per-module statistics, 30x slower here). The optimiser state
is created by one step before the tracked one, so the tracked step is a steady-state step.

Memory profiles are read from the shipped `gr00t/configs/memory/<name>.yaml` files, so the
figures describe what `memory=<name>` runs. `--candidates` adds the single features the profiles
are built from (activation checkpointing, 8-bit AdamW, ZeRO-Offload, LoRA on LLM + DiT), which
is how `memory=24gb` was chosen. ZeRO-Offload is modelled as DeepSpeed runs it: gradients leave
the GPU as they are produced (one reduce bucket stays on it), the float32 master copy, gradients
and AdamW moments live in host memory (`host_gib`).

Inputs: the released shapes (action horizon 50, state/action 128, one state step), one 256x256
camera (Eagle: 252x252 after smart resize, 18x18 = 324 patches, 81 image tokens) and a prompt of
`--text-tokens` (default 48: the default system turn, a one-sentence instruction, the image
markers and the chat-template tokens).

Blind spots (add margin on a real card): the CUDA caching allocator's fragmentation and
rounding, cuBLAS/cuDNN/flash-attention workspaces, NCCL buffers with several processes, the CUDA
context (~0.5 GiB, outside torch's counters), and op choices that differ between CUDA and the CPU
dispatch the fake tensors run on (this torch is CPU-only; autocast's CPU op lists decide which
activations are saved in bf16). bench/gpu.sh prints real peaks beside these estimates.

    .venv/bin/python bench/memory.py [--batches 1 8 16 32] [--profiles default 24gb] [--candidates] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gr00t.model.backbones.eagle_processing import EagleInputs  # noqa: E402
from gr00t.model.batch import Gr00tBatch, HeadInputs  # noqa: E402
from gr00t.model.config import Gr00tN16Config  # noqa: E402
from gr00t.model.gr00t_n16 import Gr00tN16Model  # noqa: E402

GIB = 1024**3
PATCHES = 18 * 18  # 252x252 after Eagle's smart resize of a 256x256 camera, 14x14 patches
IMAGE_TOKENS = PATCHES // 4  # 2x2 pixel unshuffle
KEYS = (
    "profile",
    "batch",
    "params_gib",
    "grads_gib",
    "optimizer_gib",
    "activations_gib",
    "peak_gib",
    "host_gib",
)
DS_REDUCE_BUCKET = 200_000_000  # elements, gr00t/configs/deepspeed/zero2*.json reduce_bucket_size


@dataclass
class Setup:
    """What a profile (or a candidate feature) changes in the run."""

    name: str
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    offload: bool = False
    lora_rank: int = 0
    lora_dit: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def profile_setup(name: str) -> Setup:
    """A shipped memory profile (`gr00t/configs/memory/<name>.yaml`) as a `Setup`."""
    path = REPO / "gr00t" / "configs" / "memory" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    ds = str(data.get("deepspeed", ""))
    return Setup(
        name=name,
        optimizer=str(data.get("optimizer", "adamw")),
        gradient_checkpointing=bool(data.get("gradient_checkpointing", False)),
        offload=ds.endswith("offload"),
        lora_rank=int(data.get("lora_rank", 0)),
        lora_dit=bool(data.get("lora_dit", False)),
    )


CANDIDATES = [
    Setup("ckpt", gradient_checkpointing=True),
    Setup("adamw_8bit", optimizer="adamw_8bit"),
    Setup("offload", optimizer="cpu_adam", offload=True),
    Setup("offload+ckpt", optimizer="cpu_adam", offload=True, gradient_checkpointing=True),
    Setup("lora16_llm+dit+ckpt", lora_rank=16, lora_dit=True, gradient_checkpointing=True),
]


def preset_config(name: str, **overrides: Any) -> Gr00tN16Config:
    """A shipped model preset: composed by Hydra (`load_preset`), or, where Hydra is not installed
    (the GPU machine of bench/gpu.sh), read from its YAML file and the `defaults` it names."""
    try:
        from gr00t.model.presets import load_preset
    except ImportError:
        fields: dict[str, Any] = {}
        chain, current = [], name
        while current:
            data = (
                yaml.safe_load((REPO / "gr00t" / "configs" / "model" / f"{current}.yaml").read_text()) or {}
            )
            chain.append(data)
            parents = [d for d in data.get("defaults", []) if d != "_self_"]
            current = parents[0] if parents else None
        for data in reversed(chain):
            fields.update({k: v for k, v in data.items() if k not in ("defaults", "name")})
        return Gr00tN16Config(**{**fields, **overrides})
    return load_preset(name, **overrides)


# ---- the fake model and batch ---------------------------------------------------------------------------


def meta_model(setup: Setup) -> Gr00tN16Model:
    """n16_release with the default finetune unfreezing, on the meta device, with the setup's switches."""
    from gr00t.train.grad_checkpointing import enable_gradient_checkpointing
    from gr00t.train.lora import apply_lora
    from gr00t.train.settings import TrainingSettings

    with torch.device("meta"):
        model = Gr00tN16Model(preset_config("n16_release"))
        if setup.lora_rank:
            settings = TrainingSettings(
                per_device_batch_size=1, lora_rank=setup.lora_rank, lora_dit=setup.lora_dit
            )
            apply_lora(model, settings)
    if setup.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model.train()


def materialise(model: torch.nn.Module) -> None:
    """Replace every meta parameter/buffer by a fake tensor of the same shape and dtype (call inside
    the FakeTensorMode)."""
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                fake = torch.empty(p.shape, dtype=p.dtype)
                module._parameters[name] = torch.nn.Parameter(fake, requires_grad=p.requires_grad)
        for name, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[name] = torch.empty(b.shape, dtype=b.dtype)


def fake_batch(
    model: Gr00tN16Model, batch: int, text_tokens: int, spatial_shapes: torch.Tensor
) -> Gr00tBatch:
    """A training batch shaped like the released recipe's (call inside the FakeTensorMode)."""
    cfg = model.config
    length = text_tokens + IMAGE_TOKENS + 2
    ids = torch.randint(0, 1000, (batch, length))
    ids[:, text_tokens // 2 : text_tokens // 2 + IMAGE_TOKENS] = cfg.image_token_id
    backbone = EagleInputs(
        input_ids=ids,
        attention_mask=torch.ones(batch, length, dtype=torch.long),
        pixel_values=torch.rand(batch, PATCHES, 3 * 14 * 14),
        pixel_attention_mask=torch.ones(batch, PATCHES, dtype=torch.bool),
        spatial_shapes=spatial_shapes,
    )
    h, a = cfg.action_horizon, cfg.max_action_dim
    head = HeadInputs(
        state=torch.rand(batch, cfg.state_horizon, cfg.max_state_dim),
        embodiment_id=torch.zeros(batch, dtype=torch.long),
        action=torch.rand(batch, h, a),
        action_mask=torch.ones(batch, h, a),
    )
    return Gr00tBatch(backbone, head)


@contextlib.contextmanager
def value_free_tracing():
    """Fake tensors hold no values: skip the eager-only value checks (input placeholder counts,
    transformers' mask shortcuts) exactly as torch.compile's tracing, which also runs on fake tensors."""
    with (
        mock.patch("torch.compiler.is_compiling", return_value=True),
        mock.patch.dict(os.environ, {"TRANSFORMERS_DISABLE_TORCH_CHECK": "1"}),
    ):
        yield


# ---- optimisers -----------------------------------------------------------------------------------------


def build_optimizer(model: torch.nn.Module, setup: Setup) -> torch.optim.Optimizer | None:
    """The profile's optimiser over the trainer's parameter groups (None: it runs off the GPU)."""
    from gr00t.train.optim import OptimizerSettings, _bitsandbytes, param_groups

    groups = param_groups(model, OptimizerSettings())
    if setup.offload:
        return None
    if setup.optimizer == "adamw_8bit":
        # built outside the fake mode: its 8-bit quantisation maps are real constants (2 KiB)
        with _no_fake_mode():
            return _bitsandbytes().optim.AdamW8bit(groups, lr=1e-4)
    # torch picks the foreach implementation for CUDA parameters: one list-wide temporary per op.
    # (capturable: the step counters are device tensors, which fake tensors need; a few bytes)
    return torch.optim.AdamW(groups, lr=1e-4, foreach=True, capturable=True)


@contextlib.contextmanager
def _no_fake_mode():
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes():
        yield


def offload_gradients(model: torch.nn.Module) -> list[int]:
    """ZeRO-Offload on the GPU side: each gradient leaves for host memory once accumulated."""
    moved = [0]

    def hook(p: torch.Tensor) -> None:
        moved[0] += p.grad.numel()
        p.grad = None

    for p in model.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(hook)
    return moved


class LiveStorages(TorchDispatchMode):
    """Bytes of every live storage by kind (params, grads, optimizer, activations), and the
    breakdown at the peak of their sum. Storages are counted once (views share them) from the op
    that creates them until they are freed; a gradient is re-labelled when autograd accumulates it."""

    KINDS = ("params", "grads", "optimizer", "activations")

    def __init__(self) -> None:
        super().__init__()
        self.records: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.current = dict.fromkeys(self.KINDS, 0)
        self.peak = dict(self.current)

    def track(self, tensor: torch.Tensor, kind: str) -> None:
        storage = tensor.untyped_storage()
        record = self.records.get(storage)
        if record is None:
            record = [storage.nbytes(), kind]
            self.records[storage] = record
            self.current[kind] += record[0]
            weakref.finalize(storage, self._free, record)
        elif record[1] != kind and kind != "activations":  # an op's output viewing a known storage
            self.current[record[1]] -= record[0]
            self.current[kind] += record[0]
            record[1] = kind
        if sum(self.current.values()) > sum(self.peak.values()):
            self.peak = dict(self.current)

    def _free(self, record: list) -> None:
        self.current[record[1]] -= record[0]

    def track_model(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        """Label the existing storages, and gradients as autograd accumulates them."""
        for t in [*model.parameters(), *model.buffers()]:
            self.track(t, "params")
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(
                    lambda q: self.track(q.grad, "grads") if q.grad is not None else None
                )
        for state in optimizer.state.values() if optimizer is not None else []:
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    self.track(value, "optimizer")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t, "activations")
        return out


# ---- one measured step ----------------------------------------------------------------------------------


def measure(setup: Setup, batch: int, text_tokens: int) -> dict[str, Any]:
    """Memory of one steady-state training step of the setup at per-device `batch` (GiB)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = meta_model(setup)
    spatial_shapes = torch.tensor([[18, 18]] * batch)  # real: the backbone reads the grid sizes
    trainable = [p for p in model.parameters() if p.requires_grad]
    with FakeTensorMode(allow_non_fake_inputs=True), value_free_tracing():
        materialise(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(model, setup)
        if optimizer is not None:  # create the optimiser state outside the measured step
            for p in trainable:
                p.grad = torch.zeros_like(p)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        moved = offload_gradients(model) if setup.offload else None
        data = fake_batch(model, batch, text_tokens, spatial_shapes)
        tracker = LiveStorages()
        tracker.track_model(model, optimizer)
        with tracker:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                # the flow draw given explicitly (drawing it validates a Beta distribution's values)
                noise, t = torch.randn_like(data.head.action), torch.rand(batch)
                loss = model(data, noise=noise, t=t).loss
            loss.backward()
            if optimizer is not None:
                torch.nn.utils.clip_grad_norm_(trainable, 1.0, foreach=True)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        peak = dict(tracker.peak, total=sum(tracker.peak.values()))
    n_trainable = sum(p.numel() for p in trainable)
    row = {
        "profile": setup.name,
        "batch": batch,
        "params_gib": peak["params"] / GIB,
        "grads_gib": peak["grads"] / GIB,
        "optimizer_gib": peak["optimizer"] / GIB,
        "activations_gib": peak["activations"] / GIB,
        "peak_gib": peak["total"] / GIB,
        "host_gib": 0.0,
    }
    if setup.offload:
        assert moved is not None and moved[0] == n_trainable, "every gradient must reach the host"
        bucket = DS_REDUCE_BUCKET * 4  # float32 reduce bucket DeepSpeed keeps on the GPU
        row["grads_gib"] += bucket / GIB
        row["peak_gib"] += bucket / GIB
        # fp32 master partition + fp32 gradient partition + AdamW moments, all on the host
        row["host_gib"] = n_trainable * (4 + 4 + 8) / GIB
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}


# ---- command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--profiles", nargs="+", default=["default", "24gb"])
    parser.add_argument("--candidates", action="store_true", help="also the single features, at batch 16")
    parser.add_argument("--text-tokens", type=int, default=48)
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args(argv)
    runs = [(profile_setup(p), b) for p in args.profiles for b in args.batches]
    if args.candidates:
        runs += [(c, 16) for c in CANDIDATES]
    started = time.perf_counter()
    if not args.json:
        print("n16_release default finetune, per-device batch x profile (GiB on the GPU; host = CPU RAM)")
        print(
            f"{'profile':>22} {'batch':>5} {'params':>7} {'grads':>7} {'optim':>7} {'activ':>7} {'peak':>7} {'host':>7}"
        )
    for setup, batch in runs:
        row = measure(setup, batch, args.text_tokens)
        if args.json:
            print(json.dumps({k: row[k] for k in KEYS}), flush=True)
        else:
            print(
                f"{row['profile']:>22} {batch:>5} {row['params_gib']:>7.2f} {row['grads_gib']:>7.2f} "
                f"{row['optimizer_gib']:>7.2f} {row['activations_gib']:>7.2f} {row['peak_gib']:>7.2f} "
                f"{row['host_gib']:>7.2f}",
                flush=True,
            )
    if not args.json:
        print(
            f"({time.perf_counter() - started:.0f} s; estimates: see the module docstring for the blind spots)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
