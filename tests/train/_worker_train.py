"""Training worker for the trainer tests: `python _worker_train.py ...` or under `torchrun`.

Trains the real tiny model through `gr00t.train.trainer.run_training`; optional fault injection:
  --kill-after-save N     SIGKILL this process right after checkpoint-N has been published
  --kill-during-save N    SIGKILL this process while checkpoint-N is being written (weights on disk,
                          optimizer state and completion marker not yet)
  --step-sleep S          sleep S seconds after every optimiser step (gives a test time to signal)
  --write-pid             write <run-dir>/worker-<rank>.pid (to signal one rank of a torchrun job)
  --tune-llm              model config tune_llm=True (another trainable set, same parameters)
Prints `RESULT_JSON {...}` on rank 0 when training returns.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pipeline import build_pipeline  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from gr00t.train.trainer import Gr00tTrainer, TrainingSettings, run_training  # noqa: E402


class _KillAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class _Sleep(TrainerCallback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run-dir", required=True)
    p.add_argument("--data", required=True, help="demo dataset prepared by _pipeline.prepare_demo_data")
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--save-steps", type=int, default=2)
    p.add_argument("--save-total-limit", type=int, default=None)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.05)
    p.add_argument("--scheduler", default="cosine")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--deepspeed", default="auto")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--kill-after-save", type=int, default=None)
    p.add_argument("--kill-during-save", type=int, default=None)
    p.add_argument("--step-sleep", type=float, default=0.0)
    p.add_argument("--write-pid", action="store_true", help="write <run-dir>/worker-<rank>.pid at start")
    p.add_argument("--tune-llm", action="store_true", help="train the whole LLM (model config tune_llm=True)")
    p.add_argument("--model-dtype", default=None, help="model config model_dtype (n16_tiny: float32)")
    p.add_argument("--precision", default="auto")
    a = p.parse_args()
    if a.write_pid:
        Path(a.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(a.run_dir) / f"worker-{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))

    overrides = {"tune_llm": True} if a.tune_llm else {}
    if a.model_dtype:
        overrides["model_dtype"] = a.model_dtype
    model, dataset, collator, processor, stats = build_pipeline(a.data, **overrides)
    settings = TrainingSettings(
        max_steps=a.max_steps,
        per_device_batch_size=a.batch,
        gradient_accumulation_steps=a.accum,
        learning_rate=a.lr,
        warmup_ratio=a.warmup_ratio,
        lr_scheduler=a.scheduler,
        save_steps=a.save_steps,
        save_total_limit=a.save_total_limit,
        logging_steps=1,
        seed=7,
        deepspeed=a.deepspeed,
        precision=a.precision,
        dataloader_num_workers=a.workers,
        resume=not a.no_resume,
        wandb_mode="disabled",
        progress_bar=False,
    )
    callbacks = []
    if a.kill_after_save is not None:
        callbacks.append(_KillAfterSave(a.kill_after_save))
    if a.step_sleep:
        callbacks.append(_Sleep(a.step_sleep))
    if a.kill_during_save is not None:
        original = Gr00tTrainer._save_optimizer_and_scheduler
        target = a.kill_during_save

        def crashing(self, output_dir):
            if self.state.global_step == target:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, output_dir)

        Gr00tTrainer._save_optimizer_and_scheduler = crashing  # fault injection only

    result = run_training(
        model,
        dataset,
        collator,
        settings,
        a.run_dir,
        processor=processor,
        statistics=stats,
        embodiment_map=processor.embodiment_id_map(),
        experiment_config={"recipe": "test", "trainer": settings.to_dict()},
        callbacks=callbacks,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        payload = {
            "global_step": result.global_step,
            "train_loss": result.train_loss,
            "last_checkpoint": str(result.last_checkpoint),
            "resumed_from": str(result.resumed_from) if result.resumed_from else None,
            "preempted": result.preempted,
            "global_batch_size": result.global_batch_size,
            "dtypes": {n: str(p.dtype) for n, p in model.named_parameters()},
        }
        print("RESULT_JSON " + json.dumps(payload), flush=True)


if __name__ == "__main__":
    main()
