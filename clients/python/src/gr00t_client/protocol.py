"""Wire format of the GR00T policy server (SPEC-N16 §4), shared by server and client.

Facts of the reference protocol (NVIDIA Isaac-GR00T N1.6, `gr00t/policy/server_client.py`) that this
module reproduces so that existing clients work unchanged:

- transport: ZeroMQ REQ/REP over TCP, default port 5555; one msgpack message per request/reply.
- request: ``{"endpoint": str, "data": ..., "api_token": str}``; ``data`` is only sent by endpoints that
  take input and ``api_token`` only when a token is configured.  A request without ``endpoint`` means
  ``get_action``; a request without ``data`` means ``{}``.
- ``get_action``: ``data = {"observation": obs, "options": opts | None}``; reply is a two-element
  msgpack array ``[action_dict, info_dict]`` (the reference client turns it into a tuple).
- ``reset``: ``data = {"options": opts | None}``; reply is an info dict (``{}``).
- ``ping``: no data; reply ``{"status": "ok", "message": "Server is running"}``.
- ``get_modality_config``: no data; reply ``{modality: ModalityConfig}`` where each config travels as
  ``{"__ModalityConfig_class__": True, "as_json": {delta_indices, modality_keys,
  sin_cos_embedding_keys, mean_std_embedding_keys, action_configs}}``; action configs are dicts whose
  ``rep``/``type``/``format`` are enum *names* (``"RELATIVE"``, ``"NON_EEF"``, ``"DEFAULT"``).
- ``kill``: no data; reply nil, then the server stops.
- numpy arrays anywhere in a body: ``{"__ndarray_class__": True, "as_npy": <np.save bytes>}``.
- errors: ``{"error": str}``; a wrong token gets ``{"error": "Unauthorized: Invalid API token"}``.

This module imports only msgpack and numpy so that the client installs without the training stack
(`gr00t.policy.protocol` re-exports it for the server).
Decoding never unpickles: arrays are parsed from their ``.npy`` header and raw bytes only, object and
structured dtypes are rejected, and the declared shape must match the byte count exactly. Decoding is
bounded: at most `MAX_DECODED_ITEMS` containers and elements per message, `MAX_CONTAINER_LEN` per
array or map.
"""

from __future__ import annotations

import ast
import io
from typing import Any

import msgpack
import numpy as np

DEFAULT_PORT = 5555
DEFAULT_HOST = "127.0.0.1"
NDARRAY_TAG = "__ndarray_class__"
MODALITY_CONFIG_TAG = "__ModalityConfig_class__"
UNAUTHORIZED = "Unauthorized: Invalid API token"
PING_REPLY = {"status": "ok", "message": "Server is running"}
ENDPOINTS = ("ping", "get_action", "reset", "get_modality_config", "kill")
# Fields of the reference's ModalityConfig dataclass; the reference client calls ModalityConfig(**as_json),
# so exactly these keys must travel.
MODALITY_CONFIG_FIELDS = (
    "delta_indices",
    "modality_keys",
    "sin_cos_embedding_keys",
    "mean_std_embedding_keys",
    "action_configs",
)
# bool, signed/unsigned int, float, complex, fixed-width bytes / unicode strings.
_ALLOWED_DTYPE_KINDS = frozenset("biufcSU")
_NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 10_000
# Decoding bounds: real messages carry arrays as tagged .npy buffers, so they hold few objects.
MAX_DECODED_ITEMS = 100_000
MAX_CONTAINER_LEN = 65_536

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ENDPOINTS",
    "MAX_CONTAINER_LEN",
    "MAX_DECODED_ITEMS",
    "MODALITY_CONFIG_FIELDS",
    "MODALITY_CONFIG_TAG",
    "NDARRAY_TAG",
    "PING_REPLY",
    "UNAUTHORIZED",
    "ProtocolError",
    "ServerError",
    "decode_ndarray",
    "encode_modality_config",
    "encode_ndarray",
    "make_request",
    "pack",
    "unpack",
]


class ProtocolError(ValueError):
    """A message that does not follow the wire format."""


class ServerError(RuntimeError):
    """The server answered a request with ``{"error": ...}``."""


# ---------------------------------------------------------------------------------------------------
# numpy arrays
# ---------------------------------------------------------------------------------------------------


def encode_ndarray(array: np.ndarray) -> dict[str, Any]:
    """``{"__ndarray_class__": True, "as_npy": bytes}`` for a numeric or string array."""
    if array.dtype.hasobject or array.dtype.kind not in _ALLOWED_DTYPE_KINDS or array.dtype.names:
        raise ProtocolError(f"cannot send array of dtype {array.dtype}: only plain numeric/string dtypes")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return {NDARRAY_TAG: True, "as_npy": buf.getvalue()}


