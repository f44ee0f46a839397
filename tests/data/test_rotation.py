"""Rotation conversions and pose composition (gr00t/data/rotation.py)."""

import numpy as np
import pytest

from gr00t.data import rotation as R


def random_rotvecs(rng, n):
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = rng.uniform(0, np.pi * 0.999, size=(n, 1))
    return axis * angle


def test_rotvec_about_z_matches_closed_form():
    a = 0.7
    m = R.rotvec_to_matrix(np.array([0.0, 0.0, a]))
    expected = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    np.testing.assert_allclose(m, expected, atol=1e-12)


def test_matrices_are_proper_rotations():
    rng = np.random.default_rng(0)
    m = R.rotvec_to_matrix(random_rotvecs(rng, 200))
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)


def test_round_trips_between_all_formats():
    rng = np.random.default_rng(1)
    rv = random_rotvecs(rng, 500).reshape(5, 100, 3)  # arbitrary leading dims
    m = R.rotvec_to_matrix(rv)
    np.testing.assert_allclose(R.matrix_to_rotvec(m), rv, atol=1e-9)
    np.testing.assert_allclose(R.rot6d_to_matrix(R.matrix_to_rot6d(m)), m, atol=1e-12)
    for order in ("wxyz", "xyzw"):
        q = R.matrix_to_quat(m, order)
        np.testing.assert_allclose(R.quat_to_matrix(q, order), m, atol=1e-12)
        np.testing.assert_allclose(R.quat_to_rotvec(q, order), rv, atol=1e-9)


def test_rot6d_is_first_two_rows():
    m = R.rotvec_to_matrix(np.array([0.3, -0.2, 0.9]))
    np.testing.assert_array_equal(R.matrix_to_rot6d(m), np.concatenate([m[0], m[1]]))


def test_rot6d_orthonormalises_noisy_input():
    rng = np.random.default_rng(2)
    m = R.rotvec_to_matrix(random_rotvecs(rng, 10))
    noisy = R.matrix_to_rot6d(m) * 1.7 + rng.normal(scale=1e-3, size=(10, 6))
    out = R.rot6d_to_matrix(noisy)
    np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-12)
    np.testing.assert_allclose(out, m, atol=5e-3)


def test_quaternion_of_known_rotation_and_sign():
    # 90 degrees about x: q = (cos 45, sin 45, 0, 0)
    m = R.rotvec_to_matrix(np.array([np.pi / 2, 0, 0]))
    np.testing.assert_allclose(R.matrix_to_quat(m), [np.sqrt(0.5), np.sqrt(0.5), 0, 0], atol=1e-12)
    np.testing.assert_allclose(R.matrix_to_quat(m, "xyzw"), [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-12)
    # q and -q are the same rotation
    q = np.array([0.1, -0.5, 0.3, 0.8])
    np.testing.assert_allclose(R.quat_to_matrix(q), R.quat_to_matrix(-q), atol=1e-12)


def test_near_pi_and_near_zero_rotvec():
    for rv in ([np.pi - 1e-7, 0, 0], [0, 1e-9, 0], [0, 0, 0]):
        rv = np.array(rv)
        np.testing.assert_allclose(R.matrix_to_rotvec(R.rotvec_to_matrix(rv)), rv, atol=1e-6)


@pytest.mark.parametrize("fmt", ["xyz_rot6d", "xyz_rotvec", "xyz_quat_wxyz", "xyz_quat_xyzw"])
def test_relative_pose_then_compose_is_identity(fmt):
    rng = np.random.default_rng(3)
    rv = random_rotvecs(rng, 17)

    def to_fmt(xyz, r):
        return R.matrix_to_pose(
            np.concatenate(
                [
                    np.concatenate([R.rotvec_to_matrix(r), xyz[..., None]], -1),
                    np.broadcast_to([0, 0, 0, 1.0], xyz.shape[:-1] + (1, 4)),
                ],
                -2,
            ),
            fmt,
        )

    target = to_fmt(rng.normal(size=(16, 3)), rv[:16])
    ref = to_fmt(rng.normal(size=3), rv[16])
    rel = R.relative_pose(ref, target, fmt)
    back = R.compose_pose(ref, rel, fmt)
    np.testing.assert_allclose(R.pose_to_matrix(back, fmt), R.pose_to_matrix(target, fmt), atol=1e-10)


def test_relative_pose_semantics():
    # reference rotated 90 deg about z at (1, 0, 0); a target one unit along the world y axis from it
    ref = np.array([1.0, 0, 0, 0, 0, np.pi / 2])
    target = np.array([1.0, 1.0, 0, 0, 0, np.pi / 2])
    rel = R.relative_pose(ref, target, "xyz_rotvec")
    # in the reference frame, world +y is the local +x axis; no relative rotation
    np.testing.assert_allclose(rel, [1, 0, 0, 0, 0, 0], atol=1e-12)
    # identity reference: relative == target
    tgt = np.array([0.2, -0.3, 0.5, 0.1, 0.2, -0.4])
    np.testing.assert_allclose(R.relative_pose(np.zeros(6), tgt, "xyz_rotvec"), tgt, atol=1e-12)


def test_mixed_reference_format():
    rng = np.random.default_rng(4)
    rv = random_rotvecs(rng, 2)
    ref_q = np.concatenate([[0.1, 0.2, 0.3], R.rotvec_to_quat(rv[0])])
    ref_v = np.concatenate([[0.1, 0.2, 0.3], rv[0]])
    tgt = np.concatenate([[0.5, 0.0, -0.2], R.matrix_to_rot6d(R.rotvec_to_matrix(rv[1]))])
    a = R.relative_pose(ref_q, tgt, "xyz_rot6d", "xyz_quat_wxyz")
    b = R.relative_pose(ref_v, tgt, "xyz_rot6d", "xyz_rotvec")
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="trailing dimension of 6"):
        R.rot6d_to_matrix(np.zeros(5))
    with pytest.raises(ValueError, match="zero norm"):
        R.rot6d_to_matrix(np.zeros(6))
    with pytest.raises(ValueError, match="pose format"):
        R.pose_to_matrix(np.zeros(6), "xyz_euler")
