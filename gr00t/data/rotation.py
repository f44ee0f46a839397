"""Rotation conversions and pose composition for end-effector action groups (numpy, vectorised).

Conventions (those of the reference GR00T release):
- rot6d: the first two **rows** of the rotation matrix, flattened row-major:
  `[R00, R01, R02, R10, R11, R12]`. Decoding orthonormalises the two rows (Gram-Schmidt) and takes
  their cross product as the third row, so any non-degenerate 6-vector maps to a rotation.
- rotvec: axis-angle, axis * angle (radians), angle in [0, pi].
- quaternion: scalar first `wxyz` by default (`order="xyzw"` for scalar last); outputs have w >= 0.
- A pose is `xyz + rotation` in one of the formats `xyz_rot6d` (9), `xyz_rotvec` (6),
  `xyz_quat_wxyz` / `xyz_quat_xyzw` (7). Relative pose = inv(T_ref) @ T_target, i.e. the target
  expressed in the reference frame; `compose_pose` is its inverse (T_ref @ T_rel).

Every function takes arrays with any leading batch shape and computes in float64.
"""

from __future__ import annotations

import numpy as np

POSE_FORMATS = {"xyz_rot6d": 9, "xyz_rotvec": 6, "xyz_quat_wxyz": 7, "xyz_quat_xyzw": 7}
_EPS = 1e-12


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _check_last(x: np.ndarray, size: int, what: str) -> None:
    if x.shape[-1:] != (size,):
        raise ValueError(f"{what}: expected a trailing dimension of {size}, got shape {x.shape}")


def _check_matrix(m: np.ndarray) -> None:
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrix: expected trailing shape (3, 3), got {m.shape}")


# ---- rot6d ------------------------------------------------------------------------------------


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> [..., 6]: the first two rows, row-major."""
    m = _f64(matrix)
    _check_matrix(m)
    return m[..., :2, :].reshape(*m.shape[:-2], 6)


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """[..., 6] -> [..., 3, 3] via Gram-Schmidt on the two stored rows."""
    r = _f64(rot6d)
    _check_last(r, 6, "rot6d")
    a, b = r[..., :3], r[..., 3:]
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    if np.any(na < _EPS):
        raise ValueError("rot6d: first row has zero norm, cannot form a rotation")
    row0 = a / na
    b = b - np.sum(row0 * b, axis=-1, keepdims=True) * row0
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    if np.any(nb < _EPS):
        raise ValueError("rot6d: second row is parallel to the first, cannot form a rotation")
    row1 = b / nb
    row2 = np.cross(row0, row1)
    return np.stack([row0, row1, row2], axis=-2)


# ---- quaternion -------------------------------------------------------------------------------


def _to_wxyz(q: np.ndarray, order: str) -> np.ndarray:
    if order == "wxyz":
        return q
    if order == "xyzw":
        return np.concatenate([q[..., 3:], q[..., :3]], axis=-1)
    raise ValueError(f"quaternion order must be 'wxyz' or 'xyzw', got {order!r}")


def _from_wxyz(q: np.ndarray, order: str) -> np.ndarray:
    if order == "wxyz":
        return q
    if order == "xyzw":
        return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)
    raise ValueError(f"quaternion order must be 'wxyz' or 'xyzw', got {order!r}")


def quat_to_matrix(quat: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """[..., 4] (normalised internally) -> [..., 3, 3]."""
    q = _f64(quat)
    _check_last(q, 4, "quaternion")
    q = _to_wxyz(q, order)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n < _EPS):
        raise ValueError("quaternion: zero norm")
    w, x, y, z = np.moveaxis(q / n, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_quat(matrix: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """[..., 3, 3] -> unit quaternion [..., 4] with w >= 0 (Shepperd's method, stable everywhere)."""
    m = _f64(matrix)
    _check_matrix(m)
    r00, r01, r02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    r10, r11, r12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    r20, r21, r22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    trace = r00 + r11 + r22
    # four candidate solutions; each is accurate where its pivot is largest
    piv = np.stack([trace, r00, r11, r22], axis=-1)
    s = [
        np.sqrt(np.maximum(1.0 + trace, _EPS)) * 2,
        np.sqrt(np.maximum(1.0 + r00 - r11 - r22, _EPS)) * 2,
        np.sqrt(np.maximum(1.0 - r00 + r11 - r22, _EPS)) * 2,
        np.sqrt(np.maximum(1.0 - r00 - r11 + r22, _EPS)) * 2,
    ]
    cands = np.stack(
        [
            np.stack([s[0] / 4, (r21 - r12) / s[0], (r02 - r20) / s[0], (r10 - r01) / s[0]], axis=-1),
            np.stack([(r21 - r12) / s[1], s[1] / 4, (r01 + r10) / s[1], (r02 + r20) / s[1]], axis=-1),
            np.stack([(r02 - r20) / s[2], (r01 + r10) / s[2], s[2] / 4, (r12 + r21) / s[2]], axis=-1),
            np.stack([(r10 - r01) / s[3], (r02 + r20) / s[3], (r12 + r21) / s[3], s[3] / 4], axis=-1),
        ],
        axis=-2,
    )
    choice = np.argmax(piv, axis=-1)
    q = np.take_along_axis(cands, choice[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., :1] < 0, -q, q)
    return _from_wxyz(q, order)


# ---- rotvec -----------------------------------------------------------------------------------


def _skew(v: np.ndarray) -> np.ndarray:
    x, y, z = np.moveaxis(v, -1, 0)
    zero = np.zeros_like(x)
    return np.stack(
        [np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], axis=-2
    )


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle [..., 3] -> [..., 3, 3] (Rodrigues, Taylor-expanded near zero)."""
    r = _f64(rotvec)
    _check_last(r, 3, "rotvec")
    theta = np.linalg.norm(r, axis=-1)
    small = theta < 1e-4
    t = np.where(small, 1.0, theta)
    t2 = theta * theta
    a = np.where(small, 1 - t2 / 6 + t2 * t2 / 120, np.sin(t) / t)
    b = np.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - np.cos(t)) / (t * t))
    k = _skew(r)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def quat_to_rotvec(quat: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Unit quaternion [..., 4] -> axis-angle [..., 3] with angle in [0, pi]."""
    q = _to_wxyz(_f64(quat), order)
    _check_last(q, 4, "quaternion")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    nv = np.linalg.norm(v, axis=-1)
    angle = 2 * np.arctan2(nv, w)
    small = nv < 1e-8
    scale = np.where(small, 2.0 / np.where(small, w, 1.0), angle / np.where(small, 1.0, nv))
    return v * scale[..., None]


def rotvec_to_quat(rotvec: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Axis-angle [..., 3] -> unit quaternion [..., 4] with w >= 0."""
    return matrix_to_quat(rotvec_to_matrix(rotvec), order)


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> axis-angle [..., 3] (through the quaternion, stable near 0 and pi)."""
    return quat_to_rotvec(matrix_to_quat(matrix))


# ---- poses ------------------------------------------------------------------------------------


def _check_format(fmt: str, x: np.ndarray) -> None:
    if fmt not in POSE_FORMATS:
        raise ValueError(f"pose format must be one of {list(POSE_FORMATS)}, got {fmt!r}")
    _check_last(x, POSE_FORMATS[fmt], f"pose in format {fmt}")


def rotation_to_matrix(rot: np.ndarray, fmt: str) -> np.ndarray:
    """Rotation part of a pose format (`rot6d`, `rotvec`, `quat_wxyz`, `quat_xyzw`) -> matrix."""
    if fmt == "rot6d":
        return rot6d_to_matrix(rot)
    if fmt == "rotvec":
        return rotvec_to_matrix(rot)
    if fmt in ("quat_wxyz", "quat_xyzw"):
        return quat_to_matrix(rot, fmt[5:])
    raise ValueError(f"unknown rotation format {fmt!r}")


def matrix_to_rotation(matrix: np.ndarray, fmt: str) -> np.ndarray:
    """Matrix -> rotation part of a pose format."""
    if fmt == "rot6d":
        return matrix_to_rot6d(matrix)
    if fmt == "rotvec":
        return matrix_to_rotvec(matrix)
    if fmt in ("quat_wxyz", "quat_xyzw"):
        return matrix_to_quat(matrix, fmt[5:])
    raise ValueError(f"unknown rotation format {fmt!r}")


def pose_to_matrix(pose: np.ndarray, fmt: str) -> np.ndarray:
    """`xyz + rotation` [..., D] -> homogeneous transform [..., 4, 4]."""
    p = _f64(pose)
    _check_format(fmt, p)
    out = np.zeros(p.shape[:-1] + (4, 4))
    out[..., :3, :3] = rotation_to_matrix(p[..., 3:], fmt[4:])
    out[..., :3, 3] = p[..., :3]
    out[..., 3, 3] = 1.0
    return out


def matrix_to_pose(transform: np.ndarray, fmt: str) -> np.ndarray:
    """Homogeneous transform [..., 4, 4] -> `xyz + rotation` [..., D]."""
    t = _f64(transform)
    if fmt not in POSE_FORMATS:
        raise ValueError(f"pose format must be one of {list(POSE_FORMATS)}, got {fmt!r}")
    return np.concatenate([t[..., :3, 3], matrix_to_rotation(t[..., :3, :3], fmt[4:])], axis=-1)


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms [..., 4, 4]: (R, t) -> (R^T, -R^T t)."""
    t = _f64(transform)
    rt = np.swapaxes(t[..., :3, :3], -1, -2)
    out = np.zeros_like(t)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -(rt @ t[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def relative_pose(
    reference: np.ndarray, target: np.ndarray, fmt: str, reference_fmt: str | None = None
) -> np.ndarray:
    """inv(T_ref) @ T_target as `xyz + rotation` in `fmt`.

    reference: [..., D_ref] (broadcast against target's leading dims, e.g. [D] vs [H, D]).
    """
    t_ref = pose_to_matrix(reference, reference_fmt or fmt)
    t_tgt = pose_to_matrix(target, fmt)
    return matrix_to_pose(invert_transform(t_ref) @ t_tgt, fmt)


def compose_pose(
    reference: np.ndarray, relative: np.ndarray, fmt: str, reference_fmt: str | None = None
) -> np.ndarray:
    """T_ref @ T_rel as `xyz + rotation` in `fmt`: the inverse of `relative_pose`."""
    t_ref = pose_to_matrix(reference, reference_fmt or fmt)
    t_rel = pose_to_matrix(relative, fmt)
    return matrix_to_pose(t_ref @ t_rel, fmt)
