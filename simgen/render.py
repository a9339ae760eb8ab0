"""Offscreen rendering with pyrender over EGL: RGB, metric depth, an exact instance-id map,
and each labeled object's unoccluded mask. One renderer (one GL context) per process.

OpenCV camera data from the SceneSpec is converted to pyrender's OpenGL frame only here
(:func:`simgen.geometry.cv_pose_to_gl`, and the half-pixel principal point shift below).
"""
from __future__ import annotations

import logging
import os
import sys as _sys
import time
import zlib
from contextlib import contextmanager
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import numpy as np

from .assets import AssetLibrary
from .config import SHADOW_FILTERS
from .errors import RenderBackendError
from .geometry import cv_pose_to_gl
from .spec import Frame, SceneSpec

log = logging.getLogger("simgen.render")
MAX_LIGHTS_PER_TYPE = 4
_FLAT_PRIMITIVES = ("box", "cylinder", "cone", "prism")  # faceted: face normals (a prism is polygonal)
_logged_renderer = False
_PARKED = np.diag([1e-9, 1e-9, 1e-9, 1.0])

EGL_HELP = ("install Mesa's EGL and software GL (Debian/Ubuntu: apt-get install libegl1 "
            "libegl-mesa0 libgl1-mesa-dri libgbm1) or an NVIDIA driver with EGL, and leave "
            "PYOPENGL_PLATFORM unset or =egl")


@contextmanager
def gl_platform():
    """PyOpenGL reads PYOPENGL_PLATFORM when OpenGL is first imported, and pyrender when it
    makes an OffscreenRenderer: inside this block it is ``egl`` (headless on any Linux box)
    unless the user chose one, and afterwards the process environment is as it was (the
    CLI sets it for good, so that worker processes inherit it)."""
    if "PYOPENGL_PLATFORM" in os.environ:
        yield
        return
    os.environ["PYOPENGL_PLATFORM"] = "egl"
    try:
        yield
    finally:
        os.environ.pop("PYOPENGL_PLATFORM", None)


def _pyrender():
    with gl_platform():
        import pyrender
        import pyrender.light
        import pyrender.renderer
        import pyrender.shader_program
        from OpenGL import GL  # noqa: F401
    return pyrender


@lru_cache(maxsize=None)
def _shader_dir(shadow_filter: str) -> Optional[str]:
    """pyrender's shader folder, or for ``bilinear`` a derived copy whose shadow lookup is one
    2x2 bilinear depth comparison (4 texture reads) instead of pyrender's 3x3 grid of them
    (36 reads per light and pixel, the largest cost of a shadowed frame on llvmpipe). Made at
    run time from the installed pyrender's own files, in a per-process temporary folder."""
    import re
    import tempfile

    pyrender = _pyrender()
    stock = os.path.join(os.path.dirname(pyrender.__file__), "shaders")
    if shadow_filter == "pcf3x3":
        return stock
    src = open(os.path.join(stock, "mesh.frag"), encoding="utf-8").read()
    pcf = re.compile(r"float PCF\(sampler2D depths, vec2 size, vec2 uv, float compare\)\s*\{.*?\n\}", re.S)
    if not pcf.search(src):  # another pyrender: keep its shaders rather than guess
        log.warning("pyrender's mesh.frag has no PCF() to replace; render.shadow_filter=bilinear ignored")
        return stock
    body = ("float PCF(sampler2D depths, vec2 size, vec2 uv, float compare){\n"
            "    return texture2DShadowLerp(depths, size, uv, compare);\n}")
    out = tempfile.mkdtemp(prefix="simgen-shaders-")
    for name in os.listdir(stock):
        text = open(os.path.join(stock, name), encoding="utf-8").read()
        if name == "mesh.frag":
            text = pcf.sub(lambda _: body, text)
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(text)
    return out


def encode_id(i: int) -> List[int]:
    """Instance id -> the RGB8 colour drawn for it in the segmentation pass."""
    return [i & 255, (i >> 8) & 255, (i >> 16) & 255]


