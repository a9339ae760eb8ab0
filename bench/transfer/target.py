"""Target domain of the transfer benchmark: the 7 objects of bench/transfer/objects.yaml
rendered by Blender Cycles (``bpy`` from PyPI, path tracing on the CPU), with scenes,
materials and lights that have nothing to do with simgen's.

Runs in its own virtualenv (see requirements-bpy.txt), not simgen's:

    /tmp/bpy-venv/bin/python bench/transfer/target.py --out out/transfer/target/test \
        --count 100 --seed 1000 --pybullet-data <pybullet_data folder>

Every image is a pure function of (VERSION, seed, index, settings): its scene is drawn from
``numpy.random.default_rng([seed, index])``, objects are dropped with Blender's rigid body
simulation (Bullet, single-threaded, fixed steps: deterministic), rendered once in colour
(Cycles, N samples, OpenImageDenoise) and once as an instance-id pass (1 sample, 0.01 px
filter, emission-only id colours, Raw view transform, no dither), so each pixel belongs to
exactly one object or to nothing. Boxes are the tight boxes of the visible masks; instances
under --min-pixels visible pixels are dropped.

Output (Ultralytics layout + COCO):
    out/images/000000.png   out/labels/000000.txt (class cx cy w h, normalised)
    out/masks/000000.png    (8-bit instance ids, 0 = none)   out/annotations.json (COCO, RLE)
    out/info.json           VERSION, seed, count, settings: the cache key
Scene design: see docs/transfer.md. Bump VERSION whenever an image could change.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

VERSION = "1.1"  # 1.1: jenga opaque (Blender read its MTL "Tf 1 1 1" as glass)
CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "objects.yaml")


# ------------------------------------------------------------------------------- helpers

def load_objects(path):
    import yaml

    data = yaml.safe_load(open(path, encoding="utf-8"))
    assets = data["assets"]
    names = sorted({a["category"] for a in assets})  # simgen's YOLO class order (sorted)
    return assets, names


def info_of(args):
    return {"version": VERSION, "seed": int(args.seed), "count": int(args.count), "samples": int(args.samples),
            "width": int(args.width), "height": int(args.height), "min_pixels": int(args.min_pixels),
            "objects": open(CLASSES_FILE, encoding="utf-8").read()}


def is_cached(out, info):
    p = os.path.join(out, "info.json")
    if not (os.path.isfile(p) and os.path.isfile(os.path.join(out, "annotations.json"))):
        return False
    try:
        old = json.load(open(p))
    except Exception:
        return False
    return all(old.get(k) == v for k, v in info.items())


def hsv(h, s, v):
    import colorsys

    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def kelvin_rgb(k):
    """Approximate black-body colour (Tanner Helland's fit), linear-ish 0..1."""
    t = k / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * ((t - 60) ** -0.1332047592)
    g = 99.4708025861 * math.log(t) - 161.1195681661 if t <= 66 else 288.1221695283 * ((t - 60) ** -0.0755148492)
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307)
    return tuple(min(max(c / 255.0, 0.0), 1.0) for c in (r, g, b))


# ------------------------------------------------------------------------------- scene

