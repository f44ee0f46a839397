"""The training loop: an HF ``Trainer`` subclass plus the one entry point the CLIs call.

Public API (stable; ``gr00t/train/build.py`` calls it)::

    from gr00t.train.trainer import TrainingSettings, TrainingResult, run_training

    result = run_training(
        model,                     # Gr00tN16Model (any PreTrainedModel whose forward returns .loss)
        train_dataset,             # map-style torch Dataset of model-ready samples
        collator,                  # samples -> model batch (Gr00tCollator)
        settings,                  # TrainingSettings (or a plain dict: TrainingSettings.from_dict)
        run_dir,                   # run directory; checkpoints go to <run_dir>/checkpoint-<step>/
        processor=None,            # object with save_pretrained(dir); saved into each checkpoint folder
        sampler=None,              # MixtureSampler for THIS rank, or factory(rank, world_size) -> sampler;
                                   #   None: MixtureSampler over len(train_dataset), seed=settings.seed
        statistics=None,           # dict -> checkpoint/statistics.json
        embodiment_map=None,       # {tag: projector index} -> checkpoint/embodiment_map.json
        experiment_config=None,    # resolved Hydra config (dict or YAML text) -> experiment_config.yaml
        callbacks=None,            # extra transformers.TrainerCallback objects
    ) -> TrainingResult            # global_step, train_loss, last_checkpoint, resumed_from, preempted

Behaviour:

* Process count comes from the launcher (``torchrun`` env). ``settings.deepspeed="auto"`` means
  DeepSpeed ZeRO-2 (``configs/deepspeed/zero2.json``) whenever more than one process runs, plain
  single-process training otherwise; ``"zero3"``, ``"zero2"``, ``"none"`` or a JSON path select
  explicitly. The optimiser is always torch's AdamW handed to DeepSpeed as a client optimiser (no
  compiled DeepSpeed optimiser op).
* bf16 mixed precision (+ TF32) on CUDA, fp32 on CPU (``precision="auto"``).
* Effective global batch = per-device batch × processes × gradient accumulation, logged at start.
* Resume: with ``settings.resume`` (default) the newest *complete* checkpoint of ``run_dir`` is
  restored — weights, optimiser, scheduler, per-rank RNG, trainer state and the data position
  (sampler state, not dataloader replay); temporary/incomplete checkpoint folders are deleted first.
  ``resume=False`` moves old checkpoints to ``run_dir/superseded-<time>/`` and starts over.
  A model whose parameter names/shapes differ from the checkpoint's (changed architecture) is
  refused up front with `checkpoint.ResumeMismatchError` naming the differing config.json fields;
  training-only changes that keep the parameters (``tune_*``, dropout rates) resume; when the
  trainable set changed, the AdamW moments start fresh (under DeepSpeed such a resume is refused).
* Preemption: SIGTERM/SIGUSR1 → finish the step, checkpoint, write ``run_dir/PREEMPTED``, then
  ``sys.exit(REQUEUE_EXIT_CODE)`` (75) when ``settings.exit_on_preemption`` (default) — otherwise
  the result has ``preempted=True``. See :mod:`gr00t.train.preemption`.
* Exactness: data order is a pure function of (seed, draws consumed); the DataLoader has its own
  seeded generator so iterator creation never touches the global RNG; the global RNG (model
  noise, dropout, state dropout) is restored from the checkpoint. Sample transforms running in
  dataloader workers must be seeded per sample for augmentations to be resume-exact too.
* Memory switches: ``gradient_checkpointing`` recomputes every trainable transformer block (DiT
  blocks, tuned top LLM layers) in backward; ``lora_rank > 0`` injects peft LoRA adapters into the
  LLM's attention/MLP projections (their base matrices freeze, everything else keeps its
  ``requires_grad``). LoRA checkpoints store base + adapter tensors (``*.base_layer.*``,
  ``*.lora_A/B.*``): load them into a model prepared with :func:`apply_lora` and the same settings.
* Logging: wandb offline by default (``wandb_mode`` / ``WANDB_MODE``), one tqdm bar on rank 0,
  per-step loss / lr / grad norm / samples/s / data wait / peak memory in
  ``<run_dir>/metrics.jsonl``, ``loss_curve.png`` at the end (:mod:`gr00t.train.logging_callbacks`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.utils.checkpoint
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import Trainer, TrainerCallback, TrainingArguments

from gr00t.paths import config_root
from gr00t.train import checkpoint as ckpt
from gr00t.train.logging_callbacks import (
    LossCurveCallback,
    MetricsFileCallback,
    StepMetrics,
    StepMetricsCallback,
    configure_wandb,
    wandb_report_to,
)
from gr00t.train.optim import OptimizerSettings, build_optimizer, build_scheduler, warmup_steps
from gr00t.train.preemption import DEFAULT_SIGNALS, REQUEUE_EXIT_CODE, PreemptionHandler

logger = logging.getLogger(__name__)

DEFAULT_TORCH_EXTENSIONS_DIR = Path.home() / ".cache" / "gr00t_torch_extensions"
LORA_DEFAULT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainingSettings:
    """Everything the trainer needs besides model and data. Defaults = SPEC §3 finetune recipe."""

    max_steps: int = 10_000
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # optimiser / schedule
    learning_rate: float = 1e-4
    backbone_learning_rate: float | None = None
    weight_decay: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    # checkpoints
    save_steps: int = 1000
    save_total_limit: int | None = 5
    resume: bool = True
    # distribution / precision / memory
    deepspeed: str | None = "auto"  # auto | none | zero2 | zero3 | path/to/config.json
    precision: str = "auto"  # auto | bf16 | fp32
    tf32: bool = True
    gradient_checkpointing: bool = False
    lora_rank: int = 0  # 0 = off; >0 = LoRA adapters on the backbone's LLM layers
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = LORA_DEFAULT_TARGETS
    # data loading
    seed: int = 42
    dataloader_num_workers: int = 2
    dataloader_prefetch_factor: int | None = None
    dataloader_pin_memory: bool = True
    # logging
    logging_steps: int = 10
    wandb_mode: str | None = None  # None: $WANDB_MODE or "offline"; "disabled" turns wandb off
    wandb_project: str = "gr00t"
    run_name: str | None = None
    progress_bar: bool = True
    # preemption
    preemption_signals: tuple[str, ...] = DEFAULT_SIGNALS
    exit_on_preemption: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSettings:
        """Build from a dict (e.g. a Hydra ``trainer`` node), rejecting unknown keys with suggestions."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=2)
                hints.append(f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
            raise ValueError(f"unknown trainer setting(s): {', '.join(hints)}")
        values = dict(data)
        for key in ("lora_target_modules", "preemption_signals"):
            if key in values and values[key] is not None and not isinstance(values[key], str):
                values[key] = tuple(values[key])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject impossible values with a message naming the field."""
        positive = ("max_steps", "per_device_batch_size", "gradient_accumulation_steps", "save_steps", "logging_steps")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"trainer.{name}={getattr(self, name)}: expected an integer >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"trainer.precision={self.precision!r}: expected 'auto', 'bf16' or 'fp32'")
        if self.lora_rank < 0:
            raise ValueError(f"trainer.lora_rank={self.lora_rank}: expected >= 0 (0 disables LoRA)")
        if self.max_grad_norm < 0:
            raise ValueError(f"trainer.max_grad_norm={self.max_grad_norm}: expected >= 0 (0 disables clipping)")
        if self.dataloader_num_workers < 0:
            raise ValueError(f"trainer.dataloader_num_workers={self.dataloader_num_workers}: expected >= 0")
        self.optimizer_settings()  # validates the optimiser fields too
        warmup_steps(self.max_steps, self.warmup_ratio)

    def optimizer_settings(self) -> OptimizerSettings:
        """The optimiser/schedule subset."""
        return OptimizerSettings(
            learning_rate=self.learning_rate,
            backbone_learning_rate=self.backbone_learning_rate,
            weight_decay=self.weight_decay,
            adam_beta1=self.adam_beta1,
            adam_beta2=self.adam_beta2,
            adam_epsilon=self.adam_epsilon,
            warmup_ratio=self.warmup_ratio,
            lr_scheduler=self.lr_scheduler,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


@dataclass
class TrainingResult:
    """What :func:`run_training` returns (on every rank)."""

    global_step: int
    train_loss: float
    last_checkpoint: Path | None
    resumed_from: Path | None
    preempted: bool = False
    global_batch_size: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0, or :data:`REQUEUE_EXIT_CODE` after a preemption."""
        return REQUEUE_EXIT_CODE if self.preempted else 0


# ---------------------------------------------------------------------------------------------
# distribution helpers
# ---------------------------------------------------------------------------------------------
def launcher_world_size() -> int:
    """Number of processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _barrier() -> None:
    if _dist_ready():
        dist.barrier()


def _broadcast(value: Any) -> Any:
    if not _dist_ready():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def resolve_deepspeed_config(choice: str | None, world_size: int) -> dict[str, Any] | None:
    """DeepSpeed config dict for ``choice`` (auto | none | zero2 | zero3 | path), or None for no DeepSpeed."""
    name = (choice or "none").strip()
    if name.lower() == "auto":
        name = "zero2" if world_size > 1 else "none"
    if name.lower() in ("none", "off", "false", "no", ""):
        return None
    path = Path(name)
    if not path.suffix:
        path = config_root() / "deepspeed" / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in (config_root() / "deepspeed").glob("*.json"))
        raise FileNotFoundError(
            f"trainer.deepspeed={choice!r}: no DeepSpeed config at {path}; "
            f"expected 'auto', 'none', one of {available} or a path to a JSON file"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid DeepSpeed JSON ({e})") from e


def resolve_precision(precision: str) -> str:
    """'bf16' or 'fp32' for this machine (auto: bf16 on CUDA with bf16 support, else fp32)."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and not cuda:
        raise ValueError("trainer.precision='bf16' needs a CUDA device; use 'fp32' or 'auto' on CPU")
    return precision


# ---------------------------------------------------------------------------------------------
# model switches
# ---------------------------------------------------------------------------------------------
_BLOCK_LIST_NAMES = ("layers", "blocks", "transformer_blocks", "layer")


def _checkpointed_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)

    run.__gr00t_checkpointed__ = True  # type: ignore[attr-defined]
    return run


