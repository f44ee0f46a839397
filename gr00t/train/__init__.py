"""Training: the HF Trainer subclass and its entry point (`trainer.run_training`), settings
(`settings`), HF arguments with DeepSpeed/precision choice (`arguments`), data loading (`loader`),
checkpoints and resume (`checkpoint`, `artifacts`, `optimizer_state`), preemption (`preemption`),
one trainer per run directory (`run_lock`), trainers that die with their launcher (`lifetime`),
optimiser/schedule (`optim`), LoRA (`lora`), gradient checkpointing (`grad_checkpointing`), process
group helpers (`distributed`), logging (`logging_callbacks`) and building a run from the Hydra
config (`build`).

Submodules are imported explicitly (e.g. ``from gr00t.train.trainer import run_training``) so that
importing this package stays cheap.
"""
