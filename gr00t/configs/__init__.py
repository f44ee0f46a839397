"""The shipped configuration and its schema.

YAML (package data, found through `gr00t.paths`): `recipes/`, the Hydra config groups `model/`,
`trainer/`, `launcher/` and `embodiment/`, plus `data_mixtures/` and `deepspeed/`.
Python: `schema.py` (structured configs: types, choices, defaults), `compose.py` (Hydra compose
of recipes and presets), `errors.py` (one-line explanations of composition errors).
"""