def enable_gradient_checkpointing(model: torch.nn.Module) -> list[str]:
    """Recompute the activations of every trainable transformer block during backward.

    Applies to each element of a ``ModuleList`` named ``layers`` / ``blocks`` /
    ``transformer_blocks`` that holds trainable parameters (DiT blocks, the tuned top LLM layers).
    Works whatever the module's train/eval mode (frozen-module handling keeps the LLM in eval mode,
    where transformers' own switch would do nothing); dropout masks are replayed exactly (torch
    restores the RNG state for the recomputation). Returns the names of the wrapped blocks.
    """
    wrapped = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or name.rsplit(".", 1)[-1] not in _BLOCK_LIST_NAMES:
            continue
        for index, block in enumerate(module):
            if not any(p.requires_grad for p in block.parameters()):
                continue
            if getattr(block.forward, "__gr00t_checkpointed__", False):
                continue
            block.forward = _checkpointed_forward(block.forward)
            wrapped.append(f"{name}.{index}")
    if not wrapped:
        raise ValueError(f"gradient_checkpointing=True but {type(model).__name__} has no trainable block list")
    return wrapped


def lora_module_pattern(model: torch.nn.Module, targets: tuple[str, ...]) -> str:
    """Regex for peft matching ``targets`` inside the backbone's language model only."""
    names = [n for n, _ in model.named_modules()]
    llm = [n for n in names if n.endswith("language_model")]
    if not llm:
        raise ValueError(f"lora_rank > 0 but {type(model).__name__} has no '*language_model' sub-module")
    prefix = min(llm, key=len)
    alternatives = "|".join(re.escape(t) for t in targets)
    return "^" + re.escape(prefix) + r"\..*\.(" + alternatives + ")$"


