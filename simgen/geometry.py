"""Pure camera and rotation math (numpy only). OpenCV camera frame unless a name says GL."""
from __future__ import annotations

import numpy as np

# OpenCV camera axes (x right, y down, z forward) -> OpenGL camera axes (x right, y up, z back).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics_from_fov(width: int, height: int, fov_y_deg: float) -> np.ndarray:
    """(3,3) OpenCV K for a vertical field of view, square pixels, principal point at the
    image centre ((W-1)/2, (H-1)/2) in the convention where pixel centres are integers."""
    fy = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2.0)
    return np.array([[fy, 0.0, (width - 1) / 2.0], [0.0, fy, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(4,4) camera-to-world pose, OpenCV axes, camera at ``eye`` looking at ``target``."""
    eye = np.asarray(eye, float)
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    up = np.asarray(up, float)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along `up`: pick any perpendicular
        x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def cv_pose_to_gl(pose_cv: np.ndarray) -> np.ndarray:
    """Camera-to-world pose with OpenCV axes -> the same camera with OpenGL axes."""
    return np.asarray(pose_cv, float) @ _CV_TO_GL


def project(K: np.ndarray, cam_to_world: np.ndarray, points_world: np.ndarray):
    """Project (N,3) world points. Returns ((N,2) pixel coords, (N,) depth z in metres)."""
    w2c = np.linalg.inv(cam_to_world)
    pc = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    uv = (pc[:, :2] / z[:, None]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    return uv, z


def quat_xyzw_to_matrix(q) -> np.ndarray:
    """(4,) quaternion x, y, z, w -> (3,3) rotation matrix."""
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """(3,3) rotation matrix -> (4,) quaternion x, y, z, w with w >= 0; or (N,3,3) -> (N,4)
    (one scipy call for a whole scene: its per-call overhead is ~0.2 ms)."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(np.asarray(R, float)).as_quat()  # scipy order: x, y, z, w
    return q * np.where(q[..., 3:] >= 0, 1.0, -1.0)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """(3,3) rotation drawn uniformly from SO(3) (Shoemake's method)."""
    return rotation_from_unit_cube(*rng.random(3))


def rotation_from_unit_cube(u1: float, u2: float, u3: float) -> np.ndarray:
    """Shoemake's map from the unit cube to SO(3): it carries the uniform measure to the
    uniform (Haar) measure, so evenly spread points of the cube give evenly spread rotations."""
    q = [np.sqrt(1 - u1) * np.sin(2 * np.pi * u2), np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
         np.sqrt(u1) * np.sin(2 * np.pi * u3), np.sqrt(u1) * np.cos(2 * np.pi * u3)]
    return quat_xyzw_to_matrix(q)


def pose_matrix(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T