def _parse_npy_header(raw: bytes) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    if not raw.startswith(_NPY_MAGIC) or len(raw) < 10:
        raise ProtocolError("as_npy: not an .npy buffer (bad magic)")
    major = raw[6]
    if major == 1:
        header_len = int.from_bytes(raw[8:10], "little")
        start = 10
    elif major in (2, 3):
        if len(raw) < 12:
            raise ProtocolError("as_npy: truncated header")
        header_len = int.from_bytes(raw[8:12], "little")
        start = 12
    else:
        raise ProtocolError(f"as_npy: unsupported .npy format version {major}")
    if header_len > _MAX_NPY_HEADER or start + header_len > len(raw):
        raise ProtocolError(f"as_npy: header length {header_len} invalid for a {len(raw)}-byte buffer")
    text = raw[start : start + header_len].decode("latin1" if major < 3 else "utf8")
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ProtocolError(f"as_npy: unreadable header {text[:80]!r}") from exc
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ProtocolError(f"as_npy: header must have descr/fortran_order/shape, got {text[:80]!r}")
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ProtocolError(f"as_npy: bad shape {shape!r}")
    if not isinstance(fortran, bool):
        raise ProtocolError(f"as_npy: bad fortran_order {fortran!r}")
    if not isinstance(header["descr"], str):
        raise ProtocolError(f"as_npy: only simple dtypes are accepted, got descr {header['descr']!r}")
    try:
        dtype = np.dtype(header["descr"])
    except TypeError as exc:
        raise ProtocolError(f"as_npy: unknown dtype {header['descr']!r}") from exc
    if dtype.hasobject or dtype.kind not in _ALLOWED_DTYPE_KINDS or dtype.names or dtype.itemsize == 0:
        raise ProtocolError(f"as_npy: dtype {dtype} rejected (object/structured arrays are never accepted)")
    return dtype, shape, fortran, start + header_len


def decode_ndarray(obj: dict[str, Any]) -> np.ndarray:
    """Parse an encoded array without unpickling; the byte count must match the declared shape."""
    raw = obj.get("as_npy")
    if not isinstance(raw, (bytes, bytearray)):
        raise ProtocolError(f"{NDARRAY_TAG} entry needs bytes under 'as_npy', got {type(raw).__name__}")
    raw = bytes(raw)
    dtype, shape, fortran, offset = _parse_npy_header(raw)
    count = 1
    for dim in shape:
        count *= dim
    if len(raw) - offset != count * dtype.itemsize:
        raise ProtocolError(
            f"as_npy: shape {shape} of {dtype} needs {count * dtype.itemsize} bytes, got {len(raw) - offset}"
        )
    flat = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


# ---------------------------------------------------------------------------------------------------
# modality configs
# ---------------------------------------------------------------------------------------------------


def encode_modality_config(config: dict[str, Any]) -> dict[str, Any]:
    """Wrap a plain modality-config dict the way the reference sends its ModalityConfig dataclass."""
    missing = [k for k in ("delta_indices", "modality_keys") if k not in config]
    if missing:
        raise ProtocolError(f"modality config lacks {missing}: {config!r}")
    as_json = {k: config.get(k) for k in MODALITY_CONFIG_FIELDS}
    return {MODALITY_CONFIG_TAG: True, "as_json": as_json}


# ---------------------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------------------


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return encode_ndarray(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialise object of type {type(obj).__name__}")


def _object_hook(obj: dict[Any, Any]) -> Any:
    if NDARRAY_TAG in obj:
        return decode_ndarray(obj)
    if MODALITY_CONFIG_TAG in obj:
        as_json = obj.get("as_json")
        if not isinstance(as_json, dict):
            raise ProtocolError(f"{MODALITY_CONFIG_TAG} entry needs a dict under 'as_json'")
        return as_json
    return obj


class _Budget:
    """Counts the containers and elements a message decodes into and stops at ``limit``.

    msgpack spends one byte on an empty map that becomes a 64-byte Python dict; without a budget a
    64 MB message of nested empty containers would take gigabytes.
    """

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, container: Any) -> None:
        self.left -= 1 + len(container)
        if self.left < 0:
            raise ProtocolError(
                f"message decodes into more than {MAX_DECODED_ITEMS} containers and elements; "
                "send arrays as tagged numpy buffers"
            )

    def object_hook(self, obj: dict[Any, Any]) -> Any:
        self.spend(obj)
        return _object_hook(obj)

    def list_hook(self, items: list[Any]) -> list[Any]:
        self.spend(items)
        return items


def pack(obj: Any) -> bytes:
    """msgpack bytes of `obj`; numpy arrays become tagged ``.npy`` buffers."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpack(payload: bytes | memoryview, max_items: int | None = None) -> Any:
    """Inverse of `pack`. Raises ProtocolError for anything that is not a well-formed message.

    At most ``max_items`` (default `MAX_DECODED_ITEMS`) containers and elements are decoded, and
    no single array or map may hold more than `MAX_CONTAINER_LEN` entries.
    """
    budget = _Budget(MAX_DECODED_ITEMS if max_items is None else max_items)
    try:
        return msgpack.unpackb(
            payload,
            object_hook=budget.object_hook,
            list_hook=budget.list_hook,
            raw=False,
            strict_map_key=True,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=MAX_CONTAINER_LEN,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise ProtocolError(f"undecodable msgpack message: {type(exc).__name__}: {exc}") from exc


def make_request(
    endpoint: str, data: Any = None, *, api_token: str | None = None, with_data: bool = True
) -> dict:
    """A request dict as the reference client builds it."""
    request: dict[str, Any] = {"endpoint": endpoint}
    if with_data:
        request["data"] = data
    if api_token:
        request["api_token"] = api_token
    return request
