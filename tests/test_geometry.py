"""Pure math: camera frames, projection, rotations."""
import numpy as np

from simgen.geometry import (
    cv_pose_to_gl,
    intrinsics_from_fov,
    look_at,
    matrix_to_quat_xyzw,
    project,
    quat_xyzw_to_matrix,
    random_rotation,
)


def test_look_at_is_opencv():
    T = look_at([0, -2, 1], [0, 0, 0])
    R = T[:3, :3]
    assert np.allclose(R.T @ R, np.eye(3)) and np.isclose(np.linalg.det(R), 1)
    fwd = np.array([0, 2, -1]) / np.sqrt(5)
    assert np.allclose(R[:, 2], fwd)  # z forward
    assert R[2, 1] < 0  # image y (down) points to world -z: down
    G = cv_pose_to_gl(T)
    assert np.allclose(G[:3, 2], -fwd)  # OpenGL looks along -z


def test_projection_of_target_is_principal_point():
    K = intrinsics_from_fov(640, 480, 60)
    T = look_at([1, 1, 1], [0, 0, 0])
    uv, z = project(K, T, np.zeros((1, 3)))
    assert np.allclose(uv[0], [319.5, 239.5]) and np.isclose(z[0], np.sqrt(3))


def test_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        R = random_rotation(rng)
        assert np.allclose(quat_xyzw_to_matrix(matrix_to_quat_xyzw(R)), R, atol=1e-9)
