"""Asset library: manifests (assets/*.yaml or a user's file), mesh loading with trimesh,
unit normalisation to metres, and per-process caches.

A manifest lists assets; each is either a trimesh primitive (``primitive: box|sphere|
cylinder|cone|capsule`` with sizes in metres) or a mesh file (``mesh: path`` relative to the
manifest's ``root``; ``scale`` converts mesh units to metres). A mesh's model frame is the
file's frame shifted to the centre of its bounding box, so every model is centred. ``collision`` optionally names
a convex decomposition (one convex part per OBJ object); otherwise physics uses the convex
hull of the visual mesh, or the exact shape for boxes and spheres.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import AssetError, ConfigError

log = logging.getLogger("simgen")
PRIMITIVES = ("box", "sphere", "cylinder", "cone", "capsule", "torus", "prism", "rock")
PRIMITIVE_PARAMS = ("extents", "radius", "height", "major_radius", "minor_radius", "sides", "seed")
MESH_EXTS = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off", ".dae")
DECOMPOSITION_VERSION = "vhacd-r50k-c0.0025-v64"  # part of the cache key: change with the settings


@dataclass(frozen=True)
class Asset:
    """One asset. scale: (3,) mesh units -> metres; mass in kg; paths are absolute."""

    name: str
    category: str
    set_name: str
    primitive: Optional[str] = None
    params: Tuple[Tuple[str, object], ...] = ()
    mesh_path: Optional[str] = None
    collision_path: Optional[str] = None
    scale: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    mass: float = 0.1
    friction: Optional[float] = None
    decompose: bool = False  # concave mesh without a given decomposition: run V-HACD (cached)
    max_faces: int = 0  # a mesh with more faces is simplified to this many for rendering and physics; 0: never
    color: Optional[Tuple[float, float, float, float]] = None  # declared RGBA in [0, 1] (manifest or sidecar)
    appearance: Optional[str] = None  # keep | jitter | randomize; None: objects.appearance decides
    up: Optional[str] = None  # the model axis that points up when the object stands as made (x|y|z|-x|-y|-z)
    # named 3D keypoints: (name, (x, y, z)) in the mesh file's frame and units (primitives: metres,
    # model frame); empty: a primitive's built-in set (builtin_keypoints), else none
    keypoints: Tuple[Tuple[str, Tuple[float, float, float]], ...] = ()
    skeleton: Tuple[Tuple[str, str], ...] = ()  # keypoint name pairs joined by a line

    @property
    def source(self) -> str:
        return self.mesh_path or f"primitive:{self.primitive}"


@dataclass(frozen=True)
class Collision:
    """Physics shape in metres for scale 1: kind 'box' (half_extents), 'sphere' (radius; path:
    its hull, for non-uniform scales), or 'file' (path + mesh_scale: an OBJ, a convex hull
    per OBJ object; convex hulls are written to the cache by hull_file). Paths are
    corners_file's form of the OBJ: for pybullet's convex hulls only, not a mesh to draw."""

    kind: str
    half_extents: Optional[Tuple[float, float, float]] = None
    radius: float = 0.0
    path: Optional[str] = None
    mesh_scale: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # file frame -> model frame, metres


def _builtin_manifest_dir():
    from importlib import resources

    return resources.files("simgen.asset_files")


def builtin_sets() -> List[str]:
    return sorted(p.name[:-5] for p in _builtin_manifest_dir().iterdir() if p.name.endswith(".yaml"))


def _resolve_root(root: Optional[str], manifest_dir: str) -> str:
    if root is None:
        return manifest_dir
    if root == "pybullet_data":
        import pybullet_data

        return pybullet_data.getDataPath()
    return root if os.path.isabs(root) else os.path.join(manifest_dir, root)


def _scale3(value, where: str) -> Tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = (float(value),) * 3
    elif isinstance(value, (list, tuple)) and len(value) == 3:
        v = tuple(float(x) for x in value)
    else:
        raise AssetError(f"{where}: scale must be a number or [sx, sy, sz], got {value!r}")
    if min(v) <= 0:
        raise AssetError(f"{where}: scale must be > 0, got {value!r}")
    return v


def load_manifest(spec: str, units: str = "auto", on_error: str = "fail") -> List[Asset]:
    """Parse a built-in set name, a manifest YAML or a folder of meshes into assets."""
    import yaml

    if os.path.isdir(spec):
        return load_folder(spec, units=units, on_error=on_error)
    if spec.endswith((".yaml", ".yml")) or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise ConfigError(f"asset manifest '{spec}' not found (fix: give an existing YAML "
                              f"file or one of the built-in sets: {', '.join(builtin_sets())})")
        text = open(path, encoding="utf-8").read()
        manifest_dir = os.path.dirname(path)
    else:
        res = _builtin_manifest_dir() / f"{spec}.yaml"
        if not res.is_file():
            raise ConfigError(f"unknown asset set '{spec}'; built-in sets: "
                              f"{', '.join(builtin_sets())} (fix: objects.asset_sets=[primitives])")
        text = res.read_text(encoding="utf-8")
        manifest_dir = str(res.parent)
        path = f"<built-in {spec}>"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AssetError(f"asset manifest {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("assets"), list) or not data["assets"]:
        raise AssetError(f"asset manifest {path} must have a non-empty 'assets:' list")
    set_name = str(data.get("name", os.path.splitext(os.path.basename(spec))[0]))
    root = _resolve_root(data.get("root"), manifest_dir)
    out = []
    for i, entry in enumerate(data["assets"]):
        where = f"asset manifest {path}, entry {i}"
        if not isinstance(entry, dict) or "name" not in entry:
            raise AssetError(f"{where}: each asset needs at least a 'name'")
        name = str(entry["name"])
        where = f"asset '{name}' in {path}"
        category = str(entry.get("category", name))
        mass = float(entry.get("mass", 0.1))
        friction = entry.get("friction")
        looks = {**_appearance_fields(entry, where), **_keypoint_fields(entry, where)}
        if "primitive" in entry:
            prim = entry["primitive"]
            if prim not in PRIMITIVES:
                raise AssetError(f"{where}: unknown primitive '{prim}' (use one of {', '.join(PRIMITIVES)})")
            params = tuple(sorted((k, tuple(entry[k]) if isinstance(entry[k], list) else entry[k])
                                  for k in PRIMITIVE_PARAMS if k in entry))
            out.append(Asset(name, category, set_name, primitive=prim, params=params, mass=mass,
                             friction=friction, **looks))
        elif "mesh" in entry:
            mesh_path = os.path.join(root, str(entry["mesh"]))
            col = entry.get("collision")
            col_path = os.path.join(root, str(col)) if col else None
            out.append(Asset(name, category, set_name, mesh_path=mesh_path, collision_path=col_path,
                             scale=_scale3(entry.get("scale", 1.0), where), mass=mass,
                             friction=friction, **looks))
        else:
            raise AssetError(f"{where}: needs 'primitive:' or 'mesh:'")
    return out


_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}
APPEARANCES = ("keep", "jitter", "randomize")
UP_AXES = ("x", "y", "z", "-x", "-y", "-z")
# A mesh file named like these beside <stem>.<ext> is that mesh's collision shape, not an asset.
COLLISION_SUFFIXES = ("_vhacd", "_col", "_coll", "_collision", "_convex", "_hull")


def _appearance_fields(entry: dict, where: str) -> dict:
    """The ``color`` ([r, g, b] or [r, g, b, a] in [0, 1]) and ``appearance`` of a manifest
    entry or sidecar, checked."""
    out = {}
    if entry.get("color") is not None:
        c = entry["color"]
        if not (isinstance(c, (list, tuple)) and len(c) in (3, 4)
                and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in c)):
            raise AssetError(f"{where}: color must be [r, g, b] (or with alpha) in 0..1, got {c!r}")
        out["color"] = tuple(float(v) for v in c) + ((1.0,) if len(c) == 3 else ())
    if entry.get("up") is not None:
        if str(entry["up"]) not in UP_AXES:
            raise AssetError(f"{where}: up must be one of {', '.join(UP_AXES)}, got {entry['up']!r}")
        out["up"] = str(entry["up"])
    if entry.get("appearance") is not None:
        if entry["appearance"] not in APPEARANCES:
            raise AssetError(f"{where}: appearance must be one of {', '.join(APPEARANCES)}, got "
                             f"{entry['appearance']!r}")
        out["appearance"] = str(entry["appearance"])
    return out


def _keypoint_fields(entry: dict, where: str) -> dict:
    """The ``keypoints`` ({name: [x, y, z]}, in the mesh file's frame and units) and
    ``skeleton`` ([[name, name], ...]) of a manifest entry or sidecar, checked."""
    kp, sk = entry.get("keypoints"), entry.get("skeleton")
    if kp is None:
        if sk is not None:
            raise AssetError(f"{where}: skeleton needs keypoints: {{name: [x, y, z], ...}}")
        return {}
    if not isinstance(kp, dict) or not kp:
        raise AssetError(f"{where}: keypoints must be a mapping name: [x, y, z] (numbers, in the mesh file's "
                         f"units and frame), got {kp!r}")
    for k, v in kp.items():
        if not (isinstance(v, (list, tuple)) and len(v) == 3
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in v)):
            raise AssetError(f"{where}: keypoint '{k}' must be [x, y, z], three finite numbers in the mesh file's "
                             f"units and frame, got {v!r}")
    names = [str(k) for k in kp]
    pairs = []
    for pair in sk or []:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise AssetError(f"{where}: skeleton entries are pairs of keypoint names [a, b], got {pair!r}")
        unknown = [str(n) for n in pair if str(n) not in names]
        if unknown:
            raise AssetError(f"{where}: skeleton {list(pair)!r}: '{unknown[0]}' is not one of its keypoints "
                             f"({', '.join(names)})")
        a, b = str(pair[0]), str(pair[1])
        if a == b or (a, b) in pairs or (b, a) in pairs:
            raise AssetError(f"{where}: skeleton {list(pair)!r} joins a keypoint to itself or repeats an edge")
        pairs.append((a, b))
    return {"keypoints": tuple((str(k), tuple(float(x) for x in v)) for k, v in kp.items()), "skeleton": tuple(pairs)}


def _sidecar(path: str) -> dict:
    """The optional ``<mesh stem>.yaml`` beside a folder mesh: category, size (metres, the
    largest extent) or scale, mass, friction, color, appearance, up."""
    import yaml

    side = os.path.splitext(path)[0] + ".yaml"
    if not os.path.isfile(side):
        return {}
    try:
        with open(side, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AssetError(f"sidecar '{side}' cannot be read ({type(exc).__name__}); fix it or remove it") from None
    known = {"category", "size", "scale", "mass", "friction", "color", "appearance", "up", "keypoints", "skeleton"}
    if not isinstance(data, dict) or set(data) - known:
        bad = sorted(set(data) - known) if isinstance(data, dict) else data
        raise AssetError(f"sidecar '{side}': unknown key(s) {bad} (known: {', '.join(sorted(known))})")
    return data


def guess_unit_scale(extent: float) -> float:
    """Metres per mesh unit for a mesh whose largest extent is ``extent`` units: everyday
    objects are 1 cm to 2 m, so > 20 units reads as millimetres, > 2 as centimetres."""
    if extent > 20.0:
        return 0.001
    if extent > 2.0:
        return 0.01
    return 1.0


def load_folder(folder: str, units: str = "auto", on_error: str = "fail") -> List[Asset]:
    """A user's folder of meshes as an asset set. The class is the first sub-folder's name
    (``folder/mug/a.glb`` -> ``mug``) or, for files at the top, the file name without
    trailing digits (``bolt_02.stl`` -> ``bolt``). ``units``: auto | m | cm | mm | in.
    Broken, empty or unreadable files raise AssetError, or with on_error=skip are skipped
    with a warning. Concave meshes get a cached V-HACD decomposition for physics."""
    import re
    import warnings

    folder = os.path.abspath(folder)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs
                   if f.lower().endswith(MESH_EXTS))
    if not files:
        raise AssetError(f"asset folder '{folder}' holds no meshes ({', '.join(MESH_EXTS)})")
    stems = {os.path.splitext(f)[0].lower(): f for f in files}
    collision = {}  # visual mesh -> its collision mesh, recognised by name (duck_vhacd.obj beside duck.obj)
    for f in files:
        base = os.path.splitext(f)[0]
        for suffix in COLLISION_SUFFIXES:
            if base.lower().endswith(suffix) and base[: -len(suffix)].lower() in stems:
                collision[stems[base[: -len(suffix)].lower()]] = f
    files = [f for f in files if f not in collision.values()]
    set_name = os.path.basename(folder.rstrip(os.sep)) or "folder"
    out = []
    for path in files:
        rel = os.path.relpath(path, folder)
        parts = rel.split(os.sep)
        stem = os.path.splitext(parts[-1])[0]
        category = parts[0] if len(parts) > 1 else (re.sub(r"[_\-\s]*\d+$", "", stem) or stem)
        name = f"{set_name}/{os.path.splitext(rel)[0]}"
        probe = Asset(name, category, set_name, mesh_path=path)
        try:
            mesh = _load_trimesh(probe, path, "mesh")
        except AssetError as exc:
            if on_error == "skip":
                warnings.warn(f"skipping {exc}", stacklevel=2)
                continue
            raise
        side = _sidecar(path)
        where = f"sidecar '{os.path.splitext(path)[0]}.yaml'"
        if side.get("size") is not None:  # the object's real size beats any guess from the file's units
            size = side["size"]
            if not isinstance(size, (int, float)) or not size > 0:
                raise AssetError(f"{where}: size is the largest extent in metres, > 0, got {size!r}")
            scale = (float(size) / float(mesh.extents.max()),) * 3
        elif side.get("scale") is not None:
            scale = _scale3(side["scale"], where)
        elif units == "auto":
            scale = (guess_unit_scale(float(mesh.extents.max())),) * 3
        elif units in _UNITS:
            scale = (_UNITS[units],) * 3
        else:
            raise ConfigError(f"assets.units must be auto, m, cm, mm or in, got '{units}'")
        looks = {**_appearance_fields(side, where), **_keypoint_fields(side, where)}
        if "color" not in looks and declared_color(mesh) is not None:
            looks["color"] = declared_color(mesh)
        out.append(Asset(name, str(side.get("category", category)), set_name, mesh_path=path,
                         collision_path=collision.get(path), scale=scale, mass=float(side.get("mass", 0.1)),
                         friction=side.get("friction"), decompose=path not in collision, **looks))
    if not out:
        raise AssetError(f"asset folder '{folder}': every mesh was skipped as unreadable")
    return out


def _cache_dir() -> str:
    return os.environ.get("SIMGEN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "simgen")


def _cache_folder(kind: str) -> str:
    """``<cache>/<kind>``, created; a per-user temp folder when the cache cannot be written
    (read-only home on a cluster node): the files are derived data, rebuilt when missing."""
    import tempfile

    for root in (_cache_dir(), os.path.join(tempfile.gettempdir(), f"simgen-cache-{os.getuid()}")):
        folder = os.path.join(root, kind)
        try:
            os.makedirs(folder, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    raise AssetError(f"cannot write the mesh cache in {_cache_dir()} or the temp folder; set SIMGEN_CACHE_DIR "
                     f"to a writable folder")


def _publish(folder: str, name: str, data: bytes) -> str:
    """folder/name with ``data``, written atomically unless it exists (named by content)."""
    from .io import atomic_write_bytes

    out = os.path.join(folder, name)
    if not os.path.isfile(out):
        atomic_write_bytes(out, data)
    return out


def hull_file(points: np.ndarray) -> str:
    """The convex hull of (N,3) points (metres) as an OBJ in the cache, named by its content.

    pybullet keeps every vertex list passed to createCollisionShape(vertices=...) for the
    life of the client (~40 KB a shape, never freed by resetSimulation); a file-based mesh
    is freed with the world, so physics memory stays flat over millions of scenes."""
    import hashlib

    import trimesh

    hull = trimesh.convex.convex_hull(np.asarray(points, dtype=np.float64))
    text = "".join("v %.9g %.9g %.9g\n" % tuple(v) for v in hull.vertices)
    text += "".join("f %d %d %d\n" % tuple(f + 1) for f in hull.faces)
    data = text.encode()
    return _publish(_cache_folder("hulls"), hashlib.sha1(data).hexdigest() + ".obj", data)


CORNERS_VERSION = "corners-1"  # part of corners_file's cache key: change with its output


def corners_file(path: str) -> str:
    """The convex-parts OBJ at ``path`` in the form pybullet reads fastest, cached by its bytes.

    pybullet builds each part's convex hull from its faces' corners, three per triangle: a
    hull of V vertices has ~2V faces, so ~6V points went through Bullet's hull computation.
    Here every vertex line and every line between faces (``o``, ``g``, ``usemtl``: wherever
    pybullet's OBJ reader starts a part) is kept, and each run of faces becomes triangles
    that list the run's distinct corners once, in order of first use: each part gets the same
    point set with no repeats (tested against pybullet's own hulls). A teddy's 15 parts:
    1.96 -> 1.13 ms to create. Bullet may list a hull's vertices in another order, which
    changes tie-breaks between touching hulls: tabletop and shelf poses are bit-identical,
    and 61 of 1,000 objects in 100 dense bin scenes settled elsewhere, none invalid. Other
    formats (STL) are returned as they are; a face pybullet could not read, or one naming a
    vertex that does not exist, is an AssetError naming the file."""
    import hashlib

    if not path.lower().endswith(".obj"):  # pybullet reads STL too: handed over as it is
        return path
    data = open(path, "rb").read()
    digest = hashlib.sha1(data + CORNERS_VERSION.encode()).hexdigest()
    folder = _cache_folder("corners")
    out = os.path.join(folder, f"{digest}.obj")
    if os.path.isfile(out):
        return out
    lines, run, vertices, top = [], {}, 0, 0

    def flush():
        corners = list(run)  # dicts keep the order of first use
        corners += corners[-1:] * (-len(corners) % 3)
        lines.extend("f %d %d %d" % tuple(corners[i:i + 3]) for i in range(0, len(corners), 3))
        run.clear()

    def bad(why: str) -> AssetError:
        return AssetError(f"collision mesh {path}: {why} (fix: re-export it as an OBJ with one object per "
                          f"convex part)")

    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        token = line.split(maxsplit=1)[0] if line.strip() else ""
        if token == "f":
            for corner in line.split()[1:]:
                try:
                    k = int(corner.split("/")[0])
                except ValueError:
                    raise bad(f"line {n} is a face pybullet cannot read ({line.strip()[:40]!r})") from None
                k = k if k > 0 else vertices + 1 + k if k < 0 else 0  # negative: from the last vertex so far
                if k < 1:  # 0, or further back than the first vertex
                    raise bad(f"line {n} names a vertex that does not exist")
                run[k] = None
                top = max(top, k)
            continue
        if run:
            flush()
        vertices += token == "v"
        lines.append(line)
    if run:
        flush()
    if top > vertices:
        raise bad("a face names a vertex past the last one")
    return _publish(folder, f"{digest}.obj", ("\n".join(lines) + "\n").encode())


def decomposition_path(asset: Asset) -> Optional[str]:
    """Cached V-HACD convex decomposition (OBJ, mesh units) for a concave asset, made on
    first use; None for meshes that are convex enough (volume > 90% of their hull) or not
    closed. The cache key is the mesh file's bytes and the V-HACD settings."""
    import hashlib

    mesh = _load_trimesh(asset, asset.mesh_path, "mesh")
    if not mesh.is_watertight or mesh.volume <= 0 or mesh.volume > 0.9 * mesh.convex_hull.volume:
        return None
    digest = hashlib.sha1(open(asset.mesh_path, "rb").read() + DECOMPOSITION_VERSION.encode()).hexdigest()
    folder = _cache_folder("vhacd")
    out = os.path.join(folder, f"{digest}.obj")
    if os.path.isfile(out):
        return out
    import tempfile

    from .native import import_pybullet as _import_pybullet
    from .native import quiet_c_output

    p = _import_pybullet()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.obj")
        mesh.export(src)
        part = os.path.join(tmp, "out.obj")
        client = p.connect(p.DIRECT)
        try:
            with quiet_c_output():
                p.vhacd(src, part, os.path.join(tmp, "log.txt"), resolution=50000, concavity=0.0025,
                        maxNumVerticesPerCH=64, physicsClientId=client)
        finally:
            p.disconnect(physicsClientId=client)
        if not os.path.isfile(part) or os.path.getsize(part) == 0:
            return None
        out = _publish(folder, f"{digest}.obj", open(part, "rb").read())
    return out


class AssetLibrary:
    """The assets of the configured sets, with lazily loaded, cached meshes (per process)."""

    def __init__(self, assets: List[Asset]):
        names = [a.name for a in assets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise AssetError(f"asset names must be unique across sets; duplicated: {', '.join(dup)}")
        self.assets: Dict[str, Asset] = {a.name: a for a in assets}
        self.names: List[str] = names
        self.categories: List[str] = sorted({a.category for a in assets})

    @classmethod
    def from_sets(cls, specs, units: str = "auto", on_error: str = "fail", max_faces: int = 0) -> "AssetLibrary":
        assets: List[Asset] = []
        for spec in specs:
            assets.extend(load_manifest(str(spec), units=units, on_error=on_error))
        if max_faces:
            assets = [dataclasses.replace(a, max_faces=int(max_faces)) if a.mesh_path else a for a in assets]
        return cls(assets)

    @classmethod
    def from_config(cls, cfg, which: str = "objects") -> "AssetLibrary":
        lib = cls.from_sets(list(cfg[which].asset_sets), units=str(cfg.assets.units),
                            on_error=str(cfg.assets.on_error), max_faces=int(cfg.assets.get("max_faces", 0)))
        default = cfg.objects.get("appearance")  # for the assets whose manifest or sidecar says none
        if default:
            lib = cls([a if a.appearance else dataclasses.replace(a, appearance=str(default))
                       for a in lib.assets.values()])
        return lib

    def shared_shapes(self, other: "AssetLibrary") -> List[str]:
        """Names of ``other``'s assets whose shape (mesh file and scale, or primitive and its
        parameters) is also one of this library's: a distractor that looks like a class."""
        def shape(a: Asset):
            return (a.primitive, a.params, a.mesh_path, a.scale)

        mine = {shape(a) for a in self.assets.values()}
        return sorted(n for n, a in other.assets.items() if shape(a) in mine)

    def merged(self, other: "AssetLibrary") -> "AssetLibrary":
        """Both libraries' assets (a name in both must be the same asset); categories of self."""
        out = AssetLibrary([self.assets[n] for n in self.names] +
                           [other.assets[n] for n in other.names if n not in self.assets])
        clash = [n for n in other.names if n in self.assets and other.assets[n] != self.assets[n]]
        if clash:
            raise AssetError(f"asset name(s) {', '.join(clash)} mean different assets in objects and "
                             f"distractors; rename one")
        out.categories = self.categories
        return out

    def validate(self) -> None:
        """Load every mesh once (raises AssetError naming the first bad file)."""
        for name in self.names:
            self.visual_mesh(name)
            self.collision(name)

    def visual_mesh(self, name: str):
        """trimesh.Trimesh in metres (asset scale applied), model frame. Cached; do not mutate."""
        return _visual_mesh(self.assets[name])

    def is_textured(self, name: str) -> bool:
        return _is_textured(self.visual_mesh(name))

    def has_own_colors(self, name: str) -> bool:
        """Textured or vertex-coloured, and not ``appearance: randomize``: rendered with their
        own texture or colours, never given a random material."""
        if self.assets[name].appearance == "randomize":
            return False
        return self.is_textured(name) or _has_vertex_colors(self.visual_mesh(name))

    def upright(self, name: str) -> Optional[np.ndarray]:
        """(3,3) rotation that stands the asset as made (its ``up`` axis to world +z), or None
        when the asset does not say which axis is up."""
        up = self.assets[name].up
        if up is None:
            return None
        v = np.zeros(3)
        v["xyz".index(up[-1])] = -1.0 if up.startswith("-") else 1.0
        return _rotation_between(v, np.array([0.0, 0.0, 1.0]))

    def hull_points(self, name: str) -> np.ndarray:
        """(N,3) float64 metres, model frame: the corners of the asset's convex hull (at most
        MAX_HULL_VERTICES: what physics collides with, less the hull's sag)."""
        return _hull_points(self.assets[name])

    def stable_poses(self, name: str):
        """The asset's stable resting orientations on a plane and their probabilities:
        ((K,3,3) rotations model -> resting, (K,) probabilities summing to 1), or None for a
        shape with no preferred pose (sphere-like: no pose above STABLE_MIN_BEST)."""
        return _stable_poses(self.assets[name])

    def collision(self, name: str) -> Collision:
        return _collision(self.assets[name])

    def keypoints(self, name: str) -> Optional[Tuple[Tuple[str, ...], np.ndarray, Tuple[Tuple[int, int], ...]]]:
        """The asset's keypoints: (names, (K,3) float64 model-frame metres, skeleton as 0-based
        index pairs), or None when it has none (declared, or a primitive's built-in set)."""
        return _keypoints(self.assets[name])

    def keypoint_schema(self) -> Dict[str, Tuple[Tuple[str, ...], Tuple[Tuple[int, int], ...]]]:
        """category -> (keypoint names, skeleton) for the categories whose assets have
        keypoints. Every asset of such a category that has keypoints must have the same
        names in the same order (AssetError otherwise); one with none gets v=0 for all."""
        out: Dict[str, Tuple[Tuple[str, ...], Tuple[Tuple[int, int], ...]]] = {}
        owner: Dict[str, str] = {}
        for name in self.names:
            a = self.assets[name]
            if a.category not in self.categories:  # (a distractor of a merged library)
                continue
            kp = _keypoint_names(a)
            if kp is None:
                continue
            if a.category in out and out[a.category] != kp:
                what = "keypoints" if out[a.category][0] != kp[0] else "skeletons"
                raise AssetError(f"assets '{owner[a.category]}' and '{name}' of class '{a.category}' have different "
                                 f"{what} ({', '.join(out[a.category][0])} / {', '.join(kp[0])}); COCO keeps one "
                                 f"list and skeleton per class (fix: give them the same names in the same order, "
                                 f"and the same skeleton)")
            out.setdefault(a.category, kp)
            owner.setdefault(a.category, name)
        return out


def _is_textured(mesh) -> bool:
    vis = getattr(mesh, "visual", None)
    if vis is None or getattr(vis, "kind", None) != "texture":
        return False
    mat = getattr(vis, "material", None)
    img = getattr(mat, "image", None) or getattr(mat, "baseColorTexture", None)
    return img is not None and getattr(vis, "uv", None) is not None


def declared_color(mesh) -> Optional[Tuple[float, float, float, float]]:
    """The one colour an untextured mesh file declares, RGBA in [0, 1]: an MTL ``Kd`` (not
    trimesh's default grey), or vertex or face colours that are all the same; else None."""
    vis = getattr(mesh, "visual", None)
    kind = getattr(vis, "kind", None)
    if kind == "texture" and not _is_textured(mesh):
        c = np.asarray(getattr(vis.material, "main_color", [102, 102, 102, 255]), np.float64)
        return None if (c[:3] == 102).all() else tuple(float(v) for v in c / 255.0)
    if kind in ("vertex", "face"):
        c = np.asarray(vis.vertex_colors if kind == "vertex" else vis.face_colors)
        if len(c) and (c == c[0]).all():
            return tuple(float(v) for v in c[0] / 255.0)
    return None


def _has_vertex_colors(mesh) -> bool:
    vis = getattr(mesh, "visual", None)
    if vis is None or getattr(vis, "kind", None) != "vertex":
        return False
    c = np.asarray(vis.vertex_colors)
    return len(c) > 0 and not (c == c[0]).all()


def _check_file(asset: Asset, path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise AssetError(f"asset '{asset.name}': {what} file '{path}' is missing (fix: correct the "
                         f"path in its manifest, or remove the asset / its set from objects.asset_sets)")


def _texture_resolver(path: str):
    """Where a mesh's material files and textures are looked up: beside it, and wherever its
    MTL points (pybullet_data's torus names ``../cube.png``; trimesh >= 5 refuses paths that
    leave the mesh's folder unless told, and then loads the mesh without its texture)."""
    from trimesh.resolvers import FilePathResolver

    folder = os.path.dirname(os.path.abspath(path))
    try:
        return FilePathResolver(folder, allow_anywhere=True)
    except TypeError:  # a trimesh without the restriction
        return FilePathResolver(folder)


def _missing_textures(path: str) -> List[str]:
    """Texture files an OBJ's MTL names (map_Kd) that do not exist."""
    if not path.lower().endswith(".obj"):
        return []
    folder, out = os.path.dirname(os.path.abspath(path)), []
    try:
        mtls = [ln.split(None, 1)[1].strip() for ln in open(path, errors="replace") if ln.startswith("mtllib ")]
        for mtl in mtls:
            mp = os.path.join(folder, mtl)
            for ln in open(mp, errors="replace") if os.path.isfile(mp) else ():
                if ln.strip().lower().startswith("map_kd "):
                    tex = ln.strip().split()[-1]
                    if not os.path.isfile(os.path.join(os.path.dirname(mp), tex)):
                        out.append(tex)
    except (OSError, IndexError):
        return out
    return out


def _load_trimesh(asset: Asset, path: str, what: str):
    import trimesh

    _check_file(asset, path, what)
    try:
        loaded = trimesh.load(path, resolver=_texture_resolver(path))
    except Exception as exc:  # trimesh raises many types for bad files
        raise AssetError(f"asset '{asset.name}': {what} file '{path}' cannot be read as a mesh "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                         f"replace the file or remove the asset") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)] if loaded.geometry else []
        loaded = trimesh.util.concatenate(geoms) if geoms else None
    if (not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0
            or not np.all(np.isfinite(loaded.vertices))):
        raise AssetError(f"asset '{asset.name}': {what} file '{path}' is empty or corrupt (no "
                         f"valid triangles, or vertices that are NaN or infinite); replace the file or "
                         f"remove the asset")
    v = np.asarray(loaded.vertices, np.float64)
    v = v[:: max(1, len(v) // 20000)] - v.mean(axis=0)  # (a sample is enough to see a volume)
    sv = np.linalg.svd(v, compute_uv=False) if len(v) >= 4 else np.zeros(3)
    if len(sv) < 3 or sv[2] <= 1e-9 * max(sv[0], 1e-300):
        raise AssetError(f"asset '{asset.name}': {what} file '{path}' is flat (every vertex lies in one plane "
                         f"or on a line), so it has no volume to collide or rest with; give the mesh a "
                         f"thickness, or remove the asset")
    return loaded


@lru_cache(maxsize=None)
def _visual_mesh(asset: Asset):
    import trimesh

    if asset.primitive is not None:
        p = dict(asset.params)
        try:
            if asset.primitive == "box":
                m = trimesh.creation.box(extents=p.get("extents", [0.1, 0.1, 0.1]))
            elif asset.primitive == "sphere":
                m = trimesh.creation.icosphere(subdivisions=3, radius=float(p.get("radius", 0.05)))
            elif asset.primitive == "cylinder":
                m = trimesh.creation.cylinder(radius=float(p.get("radius", 0.04)),
                                              height=float(p.get("height", 0.1)), sections=32)
            elif asset.primitive == "cone":
                m = trimesh.creation.cone(radius=float(p.get("radius", 0.04)),
                                          height=float(p.get("height", 0.1)), sections=32)
                m.apply_translation([0, 0, -m.center_mass[2]])  # centre of mass at the origin
            elif asset.primitive == "capsule":  # height: the distance between the two sphere centres
                m = trimesh.creation.capsule(height=float(p.get("height", 0.08)),
                                             radius=float(p.get("radius", 0.03)), count=[24, 24])
                m.apply_translation(-m.bounds.mean(axis=0))
            elif asset.primitive == "torus":
                m = trimesh.creation.torus(major_radius=float(p.get("major_radius", 0.04)),
                                           minor_radius=float(p.get("minor_radius", 0.012)),
                                           major_sections=48, minor_sections=16)
            elif asset.primitive == "prism":  # a regular n-sided prism
                m = trimesh.creation.cylinder(radius=float(p.get("radius", 0.03)), height=float(p.get("height", 0.08)),
                                              sections=int(p.get("sides", 6)))
            else:  # rock: the convex hull of points on a sphere pushed in and out (seeded: the same shape)
                rng = np.random.default_rng(int(p.get("seed", 0)))
                d = rng.normal(size=(40, 3))
                d *= (float(p.get("radius", 0.04)) * rng.uniform(0.55, 1.0, (40, 1))
                      / np.linalg.norm(d, axis=1, keepdims=True))
                m = trimesh.Trimesh(d).convex_hull
                m.apply_translation(-m.bounds.mean(axis=0))
        except Exception as exc:
            raise AssetError(f"asset '{asset.name}': bad primitive parameters {p}: {exc}") from None
        return m
    m = _load_trimesh(asset, asset.mesh_path, "mesh").copy()
    missing = [] if _is_textured(m) else _missing_textures(asset.mesh_path)
    if missing:
        log.warning("asset '%s': its material names the texture %s, which does not exist beside %s; it is "
                    "rendered without it (fix: put the image where the .mtl says)", asset.name,
                    ", ".join(missing[:3]), asset.mesh_path)
    if asset.max_faces and len(m.faces) > asset.max_faces:
        if _is_textured(m) or _has_vertex_colors(m):  # decimation would drop them: appearance matters more
            log.warning("asset '%s' has %s faces (assets.max_faces=%s) and is kept as it is: simplifying it "
                        "would lose its texture or vertex colours (each face costs ~3 KB of memory and render "
                        "time; fix: simplify the file yourself)", asset.name, f"{len(m.faces):,}",
                        f"{asset.max_faces:,}")
        else:
            m = _simplified(asset, m)
    if asset.scale != (1.0, 1.0, 1.0):
        m.apply_transform(np.diag([*asset.scale, 1.0]))
    m.apply_translation(-_mesh_offset(asset))
    return m


def _simplified(asset: Asset, mesh):
    """``mesh`` (more than ``asset.max_faces`` faces) decimated to about that many by quadric
    error (fast-simplification, through trimesh), with a warning saying so. Rendering and
    physics both use it, so masks and boxes describe the pixels drawn exactly. The
    decimation does not carry UVs or vertex colours, so only plain meshes come here
    (_visual_mesh keeps textured ones, with a warning). Done once per process and asset
    (~4 s for 1.3M faces)."""
    import trimesh

    try:
        out = mesh.simplify_quadric_decimation(face_count=int(asset.max_faces))
    except Exception as exc:  # noqa: BLE001 - the decimation library raises many types
        raise AssetError(f"asset '{asset.name}': {len(mesh.faces):,} faces, more than assets.max_faces="
                         f"{asset.max_faces:,}, and simplifying it failed ({type(exc).__name__}); fix: "
                         f"simplify the file yourself, or assets.max_faces=0 to use it as it is") from None
    if not isinstance(out, trimesh.Trimesh) or len(out.faces) == 0:
        raise AssetError(f"asset '{asset.name}': simplifying its {len(mesh.faces):,} faces left none; fix: "
                         f"assets.max_faces=0 to use it as it is")
    log.warning("asset '%s' has %s faces (assets.max_faces=%s): rendered and simulated simplified to %s faces "
                "(fix: assets.max_faces=0 keeps every face, at ~3 KB of memory and more render time per face)",
                asset.name, f"{len(mesh.faces):,}", f"{asset.max_faces:,}", f"{len(out.faces):,}")
    return out


@lru_cache(maxsize=None)
def _mesh_offset(asset: Asset) -> np.ndarray:
    """Centre of the scaled mesh file's bounding box (metres): it becomes the model origin."""
    if asset.mesh_path is None:
        return np.zeros(3)
    m = _load_trimesh(asset, asset.mesh_path, "mesh")
    return m.bounds.mean(axis=0) * np.asarray(asset.scale)


@lru_cache(maxsize=None)
def _collision(asset: Asset) -> Collision:
    if asset.primitive == "box":
        ext = dict(asset.params).get("extents", [0.1, 0.1, 0.1])
        return Collision("box", half_extents=tuple(float(e) / 2 for e in ext))
    if asset.primitive == "sphere":  # the hull file serves non-uniform scales
        return Collision("sphere", radius=float(dict(asset.params).get("radius", 0.05)),
                         path=corners_file(hull_file(_farthest_points(
                             np.asarray(_visual_mesh(asset).vertices, dtype=np.float64), MAX_HULL_VERTICES))))
    if asset.collision_path:
        _load_trimesh(asset, asset.collision_path, "collision")  # validate once
        return Collision("file", path=corners_file(asset.collision_path), mesh_scale=asset.scale,
                         offset=tuple(-_mesh_offset(asset)))
    if asset.decompose and asset.mesh_path:
        parts = decomposition_path(asset)
        if parts is not None:
            return Collision("file", path=corners_file(parts), mesh_scale=asset.scale,
                             offset=tuple(-_mesh_offset(asset)))
    hull = _visual_mesh(asset).convex_hull
    return Collision("file", path=corners_file(hull_file(_farthest_points(np.asarray(hull.vertices, dtype=np.float64),
                                                                          MAX_HULL_VERTICES))))


MAX_HULL_VERTICES = 96  # collision cost grows with hull size; 96 keeps sag to ~1% of size
STABLE_POSES_VERSION = "stable-1"  # part of the cache key of _stable_poses: change with its method
STABLE_MIN_PROB = 0.02  # resting poses less likely than this (edges, near-unstable faces) are dropped
STABLE_MIN_BEST = 0.05  # below this for the likeliest pose the shape has no preferred pose (a ball)


_BOX_SIGNS = [(i, j, k) for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)]  # Objectron's corner order
_BUILTIN_KEYPOINTS = {  # primitive -> (names, skeleton index pairs)
    "box": (tuple("".join(("-" if v < 0 else "+") + ax for v, ax in zip(sg, "xyz")) for sg in _BOX_SIGNS),
            tuple((a, b) for a in range(8) for b in range(a + 1, 8)
                  if sum(x != y for x, y in zip(_BOX_SIGNS[a], _BOX_SIGNS[b])) == 1)),
    **{p: (("tip", "base") if p == "cone" else ("top", "bottom"), ((0, 1),))
       for p in ("cylinder", "prism", "cone", "capsule")},
}


def builtin_keypoints(asset: Asset):
    """A primitive's own keypoints in its model frame: a box's 8 corners (Objectron's order,
    as simgen.labels.box3d) joined by its 12 edges; the top and bottom of a cylinder, prism,
    cone (its tip and the centre of its base) and capsule (its tips); none for round shapes.
    ((names, (K,3) metres, skeleton index pairs) or None.)"""
    if asset.primitive not in _BUILTIN_KEYPOINTS:
        return None
    names, edges = _BUILTIN_KEYPOINTS[asset.primitive]
    lo, hi = _visual_mesh(asset).bounds
    if asset.primitive == "box":
        pts = np.array([[(hi if v > 0 else lo)[d] for d, v in enumerate(sg)] for sg in _BOX_SIGNS])
    else:
        pts = np.array([[0.0, 0.0, hi[2]], [0.0, 0.0, lo[2]]])
    return names, pts, edges


def _keypoint_names(asset: Asset):
    """(names, skeleton index pairs) of the asset's keypoints without loading a mesh, or None."""
    if asset.keypoints:
        names = tuple(n for n, _ in asset.keypoints)
        return names, tuple((names.index(a), names.index(b)) for a, b in asset.skeleton)
    return _BUILTIN_KEYPOINTS.get(asset.primitive)


@lru_cache(maxsize=None)
def _keypoints(asset: Asset):
    if not asset.keypoints:
        return builtin_keypoints(asset)
    names, skeleton = _keypoint_names(asset)
    pts = np.array([p for _, p in asset.keypoints], np.float64)
    if asset.primitive is None:  # the mesh file's frame and units -> the model frame in metres
        pts = pts * np.asarray(asset.scale) - _mesh_offset(asset)
    return names, pts, skeleton


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3,3) rotation taking unit vector ``a`` to unit vector ``b`` (a half turn about x or y
    when they are opposite)."""
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -0.999999:
        axis = np.array([1.0, 0, 0]) if abs(a[0]) < 0.9 else np.array([0, 1.0, 0])
        axis = np.cross(a, axis)
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


@lru_cache(maxsize=None)
def _hull_points(asset: Asset) -> np.ndarray:
    return _farthest_points(np.asarray(_visual_mesh(asset).convex_hull.vertices, np.float64), MAX_HULL_VERTICES)


@lru_cache(maxsize=None)
def _stable_poses(asset: Asset):
    """See AssetLibrary.stable_poses. trimesh's compute_stable_poses on the collision-sized
    hull (at most MAX_HULL_VERTICES corners: ~0.1-0.5 s; the full mesh of a ball takes 10 s),
    deterministic (no sampling noise), cached on disk by the hull's bytes."""
    import hashlib

    import trimesh

    mesh = _visual_mesh(asset)
    hull = trimesh.Trimesh(_hull_points(asset)).convex_hull
    com = np.asarray(mesh.center_mass if mesh.is_watertight else hull.center_mass, np.float64)
    key = hashlib.sha1(STABLE_POSES_VERSION.encode() + hull.vertices.tobytes() + com.tobytes()).hexdigest()
    path = os.path.join(_cache_folder("stable_poses"), key + ".npz")
    try:
        with np.load(path) as f:
            rot, prob = f["rotations"], f["probabilities"]
    except (OSError, KeyError, ValueError):
        transforms, prob = trimesh.poses.compute_stable_poses(hull, center_mass=com, sigma=0.0, n_samples=1,
                                                              threshold=0.0)
        rot = np.asarray(transforms, np.float64).reshape(-1, 4, 4)[:, :3, :3]
        prob = np.asarray(prob, np.float64)
        import io

        buf = io.BytesIO()
        np.savez(buf, rotations=rot, probabilities=prob)
        _publish(_cache_folder("stable_poses"), key + ".npz", buf.getvalue())
    keep = prob >= STABLE_MIN_PROB
    if not keep.any() or prob.max() < STABLE_MIN_BEST:
        return None
    return rot[keep], prob[keep] / prob[keep].sum()


def _farthest_points(points: np.ndarray, k: int) -> np.ndarray:
    """Deterministic farthest-point subset of (N,3) points (all of them when N <= k)."""
    if len(points) <= k:
        return points
    chosen = [int(np.argmax(np.linalg.norm(points - points.mean(axis=0), axis=1)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(k - 1):
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, np.linalg.norm(points - points[j], axis=1))
    return points[sorted(chosen)]