class Builder:
    def __init__(self, args, assets, names):
        self.a = args
        self.assets = assets
        self.names = names

    # -- reset and basic setup
    def reset(self):
        import bpy

        bpy.ops.wm.read_factory_settings(use_empty=True)
        sc = bpy.context.scene
        sc.render.engine = "CYCLES"
        sc.cycles.device = "CPU"
        sc.render.threads_mode = "FIXED"
        sc.render.threads = max(1, int(self.a.threads))
        sc.render.resolution_x = self.a.width
        sc.render.resolution_y = self.a.height
        sc.render.resolution_percentage = 100
        sc.render.image_settings.file_format = "PNG"
        sc.render.image_settings.color_mode = "RGB"
        sc.render.image_settings.color_depth = "8"
        sc.render.image_settings.compression = 15
        sc.render.dither_intensity = 0.0
        sc.cycles.seed = 0
        sc.frame_start, sc.frame_end = 1, 120
        return sc

    # -- materials
    def floor_material(self, rng, name):
        import bpy

        m = bpy.data.materials.new(name)
        m.use_nodes = True
        nt = m.node_tree
        bsdf = nt.nodes["Principled BSDF"]
        kind = rng.choice(["wood", "tiles", "concrete", "marble", "brick", "cloth", "voronoi", "plain"])
        h = rng.random()
        c1 = hsv(h, rng.uniform(0.0, 0.7), rng.uniform(0.08, 0.9))
        c2 = hsv(h + rng.uniform(-0.15, 0.15), rng.uniform(0.0, 0.8), rng.uniform(0.05, 0.9))
        tc = nt.nodes.new("ShaderNodeTexCoord")
        mp = nt.nodes.new("ShaderNodeMapping")
        mp.inputs["Scale"].default_value = [float(rng.uniform(0.5, 3.0))] * 3
        mp.inputs["Rotation"].default_value[2] = float(rng.uniform(0, 2 * math.pi))
        nt.links.new(tc.outputs["Object"], mp.inputs["Vector"])
        ramp = nt.nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].color = (*c1, 1)
        ramp.color_ramp.elements[1].color = (*c2, 1)
        fac = None
        if kind == "wood":
            t = nt.nodes.new("ShaderNodeTexWave")
            t.inputs["Scale"].default_value = float(rng.uniform(2, 8))
            t.inputs["Distortion"].default_value = float(rng.uniform(2, 12))
            t.inputs["Detail"].default_value = 4.0
            fac = t.outputs["Fac"]
        elif kind == "tiles":
            t = nt.nodes.new("ShaderNodeTexChecker")
            t.inputs["Scale"].default_value = float(rng.uniform(2, 20))
            t.inputs["Color1"].default_value = (*c1, 1)
            t.inputs["Color2"].default_value = (*c2, 1)
            nt.links.new(mp.outputs["Vector"], t.inputs["Vector"])
            nt.links.new(t.outputs["Color"], bsdf.inputs["Base Color"])
        elif kind == "brick":
            t = nt.nodes.new("ShaderNodeTexBrick")
            t.inputs["Scale"].default_value = float(rng.uniform(2, 10))
            t.inputs["Color1"].default_value = (*c1, 1)
            t.inputs["Color2"].default_value = (*c2, 1)
            t.inputs["Mortar"].default_value = (*hsv(0, 0, rng.uniform(0.2, 0.9)), 1)
            nt.links.new(mp.outputs["Vector"], t.inputs["Vector"])
            nt.links.new(t.outputs["Color"], bsdf.inputs["Base Color"])
        elif kind == "voronoi":
            t = nt.nodes.new("ShaderNodeTexVoronoi")
            t.inputs["Scale"].default_value = float(rng.uniform(3, 25))
            fac = t.outputs["Distance"]
        elif kind == "cloth":
            t = nt.nodes.new("ShaderNodeTexMagic")
            t.inputs["Scale"].default_value = float(rng.uniform(10, 60))
            fac = t.outputs["Fac"]
        elif kind in ("concrete", "marble"):
            t = nt.nodes.new("ShaderNodeTexNoise")
            t.inputs["Scale"].default_value = float(rng.uniform(3, 30) if kind == "concrete" else rng.uniform(1, 4))
            t.inputs["Detail"].default_value = float(rng.uniform(2, 10))
            t.inputs["Distortion"].default_value = float(0 if kind == "concrete" else rng.uniform(2, 8))
            fac = t.outputs["Fac"]
        else:
            bsdf.inputs["Base Color"].default_value = (*c1, 1)
        if fac is not None:
            nt.links.new(mp.outputs["Vector"], t.inputs["Vector"])
            nt.links.new(fac, ramp.inputs["Fac"])
            nt.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
        if rng.random() < 0.5:  # bump from a fine noise
            n = nt.nodes.new("ShaderNodeTexNoise")
            n.inputs["Scale"].default_value = float(rng.uniform(20, 200))
            bump = nt.nodes.new("ShaderNodeBump")
            bump.inputs["Strength"].default_value = float(rng.uniform(0.05, 0.4))
            nt.links.new(mp.outputs["Vector"], n.inputs["Vector"])
            nt.links.new(n.outputs["Fac"], bump.inputs["Height"])
            nt.links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
        bsdf.inputs["Roughness"].default_value = float(rng.uniform(0.2, 1.0))
        bsdf.inputs["Specular IOR Level"].default_value = float(rng.uniform(0.1, 0.6))
        return m

    def vary_object_material(self, rng, mat, untextured):
        """Copy of the imported material: keeps the object's own texture, varies the finish."""
        import bpy

        if mat is None:
            mat = bpy.data.materials.new("plain")
            mat.use_nodes = True
        m = mat.copy()
        m.use_nodes = True
        bsdf = next((n for n in m.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
        if bsdf is None:
            return m
        # Blender's OBJ importer reads the MTL "Tf" (transmission *filter*, which the spec applies
        # only to a non-opaque material; jenga.mtl has "Tf 1 1 1" with "d 1") as Transmission
        # Weight 1: target 1.0 rendered every jenga block as glass. Every object here is opaque.
        bsdf.inputs["Transmission Weight"].default_value = 0.0
        bsdf.inputs["Alpha"].default_value = 1.0
        if untextured:  # mug / lego: a random colour (ceramic or plastic)
            bsdf.inputs["Base Color"].default_value = (*hsv(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.15, 0.95)), 1)
        finish = rng.choice(["matte", "satin", "glossy", "coated"])
        rough = {"matte": (0.6, 1.0), "satin": (0.3, 0.6), "glossy": (0.05, 0.3), "coated": (0.3, 0.8)}[finish]
        bsdf.inputs["Roughness"].default_value = float(rng.uniform(*rough))
        bsdf.inputs["Specular IOR Level"].default_value = float(rng.uniform(0.3, 0.8))
        bsdf.inputs["Metallic"].default_value = 0.0
        if finish == "coated":
            bsdf.inputs["Coat Weight"].default_value = float(rng.uniform(0.3, 1.0))
            bsdf.inputs["Coat Roughness"].default_value = float(rng.uniform(0.0, 0.15))
        return m

    # -- objects
    def import_templates(self):
        """One template object per asset (file coordinates, scaled to metres, origin at the
        bounding-box centre); instances share its mesh."""
        import bpy

        pb = self.a.pybullet_data
        tmpl = {}
        for a in self.assets:
            before = set(bpy.data.objects)
            bpy.ops.wm.obj_import(filepath=os.path.join(pb, a["mesh"]), forward_axis="Y", up_axis="Z")
            new = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
            if len(new) > 1:
                bpy.ops.object.select_all(action="DESELECT")
                for o in new:
                    o.select_set(True)
                bpy.context.view_layer.objects.active = new[0]
                bpy.ops.object.join()
            o = bpy.context.view_layer.objects.active if len(new) > 1 else new[0]
            s = a.get("scale", 1.0)
            o.scale = s if isinstance(s, list) else [s] * 3
            bpy.ops.object.select_all(action="DESELECT")
            o.select_set(True)
            bpy.context.view_layer.objects.active = o
            bpy.ops.object.transform_apply(location=False, rotation=True, scale=True)
            bpy.ops.object.origin_set(type="ORIGIN_GEOMETRY", center="BOUNDS")
            o.location = (0, 0, 0)
            for c in list(o.users_collection):
                c.objects.unlink(o)
            mat = o.data.materials[0] if len(o.data.materials) else None
            textured = bool(mat and mat.use_nodes and any(n.type == "TEX_IMAGE" for n in mat.node_tree.nodes))
            if not len(o.data.materials):
                o.data.materials.append(None)
            import numpy as np

            co = np.empty(len(o.data.vertices) * 3)
            o.data.vertices.foreach_get("co", co)
            radius = float(np.linalg.norm(co.reshape(-1, 3), axis=1).max())
            tmpl[a["name"]] = dict(obj=o, mat=mat, textured=textured, category=a["category"], radius=radius,
                                   mass=float(a.get("mass", 0.1)))
        return tmpl

    def add_rigid(self, o, passive=False, shape="CONVEX_HULL", mass=0.1, friction=0.6):
        import bpy

        bpy.ops.object.select_all(action="DESELECT")
        o.select_set(True)
        bpy.context.view_layer.objects.active = o
        bpy.ops.rigidbody.object_add(type="PASSIVE" if passive else "ACTIVE")
        rb = o.rigid_body
        rb.collision_shape = shape
        rb.friction = friction
        rb.restitution = 0.05
        rb.collision_margin = 0.001
        if not passive:
            rb.mass = mass
            rb.linear_damping = 0.1
            rb.angular_damping = 0.3

    def box(self, name, size, loc, mat):
        import bpy

        bpy.ops.mesh.primitive_cube_add(size=1.0, location=loc)
        o = bpy.context.active_object
        o.name = name
        o.scale = size
        bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
        o.data.materials.append(mat)
        return o

    def build(self, index):
        import bpy
        import numpy as np
        from mathutils import Euler, Quaternion, Vector

        rng = np.random.default_rng([int(self.a.seed), int(index)])
        sc = self.reset()
        tmpl = self.import_templates()
        bpy.ops.rigidbody.world_add()
        rbw = sc.rigidbody_world
        rbw.substeps_per_frame = 20
        rbw.solver_iterations = 20
        rbw.point_cache.frame_start, rbw.point_cache.frame_end = 1, 120
        statics = []

        # support: a floor, or a table top (with legs) standing on a floor 0.74 m below
        on_table = rng.random() < 0.5
        floor_mat = self.floor_material(rng, "floor")
        if on_table:
            tw, td = float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.5, 0.9))
            top_mat = self.floor_material(rng, "tabletop")
            top = self.box("table", (tw, td, 0.03), (0, 0, -0.015), top_mat)
            leg_mat = self.floor_material(rng, "legs")
            for sx in (-1, 1):
                for sy in (-1, 1):
                    statics.append(self.box("leg", (0.05, 0.05, 0.71), (sx * (tw / 2 - 0.05), sy * (td / 2 - 0.05), -0.385), leg_mat))
            fl = self.box("floor", (10, 10, 0.1), (0, 0, -0.79), floor_mat)
            self.add_rigid(top, passive=True, shape="BOX")
            self.add_rigid(fl, passive=True, shape="BOX")
            statics += [top, fl]
            spread = min(tw, td) * 0.35
        else:
            fl = self.box("floor", (10, 10, 0.1), (0, 0, -0.05), floor_mat)
            self.add_rigid(fl, passive=True, shape="BOX")
            statics.append(fl)
            spread = float(rng.uniform(0.12, 0.35))
        if rng.random() < 0.35:  # a back wall / backdrop
            wall_mat = self.floor_material(rng, "wall")
            ang = float(rng.uniform(0, 2 * math.pi))
            d = float(rng.uniform(0.5, 1.2))
            w = self.box("wall", (6, 0.05, 4), (d * math.cos(ang), d * math.sin(ang), 1.0), wall_mat)
            w.rotation_euler = (0, 0, ang + math.pi / 2)
            statics.append(w)

        # objects: 3-10 labeled instances, 0-3 unlabeled distractors
        n = int(rng.integers(3, 11))
        names = [a["name"] for a in self.assets]
        picks = [names[int(i)] for i in rng.integers(0, len(names), n)]
        placed = []  # (xy, z, r)
        objs = []

        def spawn(r):
            for _ in range(10):
                ang, rad = rng.uniform(0, 2 * math.pi), spread * math.sqrt(rng.random())
                xy = np.array([rad * math.cos(ang), rad * math.sin(ang)])
                z = r + float(rng.uniform(0.005, 0.08))
                clash = [pz + pr + r + 0.005 for pxy, pz, pr in placed if np.linalg.norm(pxy - xy) < pr + r]
                if not clash:
                    break
            if clash:
                z = max(z, max(clash))
            placed.append((xy, z, r))
            return Vector((xy[0], xy[1], z))

        for k, nm in enumerate(picks):
            t = tmpl[nm]
            o = t["obj"].copy()
            o.name = f"obj{k + 1}"
            bpy.context.scene.collection.objects.link(o)
            sj = float(rng.uniform(0.92, 1.08))
            o.scale = (sj, sj, sj)
            q = rng.normal(size=4)
            o.rotation_mode = "QUATERNION"
            o.rotation_quaternion = Quaternion([float(v) for v in q / np.linalg.norm(q)])
            o.location = spawn(t["radius"] * sj)
            o.material_slots[0].link = "OBJECT"
            o.material_slots[0].material = self.vary_object_material(rng, t["mat"], not t["textured"])
            self.add_rigid(o, mass=t["mass"], friction=float(rng.uniform(0.4, 0.9)))
            o.pass_index = k + 1
            objs.append((o, t["category"]))
        for d in range(int(rng.integers(0, 4))):
            kind = rng.choice(["cube", "cylinder", "cone", "sphere"])
            size = float(rng.uniform(0.03, 0.12))
            if kind == "cube":
                bpy.ops.mesh.primitive_cube_add(size=size)
            elif kind == "cylinder":
                bpy.ops.mesh.primitive_cylinder_add(radius=size / 2, depth=size * rng.uniform(0.5, 2.5))
            elif kind == "cone":
                bpy.ops.mesh.primitive_cone_add(radius1=size / 2, depth=size)
            else:
                bpy.ops.mesh.primitive_uv_sphere_add(radius=size / 2, segments=24, ring_count=12)
            o = bpy.context.active_object
            o.name = f"distractor{d}"
            o.rotation_euler = Euler([float(v) for v in rng.uniform(0, 2 * math.pi, 3)])
            o.location = spawn(size * 0.9)
            dm = self.floor_material(rng, "distractor")
            o.data.materials.append(dm)
            self.add_rigid(o, mass=0.1)
            statics.append(o)

        # physics: fixed-step Bullet, frames 1..120 (5 s at 24 fps)
        for f in range(1, 121):
            sc.frame_set(f)
        for o, _ in objs:  # bake the settled pose, drop the rigid bodies
            o.matrix_world = o.matrix_world.copy()

        # lights: world colour + 1-3 area / point / sun lights, soft shadows
        world = bpy.data.worlds.new("world")
        sc.world = world
        world.use_nodes = True
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (*hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.3, 1.0)), 1)
        bg.inputs["Strength"].default_value = float(rng.uniform(0.03, 0.8))
        for li in range(int(rng.integers(1, 4))):
            kind = rng.choice(["AREA", "POINT", "SUN"], p=[0.45, 0.3, 0.25])
            ld = bpy.data.lights.new(f"light{li}", kind)
            ld.color = kelvin_rgb(float(rng.uniform(2700, 8000)))
            el, az = math.radians(rng.uniform(20, 85)), rng.uniform(0, 2 * math.pi)
            dist = float(rng.uniform(0.8, 3.0))
            pos = Vector((dist * math.cos(el) * math.cos(az), dist * math.cos(el) * math.sin(az), dist * math.sin(el)))
            if kind == "AREA":
                ld.size = float(rng.uniform(0.1, 1.5))
                ld.energy = float(rng.uniform(4, 50)) * dist ** 2
            elif kind == "POINT":
                ld.shadow_soft_size = float(rng.uniform(0.02, 0.4))
                ld.energy = float(rng.uniform(3, 40)) * dist ** 2
            else:
                ld.angle = math.radians(rng.uniform(0.5, 15))
                ld.energy = float(rng.uniform(0.5, 4))
            lo = bpy.data.objects.new(f"light{li}", ld)
            sc.collection.objects.link(lo)
            lo.location = pos
            lo.rotation_mode = "QUATERNION"
            lo.rotation_quaternion = (-pos).to_track_quat("-Z", "Y")

        # camera: closer and farther, low and high; resampled until >= 2 objects are in view
        from bpy_extras.object_utils import world_to_camera_view

        cd = bpy.data.cameras.new("cam")
        cd.sensor_width = 36.0
        cd.lens = float(rng.uniform(22, 50))
        cd.clip_start, cd.clip_end = 0.01, 50
        cam = bpy.data.objects.new("cam", cd)
        sc.collection.objects.link(cam)
        sc.camera = cam
        centres = [o.matrix_world.translation.copy() for o, _ in objs]
        mid = sum(centres, Vector()) / len(centres)
        need = min(2, len(objs))
        for _ in range(30):
            look = mid + Vector([float(v) for v in rng.uniform(-0.06, 0.06, 3)])
            look.z = max(look.z, 0.0)
            dist = float(math.exp(rng.uniform(math.log(0.3), math.log(1.3)))) * (cd.lens / 35.0)
            el, az = math.radians(rng.uniform(12, 85)), rng.uniform(0, 2 * math.pi)
            pos = look + Vector((dist * math.cos(el) * math.cos(az), dist * math.cos(el) * math.sin(az), dist * math.sin(el)))
            cam.location = pos
            cam.rotation_mode = "QUATERNION"
            q = (look - pos).to_track_quat("-Z", "Y")
            roll = Quaternion((look - pos).normalized(), math.radians(rng.uniform(-10, 10)))
            cam.rotation_quaternion = roll @ q
            bpy.context.view_layer.update()
            inside = 0
            for c in centres:
                v = world_to_camera_view(sc, cam, c)
                inside += 0.02 < v.x < 0.98 and 0.02 < v.y < 0.98 and v.z > 0.05
            if inside >= need:
                break
        return sc, objs, statics, rng

    # -- rendering
    def render_rgb(self, sc, rng, path):
        import bpy

        sc.cycles.samples = int(self.a.samples)
        sc.cycles.use_adaptive_sampling = True
        sc.cycles.use_denoising = True
        sc.cycles.denoiser = "OPENIMAGEDENOISE"
        sc.cycles.denoising_quality = "FAST"  # HIGH/ACCURATE costs ~5 s an image on 2 cores
        sc.cycles.denoising_prefilter = "NONE"
        sc.cycles.max_bounces = 4
        sc.cycles.diffuse_bounces, sc.cycles.glossy_bounces, sc.cycles.transmission_bounces = 2, 2, 1
        sc.cycles.caustics_reflective = sc.cycles.caustics_refractive = False
        sc.cycles.filter_width = 1.5
        sc.view_settings.view_transform = str(rng.choice(["AgX", "Standard", "Filmic"]))
        sc.view_settings.exposure = float(rng.uniform(-0.8, 0.4))
        sc.render.filepath = path
        bpy.ops.render.render(write_still=True)

    def render_ids(self, sc, objs, statics, path):
        import bpy

        black = bpy.data.materials.new("idblack")
        black.use_nodes = True
        nt = black.node_tree
        for nd in list(nt.nodes):
            nt.nodes.remove(nd)
        out = nt.nodes.new("ShaderNodeOutputMaterial")
        em = nt.nodes.new("ShaderNodeEmission")
        em.inputs["Color"].default_value = (0, 0, 0, 1)
        nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
        for o in statics:
            for s in o.material_slots:
                s.link = "OBJECT"
                s.material = black
        for k, (o, _) in enumerate(objs, start=1):
            m = black.copy()
            m.node_tree.nodes["Emission"].inputs["Color"].default_value = (k * 4 / 255.0, 0, 0, 1)
            for s in o.material_slots:
                s.link = "OBJECT"
                s.material = m
        for o in sc.objects:
            if o.type == "LIGHT":
                o.hide_render = True
        sc.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
        sc.cycles.samples = 1
        sc.cycles.use_adaptive_sampling = False
        sc.cycles.use_denoising = False
        sc.cycles.filter_width = 0.01
        sc.cycles.max_bounces = 0
        sc.view_settings.view_transform = "Raw"
        sc.view_settings.look = "None"
        sc.view_settings.exposure = 0.0
        sc.view_settings.gamma = 1.0
        sc.render.filepath = path
        bpy.ops.render.render(write_still=True)


