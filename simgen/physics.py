"""pybullet world, one private DIRECT client per process: drop objects until at rest.

The world is reset before every scene, so a scene's outcome depends on the scene alone, not
on what this process simulated before (determinism across worker counts).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

from .assets import AssetLibrary
from .geometry import matrix_to_quat_xyzw, pose_matrix, quat_xyzw_to_matrix
from .native import import_pybullet as _import_pybullet
from .native import quiet_c_output  # noqa: F401 (re-exported)
from .spec import SceneSpec, SettleReport

CHECK_EVERY = 10  # steps between at-rest checks


def support_footprint(scene: SceneSpec):
    """(xy_min, xy_max) of where objects may rest: within the bin's or shelf's outline when
    there is one, else on the floor."""
    if scene.statics:
        lo = np.min([st.pose[:2, 3] - np.asarray(st.extents[:2]) / 2 for st in scene.statics], axis=0)
        hi = np.max([st.pose[:2, 3] + np.asarray(st.extents[:2]) / 2 for st in scene.statics], axis=0)
        return lo, hi
    h = scene.floor_size / 2.0
    return np.array([-h, -h]), np.array([h, h])


class PhysicsWorld:
    """Owns one pybullet DIRECT client. Not thread-safe; one per process.

    Every body, the floor and static walls included, is a plain rigid body
    (``useMaximalCoordinates=True``): pybullet's default, a link-less Featherstone multibody,
    goes through the multibody contact solver, and one multibody in the world (the floor
    alone) keeps it in play. All rigid: tabletop 30.5 -> 19 ms a scene, bin 71 -> 42, same
    steps, valid scenes and contact depths (bench notes in the README)."""

    def __init__(self):
        p = _import_pybullet()
        self._p = p
        self.client = p.connect(p.DIRECT)
        if self.client < 0:  # pragma: no cover - DIRECT never needs a display
            raise RuntimeError("pybullet could not start a DIRECT client")
        # pybullet's DIRECT client loads TinyRenderer and converts every new body's shapes
        # into its visual meshes (a tessellated sphere, a textured plane) for getCameraImage,
        # which simgen never calls. Unloading it: createMultiBody 0.6 -> 0.12 ms for a teddy,
        # the floor 0.9 -> 0.12 ms, resetSimulation 1.1 -> 0.7 ms; the physics is untouched.
        renderer = p.loadPlugin("tinyRendererPlugin", physicsClientId=self.client)  # (its id)
        if renderer >= 0:
            p.unloadPlugin(renderer, physicsClientId=self.client)

    def close(self) -> None:
        if self.client is not None:
            try:
                self._p.disconnect(physicsClientId=self.client)
            except Exception:
                pass
            self.client = None

    def _shape(self, library: AssetLibrary, name: str, scale: np.ndarray) -> int:
        p, c = self._p, self.client
        col = library.collision(name)
        s = [float(v) for v in scale]
        if col.kind == "box":
            return p.createCollisionShape(p.GEOM_BOX, halfExtents=[h * f for h, f in zip(col.half_extents, s)],
                                          physicsClientId=c)
        if col.kind == "sphere" and s[0] == s[1] == s[2]:
            return p.createCollisionShape(p.GEOM_SPHERE, radius=col.radius * s[0], physicsClientId=c)
        # Meshes always come from files: vertex lists would stay in pybullet's memory for good.
        return p.createCollisionShape(p.GEOM_MESH, fileName=col.path,
                                      meshScale=[m * f for m, f in zip(col.mesh_scale, s)],
                                      collisionFramePosition=[o * f for o, f in zip(col.offset, s)],
                                      physicsClientId=c)

    def settle(self, scene: SceneSpec, library: AssetLibrary, cfg) -> Tuple[SceneSpec, SettleReport]:
        """Drop the scene's objects on the floor (z = 0) and step until all are at rest.

        At rest: every body's linear speed < linear_velocity_threshold (m/s) and angular
        speed < angular_velocity_threshold (rad/s) for ``rest_checks`` consecutive checks,
        one check every 10 steps; otherwise stop at ``max_steps`` and report it.
        Returns the scene with settled poses and a SettleReport.
        """
        p, c = self._p, self.client
        # config values read once: OmegaConf attribute access costs ~20 us, hundreds per scene
        max_steps, rest_checks = int(cfg.max_steps), int(cfg.rest_checks)
        lin_thr, ang_thr = float(cfg.linear_velocity_threshold), float(cfg.angular_velocity_threshold)
        dynamics = dict(rollingFriction=float(cfg.rolling_friction), spinningFriction=float(cfg.rolling_friction),
                        linearDamping=float(cfg.linear_damping), angularDamping=float(cfg.angular_damping))
        friction_d, restitution_d = cfg.friction, cfg.restitution
        sink_tol, pen_tol = float(cfg.sink_tolerance), float(cfg.penetration_tolerance)
        p.resetSimulation(physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=float(cfg.timestep), numSolverIterations=int(cfg.solver_iterations),
                                    deterministicOverlappingPairs=1, physicsClientId=c)
        if scene.floor_enabled:
            plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
            floor = p.createMultiBody(0, plane, useMaximalCoordinates=True, physicsClientId=c)
            p.changeDynamics(floor, -1, lateralFriction=float(cfg.floor_friction), physicsClientId=c)
        for st in scene.statics:
            box = p.createCollisionShape(p.GEOM_BOX, halfExtents=(np.asarray(st.extents) / 2).tolist(),
                                         physicsClientId=c)
            body = p.createMultiBody(0, box, basePosition=st.pose[:3, 3].tolist(),
                                     baseOrientation=matrix_to_quat_xyzw(st.pose[:3, :3]).tolist(),
                                     useMaximalCoordinates=True, physicsClientId=c)
            p.changeDynamics(body, -1, lateralFriction=float(cfg.floor_friction), physicsClientId=c)
        from .distributions import sample_float
        from .seeds import factor_rng

        rng = factor_rng(scene.seed, scene.index, "physics", scene.attempt)
        bodies: Dict[int, int] = {}
        quats = matrix_to_quat_xyzw(np.array([o.pose[:3, :3] for o in scene.objects])).tolist() if scene.objects else []
        for o, quat in zip(scene.objects, quats):
            asset = library.assets[o.asset] if o.asset in library.assets else None
            friction = sample_float(friction_d, rng, "physics.friction")
            restitution = sample_float(restitution_d, rng, "physics.restitution")
            shape = self._shape(library, o.asset, o.scale)
            mass = float(asset.mass if asset else 0.1) * float(np.prod(o.scale))
            body = p.createMultiBody(mass, shape, basePosition=o.pose[:3, 3].tolist(),
                                     baseOrientation=quat, useMaximalCoordinates=True,
                                     physicsClientId=c)
            fr = asset.friction if asset is not None and asset.friction is not None else friction
            p.changeDynamics(body, -1, lateralFriction=float(fr), restitution=float(restitution), **dynamics,
                             physicsClientId=c)
            bodies[o.instance_id] = body
        steps, calm, lin, ang = 0, 0, 0.0, 0.0
        exploded = False
        top = max([float(o.pose[2, 3]) for o in scene.objects] + [0.0])
        v_limit = float(np.sqrt(2 * 9.81 * top)) + float(cfg.explode_speed)  # free fall + margin
        converged = not bodies
        while bodies and steps < max_steps:
            for _ in range(min(CHECK_EVERY, max_steps - steps)):
                p.stepSimulation(physicsClientId=c)
            steps = min(steps + CHECK_EVERY, max_steps)
            vel = [p.getBaseVelocity(b, physicsClientId=c) for b in bodies.values()]
            lin = max(math.hypot(*v[0]) for v in vel)  # (math, not numpy: 10x less overhead
            ang = max(math.hypot(*v[1]) for v in vel)  # on 3-vectors, ~740 per scene)
            if lin > v_limit:  # faster than falling from the highest start: penetration blew up
                exploded = True
                break
            if lin < lin_thr and ang < ang_thr:
                calm += 1
                if calm >= rest_checks:
                    converged = True
                    break
            else:
                calm = 0
        poses, below, fell = {}, [], []
        for iid, b in bodies.items():
            pos, quat = p.getBasePositionAndOrientation(b, physicsClientId=c)
            poses[iid] = pose_matrix(quat_xyzw_to_matrix(quat), pos)
        lo, hi = support_footprint(scene)
        for o in scene.objects:  # sank into / fell through the floor: lowest vertex under z = 0
            v = library.visual_mesh(o.asset).vertices * np.asarray(o.scale)
            T = poses[o.instance_id]
            if scene.floor_enabled and float((v @ T[:3, :3].T + T[:3, 3])[:, 2].min()) < -sink_tol:
                below.append(o.instance_id)
            xy = T[:2, 3]
            if (xy < lo).any() or (xy > hi).any():
                fell.append(o.instance_id)
        # Interpenetration: contacts deeper than the tolerance between two objects.
        ids = {b: iid for iid, b in bodies.items()}
        deep = set()
        for cp in p.getContactPoints(physicsClientId=c):
            a, b, depth = cp[1], cp[2], cp[8]
            if a in ids and b in ids and depth < -pen_tol:
                deep.update((ids[a], ids[b]))
        report = SettleReport(converged=converged and not exploded, steps=steps, max_linear_velocity=lin,
                              max_angular_velocity=ang, below_floor=tuple(below), fell_off=tuple(fell),
                              exploded=exploded, interpenetrating=tuple(sorted(deep)))
        return scene.with_object_poses(poses), report
