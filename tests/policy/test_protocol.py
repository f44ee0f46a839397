"""Wire format: arrays, modality configs, hostile payloads."""

from __future__ import annotations

import io
import pickle

import msgpack
import numpy as np
import pytest

from gr00t_client.protocol import (
    MODALITY_CONFIG_TAG,
    NDARRAY_TAG,
    ProtocolError,
    decode_ndarray,
    encode_modality_config,
    encode_ndarray,
    make_request,
    pack,
    unpack,
)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.arange(12, dtype=np.uint8).reshape(3, 4).T,  # non-contiguous
        np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        np.array([True, False]),
        np.zeros((0, 5), dtype=np.int64),
        np.array(3.5, dtype=np.float16),
        np.array(["ab", "c"]),
    ],
)
def test_array_roundtrip(array):
    out = unpack(pack({"x": array}))["x"]
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_array_wire_format_matches_reference():
    """The tagged dict holds exactly np.save bytes, so reference peers can np.load it."""
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = msgpack.unpackb(pack(arr), raw=False)
    assert raw[NDARRAY_TAG] is True
    np.testing.assert_array_equal(np.load(io.BytesIO(raw["as_npy"]), allow_pickle=False), arr)
    # and what a reference peer packs decodes here
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    theirs = msgpack.packb({"endpoint": "x", "data": {NDARRAY_TAG: True, "as_npy": buf.getvalue()}})
    np.testing.assert_array_equal(unpack(theirs)["data"], arr)


def test_numpy_scalars_become_plain_numbers():
    assert unpack(pack({"a": np.float32(1.5), "b": np.int64(3)})) == {"a": 1.5, "b": 3}


def test_object_array_is_never_sent_or_accepted():
    with pytest.raises(ProtocolError, match="object"):
        encode_ndarray(np.array([{"a": 1}], dtype=object))
    # hand-craft a pickled object array in .npy form
    buf = io.BytesIO()
    np.save(buf, np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(ProtocolError, match="rejected"):
        decode_ndarray({NDARRAY_TAG: True, "as_npy": buf.getvalue()})


def test_pickle_payload_is_rejected():
    evil = pickle.dumps({"endpoint": "ping"})
    with pytest.raises(ProtocolError):
        unpack(msgpack.packb({"data": {NDARRAY_TAG: True, "as_npy": evil}}))


def test_npz_and_garbage_rejected():
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    with pytest.raises(ProtocolError, match="magic"):
        decode_ndarray({NDARRAY_TAG: True, "as_npy": buf.getvalue()})
    with pytest.raises(ProtocolError, match="bytes"):
        decode_ndarray({NDARRAY_TAG: True, "as_npy": "not bytes"})
    with pytest.raises(ProtocolError):
        decode_ndarray({NDARRAY_TAG: True})


def _npy_with_header(header: str, data: bytes) -> bytes:
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


def test_declared_shape_must_match_bytes():
    """A header that claims a huge shape must not allocate it."""
    raw = _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }", b"\0" * 8)
    with pytest.raises(ProtocolError, match="needs"):
        decode_ndarray({NDARRAY_TAG: True, "as_npy": raw})
    ok = _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\0" * 8)
    np.testing.assert_array_equal(decode_ndarray({NDARRAY_TAG: True, "as_npy": ok}), np.zeros(2, np.float32))


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",  # structured
        "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': 'x', 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
        "__import__('os').system('true')",
        "{'descr': 'nonsense', 'fortran_order': False, 'shape': (1,), }",
    ],
)
def test_bad_headers_rejected(header):
    with pytest.raises(ProtocolError):
        decode_ndarray({NDARRAY_TAG: True, "as_npy": _npy_with_header(header, b"\0" * 8)})


def test_unpack_errors_are_protocol_errors():
    for payload in [b"", b"\xc1", b"\x91" * 5000, msgpack.packb({1: 2})[:-1], b"\xd9\x02\xff\xfe"]:
        with pytest.raises(ProtocolError):
            unpack(payload)


def test_modality_config_encoding_has_reference_fields_only():
    cfg = {"delta_indices": [0], "modality_keys": ["arm"], "rotation": "x", "action_configs": None}
    wrapped = encode_modality_config(cfg)
    assert wrapped[MODALITY_CONFIG_TAG] is True
    assert set(wrapped["as_json"]) == {
        "delta_indices",
        "modality_keys",
        "sin_cos_embedding_keys",
        "mean_std_embedding_keys",
        "action_configs",
    }
    assert unpack(pack({"state": wrapped}))["state"]["modality_keys"] == ["arm"]
    with pytest.raises(ProtocolError, match="modality_keys"):
        encode_modality_config({"delta_indices": [0]})


def test_make_request_matches_reference_shape():
    assert make_request("ping", with_data=False) == {"endpoint": "ping"}
    assert make_request("reset", {"options": None}, api_token="t") == {
        "endpoint": "reset",
        "data": {"options": None},
        "api_token": "t",
    }