# ------------------------------------------------------------------------------- labels

def labels_from_ids(id_png, objs, names, min_pixels):
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(id_png).convert("RGB")).astype(np.int32)
    ids = np.rint(rgb[..., 0] / 4.0).astype(np.int32)
    ids[ids > len(objs)] = 0
    out = []
    for k, (_o, cat) in enumerate(objs, start=1):
        m = ids == k
        area = int(m.sum())
        if area < min_pixels:
            continue
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        out.append(dict(instance_id=k, category=cat, class_id=names.index(cat), area=area,
                        bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1], mask=m))
    return ids.astype(np.uint8), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="render only indices [start, count) (resume/sharding)")
    ap.add_argument("--step", type=int, default=1, help="render every step-th index from start (sharding)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-pixels", type=int, default=20)
    ap.add_argument("--pybullet-data", required=True)
    ap.add_argument("--assemble-only", action="store_true", help="only write annotations.json from the parts")
    a = ap.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])

    assets, names = load_objects(CLASSES_FILE)
    info = info_of(a)
    if is_cached(a.out, info):
        print(f"target: cached {a.out} (version {VERSION}, seed {a.seed}, {a.count} images)")
        return 0
    for sub in ("images", "labels", "masks", "parts"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    info_tmp = os.path.join(a.out, "parts", "settings.json")
    same = {k: v for k, v in info.items() if k != "count"}  # image i does not depend on the count
    if os.path.isfile(info_tmp) and json.load(open(info_tmp)) != same:  # other settings: start over
        import shutil

        for sub in ("images", "labels", "masks", "parts"):
            shutil.rmtree(os.path.join(a.out, sub))
            os.makedirs(os.path.join(a.out, sub))
    json.dump(same, open(info_tmp, "w"))

    if not a.assemble_only:
        import numpy as np
        from PIL import Image
        from pycocotools import mask as mask_utils

        b = Builder(a, assets, names)
        t0 = time.time()
        done = 0
        for i in range(a.start, a.count, a.step):
            part = os.path.join(a.out, "parts", f"{i:06d}.json")
            if os.path.isfile(part):
                continue
            ti = time.time()
            sc, objs, statics, rng = b.build(i)
            stem = f"{i:06d}"
            img = os.path.join(a.out, "images", stem + ".png")
            b.render_rgb(sc, rng, img)
            idp = os.path.join(a.out, "parts", stem + "_id.png")
            b.render_ids(sc, objs, statics, idp)
            ids, anns = labels_from_ids(idp, objs, names, a.min_pixels)
            os.remove(idp)
            Image.fromarray(ids).save(os.path.join(a.out, "masks", stem + ".png"))
            W, H = a.width, a.height
            with open(os.path.join(a.out, "labels", stem + ".txt"), "w") as f:
                for an in anns:
                    x, y, w, h = an["bbox"]
                    f.write(f"{an['class_id']} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}\n")
            recs = []
            for an in anns:
                rle = mask_utils.encode(np.asfortranarray(an["mask"].astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                recs.append(dict(instance_id=an["instance_id"], category_id=an["class_id"] + 1, bbox=an["bbox"],
                                 area=an["area"], segmentation=rle, iscrowd=0))
            json.dump(dict(index=i, file_name=f"images/{stem}.png", width=W, height=H, annotations=recs,
                           placed=len(objs), seconds=round(time.time() - ti, 2)), open(part + ".tmp", "w"))
            os.replace(part + ".tmp", part)
            done += 1
            print(f"target: {a.out} image {i} ({len(anns)}/{len(objs)} labeled) {time.time() - ti:.1f} s", flush=True)
        if done:
            print(f"target: {done} images in {time.time() - t0:.0f} s ({(time.time() - t0) / done:.2f} s/image)")

    # assemble when every part exists
    parts = [os.path.join(a.out, "parts", f"{i:06d}.json") for i in range(a.count)]
    if not all(os.path.isfile(p) for p in parts):
        print(f"target: {sum(map(os.path.isfile, parts))}/{a.count} images of {a.out} done")
        return 0
    images, annotations, secs = [], [], []
    for p in parts:
        r = json.load(open(p))
        images.append(dict(id=r["index"] + 1, file_name=r["file_name"], width=r["width"], height=r["height"]))
        secs.append(r["seconds"])
        for an in r["annotations"]:
            annotations.append(dict(id=len(annotations) + 1, image_id=r["index"] + 1, **an))
    coco = dict(info=dict(description="simgen transfer benchmark target (Blender Cycles)", version=VERSION,
                          seed=a.seed), images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=n) for i, n in enumerate(names)])
    json.dump(coco, open(os.path.join(a.out, "annotations.json"), "w"))
    info["images"] = len(images)
    info["instances"] = len(annotations)
    info["mean_seconds_per_image"] = round(sum(secs) / len(secs), 2)
    info["renderer"] = "Blender Cycles (bpy)"
    import bpy

    info["blender"] = bpy.app.version_string
    json.dump(info, open(os.path.join(a.out, "info.json"), "w"), indent=1)
    print(f"target: wrote {a.out} ({len(images)} images, {len(annotations)} instances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
