"""The offline tiny tokenizer and the AutoTokenizer loading path."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from gr00t.data import tokenizer as tk
from gr00t.data.tokenizer import TINY_SPECIAL_TOKENS, build_tiny_tokenizer, load_tokenizer


def _fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def test_special_tokens_at_fixed_ids():
    tok = build_tiny_tokenizer()
    assert len(tok) == 1024
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == 1000
    assert tok.convert_tokens_to_ids("<img>") == 1001
    assert tok.convert_tokens_to_ids("</img>") == 1002
    for token, idx in TINY_SPECIAL_TOKENS.items():
        assert tok.convert_tokens_to_ids(token) == idx
        assert tok(token, add_special_tokens=False)["input_ids"] == [idx]  # never split
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 1003
    assert tok.padding_side == "left"
    assert max(tok.get_vocab().values()) == 1023


def test_text_round_trip_and_left_padding():
    tok = build_tiny_tokenizer()
    text = "pick up the green block and place it in the basket"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert all(i < 1000 for i in ids)
    assert tok.decode(ids) == text
    batch = tok(["go", text], padding=True, add_special_tokens=False)
    assert batch["input_ids"][0][0] == tok.pad_token_id
    assert batch["attention_mask"][0][0] == 0 and batch["attention_mask"][0][-1] == 1


def test_chat_template_has_default_system_turn():
    tok = build_tiny_tokenizer()
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=False
    )
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
    )
    with_prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    assert with_prompt == rendered + "<|im_start|>assistant\n"
    custom = tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], tokenize=False
    )
    assert custom == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"


def test_training_is_deterministic_in_process():
    first = tk._train_core_tokenizer().to_str()
    second = tk._train_core_tokenizer().to_str()
    assert first == second


@pytest.mark.slow
def test_training_is_deterministic_across_processes():
    code = (
        "import hashlib; from gr00t.data.tokenizer import build_tiny_tokenizer as b; "
        "print(hashlib.sha256(b().backend_tokenizer.to_str().encode()).hexdigest())"
    )
    digests = set()
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    digests.add(_fingerprint(build_tiny_tokenizer()))
    assert len(digests) == 1


def test_save_and_load_through_auto_tokenizer(tmp_path):
    tok = build_tiny_tokenizer(save_dir=tmp_path / "tok")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    loaded = load_tokenizer(tmp_path / "tok")
    assert _fingerprint(loaded) == _fingerprint(tok)
    assert loaded.padding_side == "left"
    assert loaded.pad_token_id == 1003
    assert loaded.convert_tokens_to_ids("<IMG_CONTEXT>") == 1000
    msgs = [{"role": "user", "content": "wipe"}]
    assert loaded.apply_chat_template(msgs, tokenize=False) == tok.apply_chat_template(msgs, tokenize=False)
    assert load_tokenizer("tiny").convert_tokens_to_ids("<img>") == 1001


def test_missing_tokenizer_has_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot load tokenizer"):
        load_tokenizer(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_tokenizer("nvidia/not-a-cached-model-xyz")
