"""One-line explanations of Hydra / OmegaConf composition errors, with did-you-mean hints.

Hydra and OmegaConf do the checking (struct mode, typed nodes, enums); this module only turns
their exceptions into a single line that names the key, the value and what was expected, with the
valid keys or choices taken from the schema node that rejected it.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Sequence
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A command-line setting or a config value is invalid; the message lists the valid choices."""


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """`" Did you mean 'x'?"` for the closest choice, or an empty string."""
    hint = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" Did you mean {hint[0]!r}?" if hint else ""


def dotted_paths(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key below `node` (mappings only)."""
    out: list[str] = []
    if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
        for key in node.keys():
            path = f"{prefix}{key}"
            out.append(path)
            out.extend(dotted_paths(node._get_node(key), path + "."))
    return out


def _unknown_key(exc: OmegaConfBaseException, add_hint: bool) -> str:
    full_key = str(exc.full_key or exc.key)
    parent = exc.parent_node
    where, _, part = full_key.rpartition(".")
    siblings = [str(k) for k in parent.keys() if k != "hydra"] if isinstance(parent, DictConfig) else []
    prefix = f"{where}." if where else ""
    close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.6)
    suggestion = prefix + close[0] if close else None
    if suggestion is None and isinstance(parent, DictConfig):
        # a key at the wrong level, e.g. `max_steps=5` for `trainer.max_steps=5`
        paths = dotted_paths(parent._get_root())
        same_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == part and p != full_key]
        close = same_leaf or difflib.get_close_matches(full_key, paths, n=1, cutoff=0.8)
        suggestion = close[0] if close else None
    hint = f" Did you mean {suggestion!r}?" if suggestion else ""
    scope = f"'{where}'" if where else "the top level"
    add = f" (Use +{full_key}=... to add a new key on purpose.)" if add_hint else ""
    return f"unknown key {full_key!r}: {scope} has no key {part!r}.{hint} Valid keys of {scope}: {sorted(siblings)}.{add}"


def _expected(ref_type: Any) -> tuple[str, list[str]]:
    """What a typed node accepts, and its choices (enums)."""
    origin = getattr(ref_type, "__origin__", None)
    if origin is not None and type(None) in getattr(ref_type, "__args__", ()):  # Optional[X]
        inner = [a for a in ref_type.__args__ if a is not type(None)]
        text, choices = _expected(inner[0]) if len(inner) == 1 else ("a value", [])
        return text + " or null", choices
    if isinstance(ref_type, type) and issubclass(ref_type, enum.Enum):
        names = [m.name for m in ref_type]
        return f"one of {names}", names
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if ref_type in names:
        return names[ref_type], []
    return f"a value of type {getattr(ref_type, '__name__', ref_type)}", []


def _bad_value(exc: OmegaConfBaseException, value: Any) -> str:
    full_key = str(exc.full_key or exc.key)
    parent = exc.parent_node
    ref_type: Any = None
    optional = False
    if isinstance(parent, DictConfig) and exc.key is not None:
        child = parent._get_node(exc.key, validate_access=False)
        if child is not None:
            ref_type, optional = child._metadata.ref_type, child._metadata.optional
    if ref_type is None:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{full_key}={value!r}: {first}"
    text, choices = _expected(ref_type)
    text += " or null" if optional and not text.endswith("or null") else ""
    hint = did_you_mean(str(value), choices, cutoff=0.5) if choices else ""
    return f"{full_key}={value!r}: expected {text}.{hint}"


def explain(exc: BaseException, values: dict[str, Any] | None = None, add_hint: bool = True) -> str:
    """One line for a Hydra/OmegaConf error. `values`: the overridden key -> value as typed;
    `add_hint`: mention Hydra's `+key=value` for unknown keys."""
    values = values or {}
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        return _unknown_key(cause, add_hint)
    if isinstance(cause, ValidationError) and (cause.full_key or cause.key):
        key = str(cause.full_key or cause.key)
        value = values.get(key, getattr(cause, "value", None))
        return _bad_value(cause, value)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def missing_option(group: str, value: str, options: Sequence[str]) -> str:
    """The line for a config group option that does not exist."""
    return (
        f"{group}={value!r}: no such {group} config. Valid choices for {group}: {sorted(options)}."
        f"{did_you_mean(value, options)}"
    )
