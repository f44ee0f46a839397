"""Training: the entry point (`trainer.run_training`) and the HF Trainer subclass (`gr00t_trainer`),
settings (`settings`), HF arguments with DeepSpeed/precision choice (`arguments`), data loading
(`loader`), the run directory — checkpoint layout, atomic publish, rotation, lock, resume state —
(`run_dir`, with `resume_check` and `run_lock`), the private HF overrides (`hf_private`), weight EMA
(`ema`), validation loss (`validation`), preemption (`preemption`), trainers that die with their
launcher (`lifetime`), optimiser/schedule (`optim`), LoRA (`lora`), gradient checkpointing
(`grad_checkpointing`), process group helpers (`distributed`), logging (`logging_callbacks`) and
building a run from the Hydra config (`build`, `build_data`, `build_model`).

Submodules are imported explicitly (e.g. ``from gr00t.train.trainer import run_training``) so that
importing this package stays cheap.
"""
