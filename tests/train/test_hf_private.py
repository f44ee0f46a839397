"""The private HF Trainer methods we rely on still exist with the signatures we checked, and only
`gr00t.train.hf_private` overrides private Trainer methods."""

from __future__ import annotations

import inspect

from transformers import Trainer

from gr00t.train import hf_private
from gr00t.train.gr00t_trainer import Gr00tTrainer
from gr00t.train.hf_private import HF_PRIVATE_API, PrivateTrainerHooks, signature_of


def test_private_trainer_methods_keep_their_signatures() -> None:
    for name, expected in HF_PRIVATE_API.items():
        method = getattr(Trainer, name, None)
        assert method is not None, (
            f"transformers' Trainer no longer has {name}: update gr00t/train/hf_private.py"
        )
        assert signature_of(method) == expected, (
            f"Trainer.{name} changed its signature to {signature_of(method)} (checked: {expected}); "
            "update gr00t/train/hf_private.py"
        )


def test_private_overrides_live_in_one_module() -> None:
    """Every private Trainer method our trainer classes override is defined in hf_private and listed."""
    ours = [cls for cls in Gr00tTrainer.__mro__ if cls.__module__.startswith("gr00t.")]
    overridden = {
        (cls, name)
        for cls in ours
        for name in vars(cls)
        if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name)
    }
    assert overridden, "the trainer overrides no private method: drop hf_private or this test"
    for cls, name in overridden:
        assert cls is PrivateTrainerHooks and cls.__module__ == hf_private.__name__, (
            f"{cls.__module__}.{cls.__name__} overrides Trainer.{name}; keep private overrides in hf_private"
        )
        assert name in HF_PRIVATE_API, f"{name} is overridden but not listed in HF_PRIVATE_API"


def test_private_calls_are_listed() -> None:
    """The private Trainer methods hf_private calls are all in HF_PRIVATE_API (so the test above guards them)."""
    source = inspect.getsource(hf_private)
    called = {name for name in dir(Trainer) if name.startswith("_") and not name.startswith("__")}
    used = {name for name in called if f"self.{name}(" in source or f"def {name}(" in source}
    assert used and used <= set(HF_PRIVATE_API), sorted(used - set(HF_PRIVATE_API))
    assert "_internal_call=True" in source and "_internal_call=False" in HF_PRIVATE_API["save_model"]
