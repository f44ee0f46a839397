"""Training: the HF Trainer subclass and its entry point (`trainer.run_training`), checkpoints and
resume (`checkpoint`), preemption (`preemption`), optimiser/schedule (`optim`), logging
(`logging_callbacks`) and building a run from the Hydra config (`build`).

Submodules are imported explicitly (e.g. ``from gr00t.train.trainer import run_training``) so that
importing this package stays cheap.
"""
