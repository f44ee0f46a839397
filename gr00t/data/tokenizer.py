"""Tokenizers for the vision-language backbone.

`build_tiny_tokenizer()` trains, fully offline and deterministically, a small byte-level BPE
tokenizer shaped like the Qwen tokenizers of the real backbones: the same special tokens
(chat markers, Eagle image markers, Qwen3-VL vision markers) at fixed ids below 1024, a
Qwen-style chat template and left padding. It backs the tiny model preset (`n16_tiny`) used by
the tests and the demo. `load_tokenizer()` loads a real one through `AutoTokenizer`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from gr00t import atomic

TINY_VOCAB_SIZE = 1024
TINY_BPE_SIZE = 1000  # ordinary (trained) tokens occupy ids 0..999

IMG_CONTEXT_TOKEN = "<IMG_CONTEXT>"
IMG_START_TOKEN = "<img>"
IMG_END_TOKEN = "</img>"
PAD_TOKEN = "<|endoftext|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"
IMAGE_PAD_TOKEN = "<|image_pad|>"
VIDEO_PAD_TOKEN = "<|video_pad|>"

# Special tokens of the tiny tokenizer and their fixed ids (gr00t/configs/model/n16_tiny.yaml and
# gr00t/configs/model/qwen3_vl_tiny.yaml refer to these numbers).
TINY_SPECIAL_TOKENS: dict[str, int] = {
    IMG_CONTEXT_TOKEN: 1000,
    IMG_START_TOKEN: 1001,
    IMG_END_TOKEN: 1002,
    PAD_TOKEN: 1003,
    IM_START_TOKEN: 1004,
    IM_END_TOKEN: 1005,
    VISION_START_TOKEN: 1006,
    VISION_END_TOKEN: 1007,
    IMAGE_PAD_TOKEN: 1008,
    VIDEO_PAD_TOKEN: 1009,
}
_RESERVED = [f"<|reserved_{i}|>" for i in range(TINY_VOCAB_SIZE - TINY_BPE_SIZE - len(TINY_SPECIAL_TOKENS))]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Qwen-style template: a default system turn unless the conversation starts with one; string
# content only (the VLM input builder writes image placeholders into the text itself).
QWEN_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SUBJECTS = (
    "the robot|the arm|the gripper|the left hand|the right hand|the humanoid|you|the agent|"
    "the manipulator|the mobile base"
).split("|")
_VERBS = (
    "pick up|place|put|move|push|pull|open|close|grasp|lift|drop|rotate|turn|slide|stack|"
    "unstack|pour|wipe|fold|insert|hand over|press|flip|carry|sort|hang|scoop|stir|throw|"
    "reach for|release"
).split("|")
_OBJECTS = (
    "apple|banana|orange|cup|mug|bowl|plate|spoon|fork|knife|bottle|can|box|block|cube|ball|"
    "towel|sponge|drawer|door|cabinet|microwave|oven|fridge|lid|pot|pan|kettle|book|pen|"
    "marker|eraser|shoe|sock|shirt|cloth|basket|tray|bin|bag|carrot|tomato|potato|onion|"
    "lemon|bread|cheese|egg|yogurt|milk|juice|ketchup|mustard|cereal|chocolate|soup|faucet|"
    "handle|button|switch|knob|lever|valve|cable|plug|screw|bolt|nut|gear|tool|hammer|wrench|"
    "screwdriver|tape|scissors|paper|phone|remote|laptop|keyboard"
).split("|")
_COLOURS = ["red", "green", "blue", "yellow", "black", "white", "purple", "pink", "brown", "grey", "orange"]
_PLACES = (
    "on the table|in the sink|into the basket|onto the plate|inside the drawer|on the shelf|"
    "next to the cup|behind the box|in front of the robot|to the left|to the right|"
    "on top of the block|under the table|into the bin|on the counter|in the microwave|"
    "on the stove|into the pot|near the door|beside the bowl"
).split("|")
_EXTRA = (
    "you are a helpful assistant system user image video frame picture camera view front wrist "
    "left right top bottom state action task instruction please carefully slowly quickly then "
    "after before and or with without first second third finally step one two three four five "
    "six seven eight nine ten zero 0 1 2 3 4 5 6 7 8 9 10 100 what where which how many is are "
    "the a an of to in on at by for from into onto up down over under again until done"
)


def _training_corpus() -> list[str]:
    """A fixed list of robot-instruction sentences (deterministic; no randomness involved)."""
    lines = [_EXTRA, _EXTRA.title(), _EXTRA.upper()]
    for i, verb in enumerate(_VERBS):
        for j, obj in enumerate(_OBJECTS):
            colour = _COLOURS[(i + j) % len(_COLOURS)]
            place = _PLACES[(i * 7 + j) % len(_PLACES)]
            subject = _SUBJECTS[(i + 3 * j) % len(_SUBJECTS)]
            lines.append(f"{subject} should {verb} the {colour} {obj} {place}.")
            lines.append(f"{verb.capitalize()} the {obj} {place}, then stop.")
    return lines


def _train_core_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    if tok.get_vocab_size() != TINY_BPE_SIZE:
        raise RuntimeError(
            f"tiny tokenizer training produced {tok.get_vocab_size()} tokens, expected {TINY_BPE_SIZE}; "
            "the built-in corpus is too small"
        )
    added = tok.add_special_tokens(list(TINY_SPECIAL_TOKENS) + _RESERVED)
    assert added == TINY_VOCAB_SIZE - TINY_BPE_SIZE
    for token, idx in TINY_SPECIAL_TOKENS.items():
        if tok.token_to_id(token) != idx:
            raise RuntimeError(f"special token {token!r} got id {tok.token_to_id(token)}, expected {idx}")
    return tok


@functools.lru_cache(maxsize=1)
def _core_tokenizer_json() -> str:
    return _train_core_tokenizer().to_str()


def build_tiny_tokenizer(save_dir: str | os.PathLike | None = None) -> PreTrainedTokenizerFast:
    """The offline tiny Qwen-style tokenizer (vocab 1024, `<IMG_CONTEXT>` = 1000).

    Deterministic: two calls, in any process, give identical vocabularies and merges. When
    `save_dir` is given the tokenizer is also written there with `save_pretrained`, so that
    `load_tokenizer(save_dir)` (the real `AutoTokenizer` path) loads it back.
    """
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_core_tokenizer_json()),
        pad_token=PAD_TOKEN,
        eos_token=IM_END_TOKEN,
        padding_side="left",
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    if save_dir is not None:
        _save_atomically(tokenizer, Path(save_dir))
    return tokenizer


def _save_atomically(tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """The tokenizer's files as one folder, published whole (an existing folder is replaced)."""
    with atomic.atomic_dir(target, replace=True) as tmp:
        tokenizer.save_pretrained(str(tmp))


def load_tokenizer(path_or_name: str | os.PathLike, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """Load a tokenizer with `AutoTokenizer.from_pretrained` (a folder or a hub name).

    `"tiny"` returns `build_tiny_tokenizer()`. Offline, a hub name that is not in the local cache
    raises a `FileNotFoundError` that says so instead of transformers' long network error.
    """
    if str(path_or_name) == "tiny":
        return build_tiny_tokenizer()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path_or_name))
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        where = "a local folder" if Path(path_or_name).exists() else "a hub name"
        hint = (
            " HF_HUB_OFFLINE is set, so only already-cached hub files can be used; download it first "
            "or pass a local folder."
            if offline
            else ""
        )
        raise FileNotFoundError(
            f"cannot load tokenizer {str(path_or_name)!r} ({where}): {err}.{hint}"
        ) from err
    tokenizer.padding_side = padding_side
    return tokenizer
