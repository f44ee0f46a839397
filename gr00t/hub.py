"""Hugging Face Hub ids for `base=` (models) and `data=` (datasets), resolved by `huggingface_hub`.

An id is ``org/name`` or ``org/name@revision``. It resolves to the snapshot folder of the local
Hub cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), downloading it first unless
``HF_HUB_OFFLINE=1``. A local folder of the same spelling always wins.
"""

from __future__ import annotations

import re
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(@[\w./-]+)?$")


class HubError(ValueError):
    """A Hub id cannot be resolved (not cached while offline, unknown, no network)."""


def looks_like_hub_id(text: str) -> bool:
    """True for ``org/name[@revision]`` that is not an existing local path."""
    if not _HUB_ID.match(text) or text.endswith((".yaml", ".yml", ".json")):
        return False
    return not Path(text).expanduser().exists()


def split_revision(text: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); no ``@`` -> (text, None)."""
    repo_id, sep, revision = text.partition("@")
    return repo_id, (revision if sep else None)


def hub_name(text: str) -> str:
    """The last part of an id without its revision: ``nvidia/GR00T-N1.6-3B@main`` -> ``GR00T-N1.6-3B``."""
    return split_revision(text)[0].rsplit("/", 1)[-1]


def download_hint(repo_id: str, repo_type: str, revision: str | None) -> str:
    """How to put `repo_id` into the local cache."""
    args = f"{repo_id}{' --repo-type dataset' if repo_type == 'dataset' else ''}"
    args += f" --revision {revision}" if revision else ""
    return f"`hf download {args}` (older huggingface_hub: `huggingface-cli download {args}`)"


def resolve(text: str, repo_type: str = "model", key: str = "base") -> Path:
    """The local snapshot folder of Hub id `text` (`repo_type` "model" or "dataset")."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id, revision = split_revision(text)
    try:
        # local_files_only: HF_HUB_OFFLINE also for a commit-hash revision (the library would ask the Hub)
        path = snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, local_files_only=constants.HF_HUB_OFFLINE
        )
    except LocalEntryNotFoundError as exc:
        reason = "not in the local Hugging Face cache" + (
            " and HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else " and not reachable"
        )
        raise HubError(
            f"{key}={text!r}: no local folder of that name, and the {repo_type} {repo_id!r}"
            f"{'@' + revision if revision else ''} is {reason}; download it with "
            f"{download_hint(repo_id, repo_type, revision)} or pass a local folder"
        ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubError(
            f"{key}={text!r}: cannot resolve the Hugging Face {repo_type} {repo_id!r} ({first}); "
            f"download it with {download_hint(repo_id, repo_type, revision)} or pass a local folder"
        ) from exc
    return Path(path)