def apply_lora(model: torch.nn.Module, settings: TrainingSettings) -> int:
    """Inject LoRA adapters into the LLM layers in place (peft); returns the number of adapted modules.

    The base weights of adapted layers are frozen; everything else keeps its ``requires_grad``.
    Checkpoints then hold base + adapter tensors (exact resume); merge with peft for deployment.
    """
    from peft import LoraConfig, inject_adapter_in_model

    pattern = lora_module_pattern(model, settings.lora_target_modules)
    trainable_before = {n for n, p in model.named_parameters() if p.requires_grad}
    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=pattern,
        bias="none",
    )
    inject_adapter_in_model(config, model)
    adapted = 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)
            adapted += 1
        elif ".base_layer." in name:
            param.requires_grad_(False)
        else:
            param.requires_grad_(name in trainable_before)
    if adapted == 0:
        raise ValueError(f"LoRA matched no module for targets {settings.lora_target_modules} (pattern {pattern})")
    return adapted // 2


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
class EndlessSampler(Sampler[int]):
    """Chains the epochs of a resumable sampler into one stream (HF then sees one long 'epoch').

    The wrapped sampler starts each ``__iter__`` at its current position and moves to the next epoch
    when exhausted (``gr00t.data.sampler.MixtureSampler`` does both). No ``__len__``: the training
    length is ``max_steps``, so batches may span data-epoch boundaries.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[int]:
        while True:
            produced = False
            for index in self.inner:
                produced = True
                yield index
            if not produced:
                raise RuntimeError(f"sampler {type(self.inner).__name__} produced no index; the dataset is empty")


def _batch_size_of(batch: Any) -> int:
    if isinstance(batch, dict):
        for key in ("embodiment_id", "state", "action"):
            value = batch.get(key)
            if isinstance(value, torch.Tensor):
                return int(value.shape[0])
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                return int(value.shape[0])
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].shape[0])
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__} batch (expected a dict of tensors)")


def _default_sampler(dataset: Dataset, seed: int, rank: int, world_size: int) -> Any:
    from gr00t.data.sampler import MixtureSampler

    return MixtureSampler([len(dataset)], seed=seed, rank=rank, world_size=world_size)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the Trainer subclass
# ---------------------------------------------------------------------------------------------
class Gr00tTrainer(Trainer):
    """HF Trainer with our optimiser/schedule, sampler-based data position and atomic checkpoints."""

    def __init__(
        self,
        *args: Any,
        settings: TrainingSettings,
        run_dir: Path,
        sampler: Any,
        processor: Any | None = None,
        artifacts: dict[str, Any] | None = None,
        preemption: PreemptionHandler | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.sampler = sampler
        self.processor = processor
        self.artifacts = artifacts or {}
        self.preemption = preemption
        self.samples_consumed_local = 0  # samples this rank fed to the model since the start of training
        world = max(1, self.args.world_size)
        self.global_batch_size = settings.per_device_batch_size * world * settings.gradient_accumulation_steps
        self.step_metrics = StepMetrics(self.global_batch_size)
        self.add_callback(StepMetricsCallback(self.step_metrics))
        self.last_saved_checkpoint: Path | None = None

    # ---- optimiser / schedule ---------------------------------------------------------------
    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.model if model is None else model, self.settings.optimizer_settings())
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            self.lr_scheduler = build_scheduler(
                optimizer or self.optimizer, self.settings.max_steps, self.settings.optimizer_settings()
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        changed = self._optimizer_state_mismatch(checkpoint) if checkpoint is not None else None
        if changed is None:
            super()._load_optimizer_and_scheduler(checkpoint)
        else:  # e.g. tune_* switched on resume: the stored AdamW moments belong to other parameters
            logger.warning("resuming from %s with fresh optimiser moments: %s (the schedule position is kept)",
                           checkpoint, changed)
            scheduler_file = Path(checkpoint) / "scheduler.pt"
            if self.lr_scheduler is not None and scheduler_file.is_file():
                self.lr_scheduler.load_state_dict(torch.load(scheduler_file, weights_only=True))
        # The stored schedule carries the old run's max_steps; the schedule must follow this run's.
        if checkpoint is not None and self.lr_scheduler is not None:
            for fn in getattr(self.lr_scheduler, "lr_lambdas", []):
                if hasattr(fn, "max_steps"):
                    fn.max_steps = self.settings.max_steps
                    fn.warmup = warmup_steps(self.settings.max_steps, self.settings.warmup_ratio)

    def _optimizer_state_mismatch(self, checkpoint: str) -> str | None:
        """Why the checkpoint's optimizer.pt cannot be loaded into this optimiser (None when it can).

        Only shapes are looked at (memory-mapped load: the moments themselves are not read).
        """
        path = Path(checkpoint) / "optimizer.pt"
        if self.is_deepspeed_enabled or self.optimizer is None or not path.is_file():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        groups = self.optimizer.param_groups
        saved_sizes = [len(g["params"]) for g in saved.get("param_groups", [])]
        sizes = [len(g["params"]) for g in groups]
        if saved_sizes != sizes:
            return f"the trainable parameter groups held {saved_sizes} tensors, now {sizes}"
        saved_ids = [i for g in saved["param_groups"] for i in g["params"]]
        for index, param in zip(saved_ids, (p for g in groups for p in g["params"])):
            moment = saved.get("state", {}).get(index, {}).get("exp_avg")
            if moment is not None and tuple(moment.shape) != tuple(param.shape):
                return f"a trainable tensor had shape {list(moment.shape)}, its counterpart now {list(param.shape)}"
        return None

    # ---- data -------------------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        # A plain DataLoader: the sampler is already rank-sharded (accelerate must not re-shard it)
        # and resumes by itself (no batch skipping).
        s = self.settings
        workers = s.dataloader_num_workers
        generator = torch.Generator().manual_seed(s.seed + 1_000_003 * self.args.process_index)
        return DataLoader(
            self.train_dataset,
            batch_size=s.per_device_batch_size,
            sampler=EndlessSampler(self.sampler),
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=s.dataloader_pin_memory and torch.cuda.is_available(),
            prefetch_factor=(s.dataloader_prefetch_factor or 2) if workers > 0 else None,
            persistent_workers=False,
            generator=generator,
        )

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        start = time.perf_counter()
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self.step_metrics.add_data_wait(time.perf_counter() - start)
        self.samples_consumed_local += sum(_batch_size_of(b) for b in batches)
        return batches, num_items

    def data_state(self) -> dict[str, Any]:
        """Sampler state at the current data position (global draws consumed by all ranks)."""
        consumed = self.samples_consumed_local * max(1, self.args.world_size)
        state = self.sampler.state_dict(consumed=consumed)
        state["world_size"] = max(1, self.args.world_size)
        state["global_step"] = self.state.global_step
        return state

    def restore_data_state(self, checkpoint: Path) -> None:
        """Position the sampler right after the last sample consumed before ``checkpoint``."""
        state = ckpt.read_data_state(checkpoint)
        if state is None:
            raise FileNotFoundError(
                f"{checkpoint / ckpt.DATA_STATE_NAME} is missing: cannot restore the data position of this checkpoint"
            )
        state = {k: v for k, v in state.items() if k not in ("world_size", "global_step")}
        self.sampler.load_state_dict(state)
        world = max(1, self.args.world_size)
        self.samples_consumed_local = int(state["consumed"]) // world

    # ---- logging ----------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self.step_metrics.collect(self.state.global_step))
            logs["samples_seen"] = self.samples_consumed_local * max(1, self.args.world_size)
        super().log(logs, start_time)

    # ---- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        step = self.state.global_step
        pid = _broadcast(os.getpid())
        tmp = ckpt.temp_checkpoint_dir(self.run_dir, step, pid)
        if self.args.should_save:
            tmp.mkdir(parents=True, exist_ok=True)
        _barrier()
        started = time.perf_counter()
        self.store_flos()
        self.save_model(str(tmp), _internal_call=True)
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(str(tmp))
            self._save_scaler(str(tmp))
            self._save_rng_state(str(tmp))
        if self.args.should_save:
            self.state.save_to_json(str(tmp / "trainer_state.json"))
            self._write_artifacts(tmp)
        _barrier()
        final = None
        if self.args.should_save:
            final = ckpt.publish(tmp, step)
            removed = ckpt.rotate(self.run_dir, self.settings.save_total_limit)
            for path in removed:
                logger.info("removed old checkpoint %s (save_total_limit=%s)", path, self.settings.save_total_limit)
            logger.info("saved %s in %.1fs", final, time.perf_counter() - started)
        _barrier()
        self.last_saved_checkpoint = ckpt.checkpoint_dir(self.run_dir, step)

    def _write_artifacts(self, directory: Path) -> None:
        ckpt.write_json_atomic(directory / ckpt.DATA_STATE_NAME, self.data_state())
        ckpt.write_json_atomic(directory / ckpt.SETTINGS_NAME, self.settings.to_dict())
        if self.processor is not None:
            self.processor.save_pretrained(str(directory))
        stats = self.artifacts.get("statistics")
        if stats is not None:
            ckpt.write_json_atomic(directory / ckpt.STATISTICS_NAME, _jsonable(stats))
        emb = self.artifacts.get("embodiment_map")
        if emb is not None:
            ckpt.write_json_atomic(directory / ckpt.EMBODIMENT_MAP_NAME, dict(emb))
        exp = self.artifacts.get("experiment_config")
        if exp is not None:
            ckpt.write_text_atomic(directory / ckpt.EXPERIMENT_CONFIG_NAME, _as_yaml(exp))


class _StopOnPreemption(TrainerCallback):
    """After each optimiser step: if any rank got a preemption signal, save and stop."""

    def __init__(self, handler: PreemptionHandler) -> None:
        self.handler = handler
        self.triggered_at_step: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.handler.sync() and self.triggered_at_step is None:
            self.triggered_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    return obj


def _as_yaml(config: Any) -> str:
    if isinstance(config, str):
        return config
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(_jsonable(config)))


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def _training_arguments(settings: TrainingSettings, run_dir: Path, report_to: list[str]) -> TrainingArguments:
    world_size = launcher_world_size()
    ds_config = resolve_deepspeed_config(settings.deepspeed, world_size)
    if ds_config is not None:
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(DEFAULT_TORCH_EXTENSIONS_DIR))
    precision = resolve_precision(settings.precision)
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(run_dir),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        adam_epsilon=settings.adam_epsilon,
        max_grad_norm=settings.max_grad_norm,
        warmup_steps=settings.warmup_ratio,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        seed=settings.seed,
        bf16=precision == "bf16",
        tf32=bool(settings.tf32 and cuda and precision == "bf16"),
        use_cpu=not cuda,
        deepspeed=ds_config,
        report_to=report_to,
        run_name=settings.run_name,
        disable_tqdm=not settings.progress_bar,
        ignore_data_skip=True,
        remove_unused_columns=False,
        label_names=[],
        dataloader_num_workers=settings.dataloader_num_workers,
        ddp_find_unused_parameters=False,
        save_only_model=False,
        include_num_input_tokens_seen="no",
    )


def run_training(
    model: torch.nn.Module,
    train_dataset: Dataset,
    collator: Callable[[list[Any]], dict[str, Any]],
    settings: TrainingSettings | dict[str, Any],
    run_dir: str | Path,
    *,
    processor: Any | None = None,
    sampler: Any | Callable[[int, int], Any] | None = None,
    statistics: dict[str, Any] | None = None,
    embodiment_map: dict[str, int] | None = None,
    experiment_config: dict[str, Any] | str | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> TrainingResult:
    """Train ``model`` to ``settings.max_steps`` steps, resuming from ``run_dir`` when possible.

    See the module docstring for the contract. Exits the process with
    :data:`~gr00t.train.preemption.REQUEUE_EXIT_CODE` after a preemption checkpoint when
    ``settings.exit_on_preemption`` is true.
    """
    if isinstance(settings, dict):
        settings = TrainingSettings.from_dict(settings)
    settings.validate()
    run_dir = Path(run_dir).resolve()
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    report_to = wandb_report_to(settings.wandb_mode)
    args = _training_arguments(settings, run_dir, report_to)  # initialises torch.distributed if launched
    world_size = max(1, args.world_size)
    rank = args.process_index

    # ---- resume decision (rank 0 decides and cleans up, everyone follows) ---------------------
    resume_from: Path | None = None
    if args.should_save:
        run_dir.mkdir(parents=True, exist_ok=True)
        for removed in ckpt.remove_incomplete(run_dir):
            logger.warning("removed incomplete checkpoint %s", removed)
        if settings.resume:
            resume_from = ckpt.latest_checkpoint(run_dir)
        else:
            archived = ckpt.archive_checkpoints(run_dir)
            if archived is not None:
                logger.warning("resume=false: previous checkpoints moved to %s", archived)
        (run_dir / ckpt.PREEMPTED_MARKER).unlink(missing_ok=True)
        configure_wandb(run_dir, settings.wandb_mode, settings.wandb_project, settings.run_name)
    resume_from = _broadcast(resume_from)

    # ---- model switches ---------------------------------------------------------------------
    if settings.lora_rank > 0:
        n = apply_lora(model, settings)
        logger.info("LoRA r=%d on %d LLM modules", settings.lora_rank, n)
    if settings.gradient_checkpointing:
        blocks = enable_gradient_checkpointing(model)
        logger.info("gradient checkpointing on %d blocks", len(blocks))
    changed: dict[str, tuple[Any, Any]] = {}
    if resume_from is not None:
        # Fail here, naming what changed, rather than deep inside the HF checkpoint loading.
        changed = ckpt.check_resume_compatible(resume_from, model)
        if changed:
            logger.info("resuming from %s with changed config fields (same parameters): %s", resume_from,
                        ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()))

    # ---- sampler ----------------------------------------------------------------------------
    if sampler is None:
        sampler = _default_sampler(train_dataset, settings.seed, rank, world_size)
    elif callable(sampler) and not hasattr(sampler, "state_dict"):
        sampler = sampler(rank, world_size)
    for needed in ("state_dict", "load_state_dict", "__iter__"):
        if not hasattr(sampler, needed):
            raise TypeError(f"sampler {type(sampler).__name__} lacks {needed}(); expected a resumable MixtureSampler")

    handler = PreemptionHandler(settings.preemption_signals)
    all_callbacks: list[TrainerCallback] = [
        _StopOnPreemption(handler),
        MetricsFileCallback(run_dir),
        LossCurveCallback(run_dir),
        *(callbacks or []),
    ]
    trainer = Gr00tTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        callbacks=all_callbacks,
        settings=settings,
        run_dir=run_dir,
        sampler=sampler,
        processor=processor,
        artifacts={
            "statistics": statistics,
            "embodiment_map": embodiment_map,
            "experiment_config": experiment_config,
        },
        preemption=handler,
    )
    if resume_from is not None:
        trainer.restore_data_state(resume_from)
        switched = sorted(k for k in changed if k.startswith("tune_") or k == "backbone_trainable_params_fp32")
        if switched and trainer.is_deepspeed_enabled:
            raise ckpt.ResumeMismatchError(
                f"cannot resume from {resume_from} under DeepSpeed with other trainable parameters "
                f"({', '.join(f'{k}: {changed[k][0]!r} -> {changed[k][1]!r}' for k in switched)}): the engine's "
                "optimizer state must match them. Keep the checkpoint's tune_* settings, resume without DeepSpeed, "
                "or start over with resume=false / a new run_dir (finetune from it with base=<checkpoint>)."
            )
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mode = "no DeepSpeed"
    if trainer.is_deepspeed_enabled:
        mode = f"DeepSpeed ZeRO-{trainer.accelerator.state.deepspeed_plugin.zero_stage}"
    logger.info(
        "effective global batch = %d per device x %d processes x %d accumulation = %d; "
        "max_steps=%d, warmup=%d, deepspeed=%s, precision=%s, trainable params=%s, resume from %s",
        settings.per_device_batch_size,
        world_size,
        settings.gradient_accumulation_steps,
        trainer.global_batch_size,
        settings.max_steps,
        warmup_steps(settings.max_steps, settings.warmup_ratio),
        mode,
        "bf16" if args.bf16 else "fp32",
        f"{n_trainable:,}",
        resume_from or "scratch",
    )
    if rank == 0:
        print(
            f"[gr00t] global batch {trainer.global_batch_size} = {settings.per_device_batch_size} per device "
            f"x {world_size} processes x {settings.gradient_accumulation_steps} accumulation; {mode}, "
            f"{'bf16' if args.bf16 else 'fp32'}; "
            f"{'resuming from ' + str(resume_from) if resume_from else 'starting from scratch'}",
            flush=True,
        )

    preempted_cb = all_callbacks[0]
    assert isinstance(preempted_cb, _StopOnPreemption)
    with handler:
        if resume_from is not None and _step_of(resume_from) >= settings.max_steps:
            output = None
            logger.info("checkpoint %s already reached max_steps=%d; nothing to do", resume_from, settings.max_steps)
        else:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    preempted = preempted_cb.triggered_at_step is not None
    _finish_wandb(report_to)

    last = ckpt.latest_checkpoint(run_dir)
    result = TrainingResult(
        global_step=trainer.state.global_step if output is not None else _step_of(resume_from),
        train_loss=float(output.training_loss) if output is not None else float("nan"),
        last_checkpoint=last,
        resumed_from=resume_from,
        preempted=preempted,
        global_batch_size=trainer.global_batch_size,
        metrics=dict(output.metrics) if output is not None else {},
    )
    if preempted:
        if args.should_save:
            ckpt.write_json_atomic(
                run_dir / ckpt.PREEMPTED_MARKER,
                {"step": result.global_step, "signal": handler.signal_name, "checkpoint": str(last)},
            )
        _barrier()
        logger.warning("preempted at step %d; checkpoint %s; exit code %d", result.global_step, last, REQUEUE_EXIT_CODE)
        if settings.exit_on_preemption:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.exit(REQUEUE_EXIT_CODE)
    return result


def _step_of(path: Path | None) -> int:
    return 0 if path is None else ckpt.checkpoint_step(path)


def _finish_wandb(report_to: list[str]) -> None:
    if "wandb" not in report_to:
        return
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as e:  # never fail a finished training over its logger
        logger.warning("wandb.finish failed: %s", e)


__all__ = [
    "REQUEUE_EXIT_CODE",
    "EndlessSampler",
    "Gr00tTrainer",
    "TrainingResult",
    "TrainingSettings",
    "apply_lora",
    "enable_gradient_checkpointing",
    "resolve_deepspeed_config",
    "run_training",
]