def decode_ids(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 segmentation colours -> (H,W) int32 ids."""
    c = rgb.astype(np.int32)
    return c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)


def _keyed_node_class(pyrender):
    """A pyrender Node whose hash is a key we choose instead of its memory address.

    pyrender keeps nodes in sets and iterates them to order lights in shader arrays (and
    meshes before a stable depth sort). With address hashes that order, and so the float
    summation order of the lighting, differs between processes: image bytes would depend
    on the worker. Small distinct integer keys make set iteration order reproducible for
    the same history of additions and removals (see _set_lights for the light sets).
    """

    class KeyedNode(pyrender.Node):
        def __init__(self, key: int, **kwargs):
            super().__init__(**kwargs)
            self._key = int(key)

        def __hash__(self):
            return self._key

    return KeyedNode


def _split_bits(bits: np.ndarray, ids: List[int], frame: Tuple[int, int, int, int]):
    """Per-object masks out of an OR pass: bit k of the (H,W) uint32 ``bits`` is ids[k]'s
    coverage.

    ``frame`` = (left, top, width, height): where the image lies on the canvas. Returns
    id -> (in-frame (height, width) bool mask, (tight crop on the canvas, x0, y0) in image
    pixel coordinates). Work per object is its box, not the canvas: the rows and columns
    are OR-reduced once, which gives every object's box at once. The in-frame masks are
    Fortran-ordered, the layout pycocotools encodes without a copy.
    """
    l, t, w, h = frame
    rows_or = np.bitwise_or.reduce(bits, axis=1)
    cols_or = np.bitwise_or.reduce(bits, axis=0)
    out = {}
    for k, i in enumerate(ids):
        bit = np.uint32(1 << k)
        rows, cols = np.flatnonzero(rows_or & bit), np.flatnonzero(cols_or & bit)
        inside = np.zeros((w, h), dtype=bool).T  # Fortran-ordered (h, w)
        if not len(rows):
            out[i] = (inside, (np.zeros((0, 0), bool), 0, 0))
            continue
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        crop = (bits[r0:r1, c0:c1] & bit) != 0
        # the crop's part inside the frame, in canvas coordinates
        y0, y1, x0, x1 = max(r0, t), min(r1, t + h), max(c0, l), min(c1, l + w)
        if y0 < y1 and x0 < x1:
            inside[y0 - t:y1 - t, x0 - l:x1 - l] = crop[y0 - r0:y1 - r0, x0 - c0:x1 - c0]
        out[i] = (inside, (crop, c0 - l, r0 - t))
    return out


@lru_cache(maxsize=None)
def _box_corners_cached(library: AssetLibrary, asset: str) -> np.ndarray:
    import trimesh

    return trimesh.bounds.corners(library.visual_mesh(asset).bounds)


MARGIN_SLACK = 0.01  # pixels: see _canvas_margins
# simgen's own shaders of the normals pass (PyrenderRenderer._normals), shipped in the package
NORMALS_SHADERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shaders", "normals")
# pyrender's main framebuffer set (Renderer._configure_main_framebuffer): the frame's, or
# the unoccluded canvas's while the other is parked
_MAIN_FB_FIELDS = ("_main_fb", "_main_cb", "_main_db", "_main_fb_ms", "_main_cb_ms", "_main_db_ms", "_main_fb_dims")


def _box_corners(library: AssetLibrary, asset: str) -> np.ndarray:
    """(8, 3) corners of the asset's model-frame bounding box, metres at scale 1."""
    return _box_corners_cached(library, asset)


def _composite(rgba: np.ndarray, scene: SceneSpec) -> np.ndarray:
    """Put the background behind the render. The RGBA render is premultiplied (cleared to
    transparent, MSAA-resolved), so antialiased edges blend with the background, not black."""
    import cv2

    from .textures import background_image

    h, w = rgba.shape[:2]
    out = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)  # drops alpha 60x faster than a numpy copy
    rows = np.flatnonzero(rgba[..., 3].min(axis=1) < 255)
    if not rows.size:  # drawn everywhere (a floor filling the frame)
        return out
    # Only the band of rows where the background shows is blended (opaque pixels would come
    # out unchanged): usually the sky above a floor's horizon.
    band = slice(int(rows[0]), int(rows[-1]) + 1)
    if scene.background is not None:
        bg = background_image(scene.background, w, h)[band].astype(np.float32)
    else:
        bg = np.broadcast_to(np.asarray(scene.background_color, np.float32) * 255.0, (band.stop - band.start, w, 3))
    alpha = rgba[band, :, 3:4].astype(np.float32) / 255.0
    out[band] = np.clip(np.rint(rgba[band, :, :3].astype(np.float32) + (1.0 - alpha) * bg), 0, 255).astype(np.uint8)
    return out


def _bounding_sphere(scene: SceneSpec, library: AssetLibrary):
    """Centre and radius (metres) of a sphere around every object of the scene, or None."""
    if not scene.objects:
        return None
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for o in scene.objects:
        r = float(np.linalg.norm(library.visual_mesh(o.asset).vertices, axis=1).max()) * float(np.max(o.scale))
        p = np.asarray(o.pose)[:3, 3]
        lo, hi = np.minimum(lo, p - r), np.maximum(hi, p + r)
    for st in scene.statics:
        p, r = np.asarray(st.pose)[:3, 3], float(np.linalg.norm(st.extents)) / 2
        lo, hi = np.minimum(lo, p - r), np.maximum(hi, p + r)
    return (lo + hi) / 2.0, max(float(np.linalg.norm(hi - lo)) / 2.0 * 1.05, 0.05)


_SHARED: Optional["PyrenderRenderer"] = None


def _close_shared() -> None:
    global _SHARED
    if _SHARED is not None:
        _SHARED.close()
        _SHARED = None


import atexit  # noqa: E402

atexit.register(_close_shared)  # while modules are still alive, not at interpreter teardown


def shared_renderer(width: int, height: int, shadows: bool = True, shadow_map_size: int = 1024,
                    amodal_canvas: float = 1.0, shadow_filter: str = "bilinear") -> "PyrenderRenderer":
    """The process's one renderer (one GL context), created on first use and reused by every
    pipeline of the process: OpenGL objects of a closed context must never outlive it, and
    pyrender objects free theirs whenever Python collects them."""
    global _SHARED
    if _SHARED is None or _SHARED._r is None:
        _SHARED = PyrenderRenderer(width, height, shadows, shadow_map_size, amodal_canvas, shadow_filter)
    r = _SHARED
    r.shadows, r.amodal_canvas = bool(shadows), float(amodal_canvas)
    r.set_shadow_map_size(int(shadow_map_size))
    r.set_shadow_filter(shadow_filter)
    return r


_UNIFORM_LOCATIONS: Dict[Tuple[int, str], int] = {}  # (GL program id, uniform name) -> location


def _cache_uniform_locations() -> None:
    """pyrender asks GL for a uniform's location each time it sets one: ~550 PyOpenGL calls an
    image. A linked program's locations never change, so remember them per (program, name).
    GL reuses program ids (a new context numbers them from the start again), so the table is
    emptied wherever programs are deleted: set_shadow_filter, which every new renderer calls."""
    sp = _pyrender().shader_program
    if getattr(sp.glGetUniformLocation, "simgen_cached", False):
        return
    lookup = sp.glGetUniformLocation

    def cached(program, name):
        key = (program, name)
        loc = _UNIFORM_LOCATIONS.get(key)
        if loc is None:
            loc = _UNIFORM_LOCATIONS[key] = lookup(program, name)
        return loc

    cached.simgen_cached = True
    sp.glGetUniformLocation = cached


class PyrenderRenderer:
    """Caches one pyrender mesh per (asset, slot) and moves nodes with set_pose."""

    def __init__(self, width: int, height: int, shadows: bool = True, shadow_map_size: int = 1024,
                 amodal_canvas: float = 1.0, shadow_filter: str = "bilinear"):
        global _logged_renderer
        try:
            pyrender = _pyrender()
            from OpenGL import GL

            # pyrender reads its shadow map size from module constants (2048 by default).
            pyrender.light.SHADOW_TEX_SZ = pyrender.renderer.SHADOW_TEX_SZ = int(shadow_map_size)

            self._pr = pyrender
            with gl_platform():
                self._r = pyrender.OffscreenRenderer(int(width), int(height))
            self.gl_renderer = GL.glGetString(GL.GL_RENDERER).decode(errors="replace")
            self.gl_version = GL.glGetString(GL.GL_VERSION).decode(errors="replace")
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RenderBackendError(
                f"cannot create an offscreen OpenGL context with "
                f"PYOPENGL_PLATFORM={os.environ.get('PYOPENGL_PLATFORM', 'egl')} ({type(exc).__name__}: "
                f"{msg[:160]}); fix: {EGL_HELP}") from None
        if not _logged_renderer:
            log.info("GL_RENDERER: %s | GL_VERSION: %s", self.gl_renderer, self.gl_version)
            _logged_renderer = True
        self.shadows = shadows
        self.amodal_canvas = float(amodal_canvas)  # extra canvas per side, in frame sizes
        self.last_timings: Dict[str, float] = {}
        self._or_mode = False
        self._casters = None  # (centre (3,), radius) of the labeled objects: shadow frusta
        self._light_cams: Dict[object, tuple] = {}
        # pyrender's framebuffer sets, the frame's and the unoccluded canvas's: one is parked
        self._parked_fbs, self._on_canvas, self._frame_dims = None, False, (width, height)
        self._install_or_mode_hook()
        _cache_uniform_locations()
        self._Node = _keyed_node_class(pyrender)
        self._scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 1.0], ambient_light=[0.2] * 3)
        self._pool: Dict[str, List[Tuple[object, object, Optional[object]]]] = {}
        self._floor_mat = None
        self._floor_node = None
        self._statics: Dict[tuple, Tuple[object, object, object]] = {}
        self._floor_size = None
        self._cam = pyrender.IntrinsicsCamera(fx=500, fy=500, cx=320, cy=240)
        self._cam_node = self._scene.add(self._cam, pose=np.eye(4))
        self._lights: Dict[str, List[object]] = {"directional": [], "point": [], "spot": []}
        self._light_nodes: List[object] = []
        self._unshadowed: set = set()  # light nodes whose shadows are off
        self._normal_programs = None  # the normals pass's program cache (NORMALS_SHADERS), made on first use
        self._colour_only = False  # a SEG pass whose depth is not needed (the normals pass): _read_seg skips it
        self.set_shadow_filter(shadow_filter)

    def set_shadow_filter(self, shadow_filter: str) -> None:
        """Shadow edge filter for the following frames: ``bilinear`` (4 depth reads per light and
        pixel) or ``pcf3x3`` (pyrender's own, 36 reads: softer edges, about 3x the RGB cost)."""
        if shadow_filter not in SHADOW_FILTERS:
            raise ValueError(f"shadow_filter must be one of {SHADOW_FILTERS}, got {shadow_filter!r}")
        if getattr(self, "_shadow_filter", None) == shadow_filter:
            return
        from pyrender.shader_program import ShaderProgramCache

        inner = self._r._renderer
        inner._program_cache.clear()
        _UNIFORM_LOCATIONS.clear()
        self._dummy_slots: Dict[int, tuple] = {}  # program id -> light counts its absent-light slots are set for
        inner._program_cache = ShaderProgramCache(shader_dir=_shader_dir(shadow_filter))
        self._shadow_filter = shadow_filter

    def set_shadow_map_size(self, size: int) -> None:
        """Shadow maps of this size from now on (lights made with another size are remade)."""
        import pyrender.light
        import pyrender.renderer

        if pyrender.renderer.SHADOW_TEX_SZ != size:
            pyrender.light.SHADOW_TEX_SZ = pyrender.renderer.SHADOW_TEX_SZ = int(size)
            for n in self._light_nodes:
                self._scene.remove_node(n)
            self._light_nodes = []
            self._lights = {"directional": [], "point": [], "spot": []}

    def _install_or_mode_hook(self) -> None:
        """Hooks into pyrender's (pinned) renderer: SEG passes drawn single-sample, a SEG pass
        that ORs colours with depth testing off (see _unoccluded), shadow maps drawn without
        the floor and fitted to the objects, and the shadow samplers of absent lights pinned
        to one dummy map (a stable llvmpipe shader variant key)."""
        from OpenGL import GL

        inner = self._r._renderer
        configure = inner._configure_forward_pass_viewport
        seg_flag = self._pr.RenderFlags.SEG

        def configure_forward_pass(flags):
            configure(flags)
            if not flags & seg_flag:
                # the dummy shadow map (see bind_lighting_fixed) on its unit, every frame: bound
                # only once, something in pyrender's frame unbinds it now and then (measured)
                GL.glActiveTexture(GL.GL_TEXTURE0 + self._dummy_unit)
                self._dummy_shadow._bind()
                GL.glActiveTexture(GL.GL_TEXTURE0)
            else:
                # pyrender draws every pass into its 4x multisample framebuffer and resolves it
                # into a single-sample one. A SEG pass has multisampling off, so its 4 samples
                # are copies of the pixel centre's: drawing it straight into the single-sample
                # framebuffer gives the same ids and depth with a quarter of the memory
                # traffic and no resolve (instance+depth pass 19 -> 12 ms on llvmpipe).
                GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, inner._main_fb)
            if self._or_mode:
                GL.glDepthFunc(GL.GL_ALWAYS)
                GL.glEnable(GL.GL_COLOR_LOGIC_OP)
                GL.glLogicOp(GL.GL_OR)
            else:
                GL.glDisable(GL.GL_COLOR_LOGIC_OP)

        inner._configure_forward_pass_viewport = configure_forward_pass

        configure_main = inner._configure_main_framebuffer
        fields = _MAIN_FB_FIELDS
        none = (None,) * 6 + ((None, None),)

        def park(to_canvas: bool) -> None:
            """Swap pyrender's framebuffer set for the parked one (frame <-> canvas)."""
            current = tuple(getattr(inner, f) for f in fields)
            for f, v in zip(fields, self._parked_fbs or none):
                setattr(inner, f, v)
            self._parked_fbs = current if current[0] is not None else None
            self._on_canvas = to_canvas

        def configure_main_framebuffer():
            # pyrender rebuilds its framebuffers whenever the viewport size changes: for the
            # unoccluded pass's canvas and back, every image that needs one (~1.3 ms). The
            # canvas gets a single-sample framebuffer of its own instead, kept between images
            # and grown in 64-pixel steps (at most 3x the frame a side: ~22 MB at 640x480);
            # the pass draws into its lower-left corner (see read_main_framebuffer).
            vw, vh = inner.viewport_width, inner.viewport_height
            if not (self._or_mode and (vw, vh) != self._frame_dims):
                if self._on_canvas:
                    park(False)
                self._frame_dims = (vw, vh)
                return configure_main()
            if not self._on_canvas:
                park(True)
            w0, h0 = inner._main_fb_dims if inner._main_fb is not None else (0, 0)
            if w0 >= vw and h0 >= vh:
                return
            inner._delete_main_framebuffer()
            w, h = -(-max(vw, w0) // 64) * 64, -(-max(vh, h0) // 64) * 64
            cb, db = GL.glGenRenderbuffers(2)
            for rb, fmt in ((cb, GL.GL_RGBA), (db, GL.GL_DEPTH_COMPONENT24)):
                GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rb)
                GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, fmt, w, h)
            fb = GL.glGenFramebuffers(1)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, fb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, cb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, db)
            # single-sample only (the pass is): its names stand in for the multisample ones
            for f, v in zip(fields, (fb, cb, db, fb, cb, db, (w, h))):
                setattr(inner, f, v)

        inner._configure_main_framebuffer = configure_main_framebuffer

        read_main = inner._read_main_framebuffer

        def read_main_framebuffer(scene, flags):
            if not flags & seg_flag:
                return read_main(scene, flags)
            # the viewport's size: on the canvas's framebuffer, its lower-left corner
            return self._read_seg(inner._main_fb, inner.viewport_width, inner.viewport_height,
                                  scene.main_camera_node.camera)

        inner._read_main_framebuffer = read_main_framebuffer

        shadow_pass = inner._shadow_mapping_pass

        def shadow_mapping_pass(scene, light_node, flags):
            casters = any(n.mesh.is_visible for n in scene.mesh_nodes if n is not self._floor_node)
            if light_node in self._unshadowed or not casters:
                # pyrender's shadow flags are per light type; a light without shadows gets an
                # empty map (cleared to the far plane), so every lookup reads "lit".
                from OpenGL import GL

                inner._configure_shadow_mapping_viewport(light_node.light, flags)
                GL.glClear(GL.GL_DEPTH_BUFFER_BIT)
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
                return
            # The floor cannot shadow anything above it: leaving it out of the shadow maps
            # removes a full-map draw per light (about a third of the RGB pass on llvmpipe).
            floor = self._floor_node.mesh if self._floor_node is not None else None
            was_visible = floor is not None and floor.is_visible
            if floor is not None:
                floor.is_visible = False
            try:
                shadow_pass(scene, light_node, flags)
            finally:
                if floor is not None:
                    floor.is_visible = was_visible

        inner._shadow_mapping_pass = shadow_mapping_pass

        bind_lighting = inner._bind_lighting
        self._make_dummy_shadow()
        max_lights: Dict[int, list] = {}  # render flags -> pyrender's light array sizes
        dir_shadows, spot_shadows = self._pr.RenderFlags.SHADOWS_DIRECTIONAL, self._pr.RenderFlags.SHADOWS_SPOT

        def bind_lighting_fixed(scene, program, node, flags):
            bind_lighting(scene, program, node, flags)
            # Point every shadow sampler of an absent light at one dummy shadow map on the
            # last texture unit. Left alone they keep whatever unit an earlier draw gave them,
            # so llvmpipe's shader variant key (the state of every sampler) changed with each
            # light combination and material: its variant cache overflowed every ~50 images
            # of a varied run (evict, then 0.5-1 s of recompiling).
            n_max = max_lights.get(flags) or max_lights.setdefault(flags, inner._compute_max_n_lights(flags))
            counts = (min(len(scene.directional_light_nodes), n_max[0]), min(len(scene.spot_light_nodes), n_max[1]))
            if self._dummy_slots.get(id(program)) == counts:
                return
            self._dummy_slots[id(program)] = counts
            unit = self._dummy_unit
            if flags & dir_shadows:
                for k in range(counts[0], n_max[0]):
                    program.set_uniform(f"directional_lights[{k}].shadow_map", unit)
            if flags & spot_shadows:
                for k in range(counts[1], n_max[1]):
                    program.set_uniform(f"spot_lights[{k}].shadow_map", unit)

        inner._bind_lighting = bind_lighting_fixed

        light_matrices = inner._get_light_cam_matrices
        pr = self._pr

        def get_light_cam_matrices(scene, light_node, flags):
            # pyrender asks for every light's matrices at every draw (~23 times an image); they
            # depend on the light's pose, the casters and the scene's bounds, all set by _load (the raster
            # 76.2 -> 75.8 ms CPU an image, same bytes).
            hit = self._light_cams.get(light_node)
            if hit is not None:
                return hit
            # pyrender fits a directional light's orthographic shadow frustum to the whole
            # scene (the 4 m floor: ~1 cm per texel). Fit it to the shadow casters instead;
            # the floor only receives, and points outside the map fall on empty texels.
            if self._casters is None or not isinstance(light_node.light, pr.DirectionalLight):
                hit = light_matrices(scene, light_node, flags)
            else:
                centre, radius = self._casters
                pose = scene.get_pose(light_node).copy()
                pose[:3, 3] = centre + pose[:3, 2] * (radius + 1.0)  # the light looks along -z
                cam = pr.OrthographicCamera(xmag=radius, ymag=radius, znear=0.05, zfar=2 * radius + 4.0)
                hit = np.linalg.inv(pose), cam.get_projection_matrix()
            self._light_cams[light_node] = hit
            return hit

        inner._get_light_cam_matrices = get_light_cam_matrices

    def _make_dummy_shadow(self) -> None:
        """A 1x1 shadow map made like the lights' own (same format and sampler: the same
        llvmpipe sampler state), for the shadow samplers of absent lights."""
        from OpenGL import GL

        light = self._pr.DirectionalLight()
        light._generate_shadow_texture(size=1)
        tex = light.shadow_texture
        tex.sampler.wrapS = tex.sampler.wrapT = self._pr.constants.GLTF.CLAMP_TO_EDGE
        self._dummy_unit = int(GL.glGetIntegerv(GL.GL_MAX_TEXTURE_IMAGE_UNITS)) - 1
        GL.glActiveTexture(GL.GL_TEXTURE0 + self._dummy_unit)
        tex._add_to_context()  # binds it to the active unit: the last, which pyrender never uses
        GL.glActiveTexture(GL.GL_TEXTURE0)
        self._dummy_shadow = tex

    def close(self) -> None:
        """Free this renderer's GL objects and context, but never terminate the EGL display:
        it is shared by every context of the process (pyrender's delete() terminates it,
        which breaks any other live renderer)."""
        r = self._r
        if r is None or getattr(r, "_platform", None) is None:
            return
        try:
            r._platform.make_current()
            if self._normal_programs is not None:
                self._normal_programs.clear()
                _UNIFORM_LOCATIONS.clear()  # (GL reuses the deleted programs' ids)
                self._normal_programs = None
            if self._parked_fbs is not None:
                inner = r._renderer
                inner._delete_main_framebuffer()
                for f, v in zip(_MAIN_FB_FIELDS, self._parked_fbs):
                    setattr(inner, f, v)
                self._parked_fbs = None
            r._renderer.delete()
            # pyrender's delete() leaves _shadow_fb set, so the renderer's __del__ deletes that
            # framebuffer name again when Python collects it, in whatever context is current
            # then: another renderer's main framebuffer (seen as GL_INVALID_OPERATION there).
            r._renderer._shadow_fb = None
            plat = r._platform
            display, context = getattr(plat, "_egl_display", None), getattr(plat, "_egl_context", None)
            if display is not None and context is not None:
                from OpenGL.EGL import EGL_NO_CONTEXT, EGL_NO_SURFACE, eglDestroyContext, eglMakeCurrent

                eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT)
                eglDestroyContext(display, context)
                plat._egl_context = None
                plat._egl_display = None  # so its __del__ does not eglTerminate the shared display
            else:  # not EGL (e.g. OSMesa): its own delete is safe
                plat.delete_context()
        except Exception:
            pass
        r._renderer = None
        r._platform = None
        self._r = None

    def __del__(self):
        try:
            if _sys.is_finalizing():  # modules are being torn down: GL calls would only print noise
                return
            self.close()
        except Exception:
            pass

    # -- scene graph ------------------------------------------------------------------

    def _uv_mesh(self, tm, smooth: bool, key: int):
        """A single-primitive pyrender mesh with box-projected UVs (metres) and its own
        material; geometry only (trimesh's default colours would tint the material)."""
        from .textures import box_uv

        pr = self._pr
        pos, idx, uv = box_uv(np.asarray(tm.vertices), np.asarray(tm.faces), np.asarray(tm.face_normals))
        if smooth:
            nrm = np.asarray(tm.vertex_normals)[np.asarray(tm.faces)].reshape(-1, 3)
        else:
            nrm = np.repeat(np.asarray(tm.face_normals), 3, axis=0)
        mat = pr.MetallicRoughnessMaterial(baseColorFactor=[0.7, 0.7, 0.7, 1.0], metallicFactor=0.0,
                                           roughnessFactor=0.6)
        prim = pr.Primitive(positions=pos.astype(np.float32), normals=nrm.astype(np.float32),
                            texcoord_0=uv.astype(np.float32), indices=idx, material=mat)
        mesh = pr.Mesh([prim])
        node = self._Node(key=key, mesh=mesh, matrix=np.eye(4))
        self._scene.add_node(node)
        return mesh, node, mat

    def _mesh_slot(self, library: AssetLibrary, asset: str, slot: int):
        pool = self._pool.setdefault(library.assets[asset], [])  # keyed by the asset itself
        while len(pool) <= slot:
            tm = library.visual_mesh(asset)
            a = library.assets[asset]
            smooth = a.primitive not in _FLAT_PRIMITIVES
            key = (1 + zlib.crc32(asset.encode()) % 100000) * 1024 + len(pool)
            if library.has_own_colors(asset):
                # Its own texture or colours, never repainted: every slot is a node of one shared
                # mesh, so geometry and texture (up to 5.6 MB with mipmaps) exist once. Parked
                # slots of a visible shared mesh are points (zero area): they draw nothing.
                mesh = pool[0][0] if pool else self._pr.Mesh.from_trimesh(tm, smooth=smooth)
                node = self._Node(key=key, mesh=mesh, matrix=np.eye(4))
                self._scene.add_node(node)
                pool.append((mesh, node, None))
            else:
                pool.append(self._uv_mesh(tm, smooth, key))
        return pool[slot]

    def _texture(self, tex):
        """pyrender Texture (repeat-wrapped, mipmapped) for a TextureSpec."""
        from .textures import texture_tile

        pr = self._pr
        sampler = pr.Sampler(magFilter=pr.constants.GLTF.LINEAR,
                             minFilter=pr.constants.GLTF.LINEAR_MIPMAP_LINEAR,
                             wrapS=pr.constants.GLTF.REPEAT, wrapT=pr.constants.GLTF.REPEAT)
        return pr.Texture(source=texture_tile(tex), source_channels="RGB", sampler=sampler)

    def _paint(self, mat, color, metallic: float, roughness: float, tex) -> None:
        if tex is not None:
            mat.baseColorTexture = self._texture(tex)
            mat.baseColorFactor = np.ones(4, dtype=np.float32)
        else:
            mat.baseColorTexture = None
            mat.baseColorFactor = np.asarray(color, dtype=np.float32)
        mat.metallicFactor = float(metallic)
        mat.roughnessFactor = float(roughness)

    def _set_floor(self, scene: SceneSpec):
        if self._floor_node is None or self._floor_size != scene.floor_size:
            import trimesh

            if self._floor_node is not None:
                self._scene.remove_node(self._floor_node)
            box = trimesh.creation.box(extents=[scene.floor_size, scene.floor_size, 0.01])
            box.apply_translation([0, 0, -0.005])
            _, self._floor_node, self._floor_mat = self._uv_mesh(box, smooth=False, key=1023)
            self._floor_size = scene.floor_size
        self._floor_node.mesh.is_visible = bool(scene.floor_enabled)
        self._paint(self._floor_mat, scene.floor_color, 0.0, 0.9, scene.floor_texture)

    def _set_statics(self, scene: SceneSpec):
        import trimesh

        for mesh, node, _ in self._statics.values():
            mesh.is_visible = False
            self._scene.set_pose(node, _PARKED)
        nodes = []
        for st in scene.statics:
            key = (st.name, tuple(np.round(np.asarray(st.extents), 6)))
            if key not in self._statics:
                box = trimesh.creation.box(extents=np.asarray(st.extents))
                self._statics[key] = self._uv_mesh(box, smooth=False, key=900 + len(self._statics))
            mesh, node, mat = self._statics[key]
            mesh.is_visible = True
            self._scene.set_pose(node, np.asarray(st.pose))
            self._paint(mat, st.color, 0.0, 0.8, None)
            nodes.append(node)
        return nodes

    def _set_lights(self, scene: SceneSpec):
        pr = self._pr
        for n in self._light_nodes:
            self._scene.remove_node(n)
        self._light_nodes = []
        # pyrender gives lights their shader array slots in the iteration order of its light
        # node sets. A set's order depends on its history, not only on the keys: the slots
        # of removed entries stay taken until it is rebuilt (spot lights 0, 1 come out as
        # 1, 0 in the third scene in a row with two), so the shader summed the lights in
        # another order and RGB moved by 1 in a few pixels with what the process had
        # rendered before. Fresh (empty) sets each scene: the order is a function of this
        # scene's lights alone.
        sc = self._scene
        assert not (sc._point_light_nodes or sc._spot_light_nodes or sc._directional_light_nodes)
        sc._point_light_nodes, sc._spot_light_nodes, sc._directional_light_nodes = set(), set(), set()
        self._unshadowed = set()
        used = {"directional": 0, "point": 0, "spot": 0}
        for ls in scene.lights:
            k = used[ls.kind]
            if k >= MAX_LIGHTS_PER_TYPE:
                continue  # pyrender's shaders hold at most 4 lights per type
            pool = self._lights[ls.kind]
            if len(pool) <= k:
                if ls.kind == "directional":
                    pool.append(pr.DirectionalLight())
                elif ls.kind == "point":
                    pool.append(pr.PointLight())
                else:
                    pool.append(pr.SpotLight(innerConeAngle=np.pi / 8, outerConeAngle=np.pi / 4))
                if ls.kind != "point":
                    # Clamp, not repeat: outside its frustum a shadow map must read as empty
                    # (its border texels), never as a tiled copy of the casters.
                    light = pool[-1]
                    light._generate_shadow_texture()
                    clamp = pr.constants.GLTF.CLAMP_TO_EDGE
                    light.shadow_texture.sampler.wrapS = light.shadow_texture.sampler.wrapT = clamp
            light = pool[k]
            light.color = np.asarray(ls.color, dtype=np.float32)
            light.intensity = float(ls.intensity)
            used[ls.kind] += 1
            node = self._Node(key=k, light=light, matrix=np.asarray(ls.pose, dtype=float))
            self._scene.add_node(node)
            self._light_nodes.append(node)
            if not ls.shadows:
                self._unshadowed.add(node)

    def _set_camera(self, scene: SceneSpec):
        c = scene.camera
        if (self._r.viewport_width, self._r.viewport_height) != (c.width, c.height):
            self._r.viewport_width, self._r.viewport_height = c.width, c.height
        K = np.asarray(c.K)
        cam = self._cam
        # OpenCV puts pixel centres at integers, OpenGL at +0.5: shift the principal point.
        cam.fx, cam.fy, cam.cx, cam.cy = K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5
        cam.znear, cam.zfar = c.znear, c.zfar
        self._scene.set_pose(self._cam_node, cv_pose_to_gl(c.pose))

    def _load(self, scene: SceneSpec, library: AssetLibrary) -> Dict[int, object]:
        for pool in self._pool.values():
            for mesh, node, _ in pool:
                # Hidden and parked as a point at the origin: scene bounds (and so directional
                # shadow frusta) must not depend on what this process rendered before.
                mesh.is_visible = False
                self._scene.set_pose(node, _PARKED)
        slots: Dict[str, int] = {}
        nodes = {}
        for o in scene.objects:
            k = slots.get(o.asset, 0)
            slots[o.asset] = k + 1
            mesh, node, mat = self._mesh_slot(library, o.asset, k)
            mesh.is_visible = True
            T = np.asarray(o.pose) @ np.diag([*np.asarray(o.scale), 1.0])
            self._scene.set_pose(node, T)
            if mat is not None:
                color = o.color if o.color is not None else np.array([0.7, 0.7, 0.7, 1.0], np.float32)
                self._paint(mat, color, o.metallic, o.roughness, o.texture)
            nodes[o.instance_id] = node
        self._casters = _bounding_sphere(scene, library)
        self._light_cams = {}  # light node -> (view, projection) of its shadow map, this scene's
        self._static_nodes = self._set_statics(scene)
        self._set_floor(scene)
        self._set_lights(scene)
        self._set_camera(scene)
        self._scene.ambient_light = np.full(3, scene.ambient, dtype=np.float32)
        self._scene.bg_color = np.zeros(4, dtype=np.float32)  # transparent: composited below
        return nodes

    # -- passes -----------------------------------------------------------------------

    def _read_seg(self, framebuffer: int, width: int, height: int, camera):
        """What a SEG pass drawn into the single-sample framebuffer gives, rows flipped to
        image order: the colours' 24 bits as (H,W) uint32 (an id, see encode_id, or in OR
        mode a bit set) and metric depth (H,W) float32 (None in OR mode and for the normals pass). Depth is
        linearised in float64: pyrender's float32 formula loses ~0.1 mm at 1 m."""
        from OpenGL import GL

        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, framebuffer)
        # the colour: RGBA as little-endian uint32, red = bits 0-7 (one pass, no per-channel decoding)
        buf = GL.glReadPixels(0, 0, width, height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
        bits = np.frombuffer(buf, dtype="<u4").reshape(height, width)[::-1] & np.uint32(0xFFFFFF)
        if self._or_mode or self._colour_only:
            return bits, None
        buf = GL.glReadPixels(0, 0, width, height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT)
        d = np.frombuffer(buf, dtype=np.float32).reshape(height, width)[::-1].astype(np.float64)
        far = d == 1.0  # cleared: nothing drawn there
        zn = float(camera.znear)
        if camera.zfar is None:  # infinite projection: z = zn / (1 - d)
            d[far] = 0.0  # (any finite value: replaced by 0 below)
            depth = (zn / (1.0 - d)).astype(np.float32)
        else:  # z = zn zf / (zf - d (zf - zn)), in place: no full-frame temporaries
            zf = float(camera.zfar)
            d *= zf - zn
            np.subtract(zf, d, out=d)
            np.divide(zn * zf, d, out=d)
            depth = d.astype(np.float32)
        depth[far] = 0.0
        return bits, depth

    def _seg(self, seg_map) -> Tuple[np.ndarray, np.ndarray]:
        ids, depth = self._r.render(self._scene, flags=self._pr.RenderFlags.SEG, seg_node_map=seg_map)
        if ids.ndim == 3:  # pyrender's own read (RGB colours), as in the tests that compare with it
            return decode_ids(ids), depth
        return ids.view(np.int32), depth  # simgen's read: 24-bit ids, the same values as int32

    def _normals(self, seg_map) -> np.ndarray:
        """(H,W,3) uint8 surface normals (Frame.normals' encoding): pyrender's SEG pass (single
        sample, no lighting, the same rasterization as the instance map and depth) drawn with
        simgen's own shaders (NORMALS_SHADERS), which output the normal instead of an id."""
        from pyrender.shader_program import ShaderProgramCache

        inner = self._r._renderer
        if self._normal_programs is None:
            self._normal_programs = ShaderProgramCache(shader_dir=NORMALS_SHADERS)
        programs, inner._program_cache = inner._program_cache, self._normal_programs
        self._colour_only = True  # (depth comes from the instance pass, of the same geometry)
        try:
            bits, _ = self._r.render(self._scene, flags=self._pr.RenderFlags.SEG, seg_node_map=seg_map)
        finally:
            inner._program_cache = programs
            self._colour_only = False
        if bits.ndim == 3:  # pyrender's own read (RGB)
            return np.ascontiguousarray(bits[..., :3])
        h, w = bits.shape  # simgen's read: RGBA bytes as little-endian uint32, alpha masked off
        return np.ascontiguousarray(np.ascontiguousarray(bits).view(np.uint8).reshape(h, w, 4)[..., :3])

    def _unoccluded(self, nodes: Dict[int, object], margins=(0, 0, 0, 0)):
        """Each object's mask as if alone, on a canvas enlarged by ``margins`` (left, top,
        right, bottom pixels) so that parts outside the frame count too; 24 objects per pass.

        Object k of a pass is drawn with colour bit k, depth test off, and the framebuffer
        combines fragments with a bitwise OR (glLogicOp): a pixel ends up holding the set of
        objects whose triangles cover its centre. Integer ops, single-sample: exact, and the
        same coverage a pass with the object alone would give. Returns id -> (in-frame (H, W)
        mask, (tight canvas crop, x0, y0) in image pixel coordinates).
        """
        l, t, r, b = margins
        W, H = self._r.viewport_width, self._r.viewport_height
        cam = self._cam
        cx, cy = cam.cx, cam.cy
        if any(margins):
            self._r.viewport_width, self._r.viewport_height = W + l + r, H + t + b
            cam.cx, cam.cy = cx + l, cy + t  # the same rays, on a bigger sensor
        out = {}
        try:
            ids = sorted(nodes)
            for start in range(0, len(ids), 24):
                chunk = ids[start:start + 24]
                self._or_mode = True
                try:
                    bits, _ = self._r.render(self._scene, flags=self._pr.RenderFlags.SEG,
                                             seg_node_map={nodes[i]: encode_id(1 << k)
                                                           for k, i in enumerate(chunk)})
                finally:
                    self._or_mode = False
                out.update(_split_bits(bits, chunk, (l, t, W, H)))
        finally:
            if any(margins):
                self._r.viewport_width, self._r.viewport_height = W, H
                cam.cx, cam.cy = cx, cy
        return out

    def _canvas_margins(self, scene: SceneSpec, library: AssetLibrary, cap: float) -> Tuple[int, int, int, int]:
        """Pixels to add on each side so every labeled object's silhouette fits (from the
        projected corners of its model-frame bounding box), at most ``cap`` x the frame size.

        Exact, so that a scene with every object inside the frame gets no margin at all: the
        pass then keeps the frame's viewport, and pyrender does not rebuild its framebuffers
        for the canvas and back (unoccluded pass 5.1 -> 3.6 ms). A pixel centre sits at an
        integer (OpenCV), so pixel -1 can be covered only if a silhouette reaches u <= -1,
        pixel W only if it reaches u >= W; MARGIN_SLACK absorbs float32 rounding on the GPU."""
        c = scene.camera
        K, w2c = np.asarray(c.K), np.linalg.inv(np.asarray(c.pose))
        lo, hi = np.array([0.0, 0.0]), np.array([c.width - 1.0, c.height - 1.0])
        limit = np.array([c.width, c.height]) * cap
        for o in scene.labeled:
            corners = _box_corners(library, o.asset) * np.asarray(o.scale)
            world = corners @ o.pose[:3, :3].T + o.pose[:3, 3]
            pc = world @ w2c[:3, :3].T + w2c[:3, 3]
            if (pc[:, 2] <= c.znear).any():
                if (pc[:, 2] > c.znear).any():  # straddles the camera plane: unbounded
                    lo, hi = lo - limit, hi + limit
                continue
            uv = pc[:, :2] / pc[:, 2:3] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
            lo, hi = np.minimum(lo, uv.min(axis=0)), np.maximum(hi, uv.max(axis=0))
        pad_lo = np.clip(np.floor(-lo + MARGIN_SLACK), 0, limit).astype(int)
        pad_hi = np.clip(np.floor(hi - [c.width - 1, c.height - 1] + MARGIN_SLACK), 0, limit).astype(int)
        return int(pad_lo[0]), int(pad_lo[1]), int(pad_hi[0]), int(pad_hi[1])

    def render(self, scene: SceneSpec, library: AssetLibrary, unoccluded: bool = True,
               normals: bool = False) -> Frame:
        """Render one scene. Depth and instance ids come from the same single-sample pass,
        so they agree pixel for pixel; RGB is antialiased (4x MSAA). ``normals``: also the
        surface normals (Frame.normals), from a single-sample pass of the same geometry."""
        pr = self._pr
        t0 = time.perf_counter()
        nodes = self._load(scene, library)
        flags = pr.RenderFlags.NONE
        if self.shadows:
            flags |= pr.RenderFlags.SHADOWS_DIRECTIONAL | pr.RenderFlags.SHADOWS_SPOT
        t1 = time.perf_counter()
        rgba, _ = self._r.render(self._scene, flags=flags | pr.RenderFlags.RGBA)
        rgb = _composite(rgba, scene)
        t2 = time.perf_counter()
        labeled = {i: n for i, n in nodes.items() if i >= 1}
        # Unlabeled geometry (floor, bin walls, shelves, distractors) occludes as id 0.
        seg_map = {node: encode_id(max(i, 0)) for i, node in nodes.items()}
        for node in [self._floor_node, *self._static_nodes]:
            seg_map[node] = encode_id(0)
        instance, depth = self._seg(seg_map)
        t3 = time.perf_counter()
        nrm = self._normals(seg_map) if normals else None
        t4 = time.perf_counter()
        known = np.zeros(max(labeled, default=0) + 1, dtype=bool)
        known[0] = True
        known[list(labeled)] = True
        if instance.max() >= known.size or not known[instance].all():
            bad = sorted(set(np.unique(instance).tolist()) - set([0, *labeled]))[:5]
            raise RuntimeError(f"instance map holds unknown ids {bad}: segmentation pass blended "
                               f"samples (multisampling must be off for SEG)")
        margins = self._canvas_margins(scene, library, self.amodal_canvas) if unoccluded else (0, 0, 0, 0)
        both = self._unoccluded(labeled, margins) if unoccluded else {}
        depth = np.asarray(depth, dtype=np.float32)
        self.last_timings = {"scene_graph": t1 - t0, "rgb": t2 - t1, "instance_depth": t3 - t2,
                             "unoccluded": time.perf_counter() - t4, **({"normals": t4 - t3} if normals else {})}
        return Frame(rgb=rgb, depth=depth, instance=instance.astype(np.int32, copy=False), normals=nrm,
                     unoccluded={i: m for i, (m, _) in both.items()},
                     amodal={i: a for i, (_, a) in both.items()})
