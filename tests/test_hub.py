"""Hub ids resolve through the real `huggingface_hub`, offline, against a cache the test writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gr00t.hub import hub_name, looks_like_hub_id, split_revision
from tests.hub_cache import add_to_cache

REPO = Path(__file__).resolve().parents[1]


def _resolve(cache: Path, *args: str) -> subprocess.CompletedProcess:
    """`gr00t.hub.resolve(*args)` in a fresh process (huggingface_hub reads HF_HUB_CACHE at import)."""
    code = (
        "import sys, json; from gr00t.hub import resolve, HubError\n"
        "try: print(json.dumps(str(resolve(*sys.argv[1:]))))\n"
        "except HubError as e: print(e, file=sys.stderr); sys.exit(2)\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO
    )


def test_id_syntax(tmp_path, monkeypatch):
    assert looks_like_hub_id("nvidia/GR00T-N1.6-3B") and looks_like_hub_id("org/name@v1.0")
    assert not looks_like_hub_id("/abs/path") and not looks_like_hub_id("./rel/x")
    assert not looks_like_hub_id("demo") and not looks_like_hub_id("mix/file.yaml")
    assert not looks_like_hub_id("a/b/c")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not looks_like_hub_id("org/name")  # a local folder of that spelling wins
    assert split_revision("org/name@abc") == ("org/name", "abc") and hub_name("org/name@abc") == "name"


def test_model_and_dataset_ids_resolve_offline(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"a": 1}))
    (src / "sub" / "x.txt").write_text("hello")
    cache = tmp_path / "hub"
    snap = add_to_cache(cache, "acme/tiny-model", src)
    data_snap = add_to_cache(cache, "acme/robot-data", src, repo_type="dataset")
    proc = _resolve(cache, "acme/tiny-model")
    assert proc.returncode == 0, proc.stderr
    path = Path(json.loads(proc.stdout))
    assert path == snap and json.loads((path / "config.json").read_text()) == {"a": 1}
    assert (path / "sub" / "x.txt").read_text() == "hello"
    proc = _resolve(cache, "acme/robot-data", "dataset", "data")
    assert proc.returncode == 0 and Path(json.loads(proc.stdout)) == data_snap
    # a revision given as a commit hash
    proc = _resolve(cache, f"acme/tiny-model@{snap.name}")
    assert proc.returncode == 0 and Path(json.loads(proc.stdout)) == snap


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("acme/missing",), "hf download acme/missing`"),
        (("acme/missing", "dataset", "data"), "hf download acme/missing --repo-type dataset`"),
        (("acme/tiny-model@v9",), "hf download acme/tiny-model --revision v9`"),
    ],
)
def test_unresolvable_id_says_how_to_download(tmp_path, args, expected):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    add_to_cache(tmp_path / "hub", "acme/tiny-model", src)
    proc = _resolve(tmp_path / "hub", *args)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and expected in line and "HF_HUB_OFFLINE" in line and "Traceback" not in line
