"""Write a Hugging Face Hub cache by hand, in the layout `huggingface_hub` reads:

    <cache>/models--org--name/refs/main            the commit hash
    <cache>/models--org--name/snapshots/<hash>/... symlinks to ../../blobs/<sha256 of the file>
    <cache>/models--org--name/blobs/<sha256>       the file contents
(`datasets--org--name` for datasets). Tests point HF_HUB_CACHE at it and resolve ids offline
through the real library.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def add_to_cache(
    cache: Path, repo_id: str, source: Path, repo_type: str = "model", ref: str = "main"
) -> Path:
    """Put the files of folder `source` into `cache` as `repo_id` at `ref`; returns the snapshot folder."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    commit = hashlib.sha1(b"".join(p.relative_to(source).as_posix().encode() for p in files)).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in files:
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot
