"""Language channels of an embodiment and the rule that turns them into one instruction.

An embodiment names one or more language channels (`language.keys`), e.g. the episode's task
``annotation.human.task_description`` and a per-frame ``annotation.human.subtask``. Each sample
(and each policy observation) carries one text per channel; the model sees one instruction, chosen
by the embodiment's ``language.combine`` rule::

    language:
      keys: [annotation.human.task_description, annotation.human.subtask]
      combine: {mode: sample, probabilities: {annotation.human.task_description: 0.3,
                                              annotation.human.subtask: 0.7}}
      # or:    {mode: template, template: "{annotation.human.task_description}: {annotation.human.subtask}"}

* ``first`` (the default, and the only mode for a single channel): the first channel's text.
* ``sample``: training draws one channel per sample with the given probabilities (channels left
  out have probability 0; the probabilities sum to 1), from the sample's augmentation stream, so a
  resumed run draws the same. Evaluation and the policy take the most probable channel (the first
  listed on a tie) — deterministic.
* ``template``: the template with every ``{<channel key>}`` replaced by that channel's text, in
  training and at inference alike.

Empty texts (a frame without a sub-task label, a client that did not send a channel) never reach
the model as empty fields: ``sample`` draws among the channels that have text (probabilities
renormalised; the most probable of them at inference), ``template`` is used only when every
channel it names has text. Otherwise the text is that of the first channel, in `keys` order, that
has one ("" if none has).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

COMBINE_MODES = ("first", "sample", "template")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class LanguageConfig:
    """Language channels (keys), their frame window and how they combine into one instruction."""

    keys: tuple[str, ...]
    delta_indices: tuple[int, ...] = (0,)
    mode: str = "first"
    probabilities: tuple[float, ...] = ()  # sample mode: one per key
    template: str | None = None  # template mode

    @property
    def multi(self) -> bool:
        """Whether samples carry several channels (a `{key: text}` mapping instead of a string)."""
        return len(self.keys) > 1

    def choose(self, texts: str | Mapping[str, str], rng: np.random.Generator | None = None) -> str:
        """The instruction for one sample: ``texts`` maps channel keys to texts (missing = empty; a
        plain string is the first channel's text). ``rng``: training draw (sample mode); None:
        the deterministic choice used in evaluation and by the policy."""
        if isinstance(texts, str):
            if not self.multi:
                return texts
            texts = {self.keys[0]: texts}
        have = {k: str(texts.get(k) or "") for k in self.keys}
        fallback = next((have[k] for k in self.keys if have[k]), "")
        if self.mode == "template":
            assert self.template is not None
            names = _PLACEHOLDER.findall(self.template)
            if not all(have[n] for n in names):
                return fallback
            return _PLACEHOLDER.sub(lambda m: have[m.group(1)], self.template)
        if self.mode == "sample":
            p = np.array([q if have[k] else 0.0 for k, q in zip(self.keys, self.probabilities)])
            if p.sum() <= 0:
                return fallback
            if rng is None:
                return have[self.keys[int(np.argmax(p))]]
            return have[self.keys[int(rng.choice(len(p), p=p / p.sum()))]]
        return have[self.keys[0]]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keys": list(self.keys), "delta_indices": list(self.delta_indices)}
        if self.mode == "sample":
            out["combine"] = {"mode": "sample", "probabilities": dict(zip(self.keys, self.probabilities))}
        elif self.mode == "template":
            out["combine"] = {"mode": "template", "template": self.template}
        return out


class _Checks(Protocol):
    """The embodiment parser's helpers (gr00t.data.embodiment._Parser)."""

    def fail(self, key: str, message: str) -> ValueError: ...
    def mapping(self, key: str, value: Any) -> Mapping[str, Any]: ...
    def check_known(self, where: str, data: Mapping[str, Any], allowed: Any) -> None: ...
    def str_list(self, key: str, value: Any, allow_empty: bool = False) -> tuple[str, ...]: ...
    def int_list(self, key: str, value: Any) -> tuple[int, ...]: ...
    def choice(self, key: str, value: Any, choices: Any) -> str: ...


def parse_language(data: Any, p: _Checks) -> LanguageConfig:
    """Validate an embodiment's ``language`` section; errors name the dotted key."""
    data = p.mapping("language", data)
    p.check_known("language", data, ("keys", "delta_indices", "combine"))
    if "keys" not in data:
        raise p.fail("language.keys", "missing")
    keys = p.str_list("language.keys", data["keys"])
    deltas = p.int_list("language.delta_indices", data.get("delta_indices", [0]))
    combine = data.get("combine")
    if combine is None:
        return LanguageConfig(keys, deltas)
    combine = p.mapping("language.combine", combine)
    mode = p.choice("language.combine.mode", combine.get("mode"), COMBINE_MODES)
    allowed = {"first": ("mode",), "sample": ("mode", "probabilities"), "template": ("mode", "template")}
    p.check_known("language.combine", combine, allowed[mode])
    if mode == "sample":
        return LanguageConfig(keys, deltas, mode, probabilities=_probabilities(combine, keys, p))
    if mode == "template":
        return LanguageConfig(keys, deltas, mode, template=_template(combine, keys, p))
    return LanguageConfig(keys, deltas)


def _probabilities(combine: Mapping[str, Any], keys: tuple[str, ...], p: _Checks) -> tuple[float, ...]:
    where = "language.combine.probabilities"
    probs = p.mapping(where, combine.get("probabilities"))
    for key, value in probs.items():
        if key not in keys:
            raise p.fail(f"{where}.{key}", f"not a language key; the keys are {list(keys)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise p.fail(f"{where}.{key}", f"expected a probability in [0, 1], got {value!r}")
    total = float(sum(probs.values()))
    if abs(total - 1.0) > 1e-6:
        raise p.fail(where, f"the probabilities must sum to 1, got {total:g}")
    return tuple(float(probs.get(k, 0.0)) for k in keys)


def _template(combine: Mapping[str, Any], keys: tuple[str, ...], p: _Checks) -> str:
    where = "language.combine.template"
    template = combine.get("template")
    if not isinstance(template, str) or not template.strip():
        raise p.fail(where, f"expected a non-empty string with {{<language key>}} fields, got {template!r}")
    names = _PLACEHOLDER.findall(template)
    if not names:
        raise p.fail(where, f"names no language key; write fields like {{{keys[0]}}}")
    for name in names:
        if name not in keys:
            raise p.fail(where, f"field {{{name}}} is not a language key; the keys are {list(keys)}")
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        raise p.fail(where, f"unbalanced brace in {template!r}")
    return template
