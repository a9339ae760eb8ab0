"""A user's folder of meshes as an asset set: classes, units, colours, decomposition, errors."""
import os
import shutil

import numpy as np
import pytest
import trimesh
from PIL import Image

from simgen.assets import AssetLibrary, guess_unit_scale
from simgen.errors import AssetError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("assets")
    old = os.environ.get("SIMGEN_CACHE_DIR")
    os.environ["SIMGEN_CACHE_DIR"] = str(tmp_path / "cache")  # V-HACD runs once for the module
    root = tmp_path / "parts"
    (root / "bracket").mkdir(parents=True)
    (root / "tile").mkdir()
    # mm-sized concave (closed) mesh as STL; class from its folder: a ring, 8 cm across
    trimesh.creation.torus(major_radius=30.0, minor_radius=10.0).export(root / "bracket" / "bracket_01.stl")
    # vertex-coloured PLY in metres
    s = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    s.visual.vertex_colors = (np.c_[(s.vertices > 0) * 200 + 30, np.full(len(s.vertices), 255)]).astype(np.uint8)
    s.export(root / "ball_7.ply")
    # textured GLB in centimetres
    box = trimesh.creation.box([6.0, 6.0, 6.0])
    img = Image.fromarray((np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)).convert("RGB")
    uv = np.c_[box.vertices[:, 0] > 0, box.vertices[:, 1] > 0].astype(float)
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=img)
    box.export(root / "tile" / "tile.glb")
    (root / "notes.txt").write_text("not a mesh")
    yield root
    if old is None:
        os.environ.pop("SIMGEN_CACHE_DIR", None)
    else:
        os.environ["SIMGEN_CACHE_DIR"] = old


def test_folder_becomes_an_asset_set(folder):
    lib = AssetLibrary.from_sets([str(folder)])
    assert lib.categories == ["ball", "bracket", "tile"]
    ext = {lib.assets[n].category: lib.visual_mesh(n).extents.max() for n in lib.names}
    assert ext["bracket"] == pytest.approx(0.08, rel=1e-6)  # millimetres guessed
    assert ext["tile"] == pytest.approx(0.06, rel=1e-6)  # centimetres guessed
    assert ext["ball"] == pytest.approx(0.08, rel=0.02)  # metres kept
    by_cat = {lib.assets[n].category: n for n in lib.names}
    assert lib.has_own_colors(by_cat["ball"]) and lib.is_textured(by_cat["tile"])
    assert not lib.has_own_colors(by_cat["bracket"])
    lib2 = AssetLibrary.from_sets([str(folder)], units="m")
    assert lib2.visual_mesh(by_cat["bracket"]).extents.max() == pytest.approx(80.0)


def test_concave_mesh_is_decomposed_once_and_cached(folder):
    lib = AssetLibrary.from_sets([str(folder)])
    name = [n for n in lib.names if lib.assets[n].category == "bracket"][0]
    mesh = lib.visual_mesh(name)
    assert mesh.is_watertight and mesh.volume < 0.9 * mesh.convex_hull.volume
    col = lib.collision(name)
    assert col.kind == "file" and col.path.startswith(os.environ["SIMGEN_CACHE_DIR"])
    n_parts = sum(1 for line in open(col.path) if line.startswith("o "))
    assert n_parts >= 4  # a ring needs several convex parts
    mtime = os.path.getmtime(col.path)
    from simgen.assets import corners_file, decomposition_path

    parts = decomposition_path(lib.assets[name])
    assert corners_file(parts) == col.path and os.path.getmtime(col.path) == mtime
    assert parts.startswith(os.path.join(os.environ["SIMGEN_CACHE_DIR"], "vhacd"))


def test_convex_meshes_reach_physics_as_cached_hull_files(folder, monkeypatch):
    """pybullet keeps vertex lists given to createCollisionShape forever (memory grows with
    every scene), so hulls go to physics as OBJ files written once in the cache."""
    from scipy.spatial import cKDTree

    from simgen.assets import hull_file

    lib = AssetLibrary.from_sets([str(folder)])
    name = [n for n in lib.names if lib.assets[n].category == "ball"][0]
    col = lib.collision(name)
    assert col.kind == "file" and col.path.startswith(os.path.join(os.environ["SIMGEN_CACHE_DIR"], "corners"))
    corners = np.array([[float(v) for v in line.split()[1:4]] for line in open(col.path) if line.startswith("v ")])
    hull = trimesh.convex.convex_hull(corners)
    vis = lib.visual_mesh(name).convex_hull
    assert hull.is_watertight and hull.is_convex
    assert hull.volume == pytest.approx(vis.volume, rel=0.05)  # 96 of its 162 vertices: ~1% sag
    assert cKDTree(vis.vertices).query(hull.vertices)[0].max() < 1e-6  # corners of the mesh itself
    assert hull_file(hull.vertices) == hull_file(hull.vertices)  # named by content, written once
    # a cache folder that cannot be written falls back to a temp folder
    monkeypatch.setenv("SIMGEN_CACHE_DIR", "/proc/simgen-cache")
    path = hull_file(vis.vertices)
    assert os.path.isfile(path) and not path.startswith("/proc")
    # neither writable: one AssetError naming the fix
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: "/proc/simgen-tmp")
    with pytest.raises(AssetError, match="cannot write the mesh cache.*SIMGEN_CACHE_DIR"):
        hull_file(vis.vertices * 1.5)


def test_corners_file_gives_pybullet_the_same_hulls(folder, tmp_path):
    """corners_file lists each part's corners once; pybullet must build the same convex
    parts from it as from the original: pybullet_data's decompositions, and an OBJ with every
    construct that decides where a part starts or which vertex a corner is (objects, groups,
    materials, quads, negative and v/vt/vn indices, unused vertices, comments)."""
    import pybullet_data

    from simgen.assets import corners_file
    from simgen.physics import PhysicsWorld

    odd = tmp_path / "odd.obj"
    cube = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    text = ["# two boxes and a tetrahedron", "mtllib none.mtl", "o first"]
    text += ["v %g %g %g" % c for c in cube] + ["vt 0 0", "vn 0 0 1", "v 9 9 9"]  # the last one unused
    text += ["f 1/1/1 2/1/1 4/1/1 3/1/1", "f 5//1 6//1 8//1 7//1", "s off", "f 1 5 6 2"]
    text += ["g second"] + ["v %g %g %g" % (x + 2, y, z * 3) for x, y, z in cube]
    text += ["f -8 -7 -5 -6", "usemtl red", "f -4 -3 -1 -2", "", "f -8 -4 -3 -7"]
    text += ["o third", "v 0 0 5", "v 1 0 5", "v 0 1 5", "v 0 0 6", "f -4 -3 -2", "f -4 -3 -1", "f -3 -2 -1"]
    odd.write_text("\n".join(text) + "\n")
    data = pybullet_data.getDataPath()
    world = PhysicsWorld()
    p, c = world._p, world.client

    def hull_points(path):
        p.resetSimulation(physicsClientId=c)
        shape = p.createCollisionShape(p.GEOM_MESH, fileName=path, meshScale=[0.1] * 3, physicsClientId=c)
        body = p.createMultiBody(1.0, shape, useMaximalCoordinates=True, physicsClientId=c)
        pts = np.array(p.getMeshData(body, -1, physicsClientId=c)[1])
        return pts[np.lexsort(pts.T)], p.getDynamicsInfo(body, -1, physicsClientId=c)[2]

    def corners_used(path):
        return sum(len(line.split()) - 1 for line in open(path) if line.startswith("f "))

    try:
        for path in [str(odd)] + [os.path.join(data, f) for f in ("teddy2_VHACD_CHs.obj", "duck_vhacd.obj",
                                                                  "objects/mug_col.obj")]:
            fast = corners_file(path)
            assert fast.startswith(os.environ["SIMGEN_CACHE_DIR"]) and corners_file(path) == fast
            (a, inertia_a), (b, inertia_b) = hull_points(path), hull_points(fast)
            assert len(a) > 8 and a.shape == b.shape and (a == b).all(), path
            assert inertia_a == inertia_b
            assert corners_used(fast) < corners_used(path) / 2 or path == str(odd)
    finally:
        world.close()
    stl = tmp_path / "part.stl"
    trimesh.creation.box([0.1, 0.1, 0.1]).export(stl)
    assert corners_file(str(stl)) == str(stl)  # not OBJ text: pybullet gets the file as it is
    for face, why in (("f 1 2 \\", "cannot read"), ("f 0 1 2", "does not exist"), ("f -9 1 2", "does not exist"),
                      ("f 1 2 7", "past the last")):
        broken = tmp_path / "broken.obj"
        broken.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n" + face + "\n")
        with pytest.raises(AssetError, match=f"collision mesh .*broken.obj: .*{why}.*fix:"):
            corners_file(str(broken))


def test_folder_assets_settle_and_render(folder, renderer):
    from conftest import camera, scene

    from simgen.annotate import annotate
    from simgen.config import compose
    from simgen.physics import PhysicsWorld

    lib = AssetLibrary.from_sets([str(folder)])
    world = PhysicsWorld()
    for name in lib.names:
        sc = scene([(name, [0.0, 0.0, 0.1], None, 1.0)], camera([0.0, -0.4, 0.4], [0.0, 0.0, 0.0]))
        settled, rep = world.settle(sc, lib, compose([]).physics)
        assert rep.valid, (name, rep)
        assert len(annotate(settled, renderer.render(settled, lib))) == 1
    world.close()


def test_broken_files_fail_or_are_skipped(folder, tmp_path):
    import shutil

    folder = shutil.copytree(folder, tmp_path / "parts")
    (folder / "bad.obj").write_bytes(b"\x00garbage\xff" * 30)
    (folder / "empty.stl").write_bytes(b"")
    with pytest.raises(AssetError, match="bad.obj|empty.stl"):
        AssetLibrary.from_sets([str(folder)])
    with pytest.warns(UserWarning, match="skipping"):
        lib = AssetLibrary.from_sets([str(folder)], on_error="skip")
    assert len(lib.names) == 3


@pytest.mark.parametrize("name,text,needle", [
    ("flat", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "is flat"),
    ("coplanar", "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\n", "is flat"),
    ("nan", "v nan 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 inf\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n", "NaN or infinite"),
])
def test_degenerate_meshes_fail_in_one_line_or_are_skipped(tmp_path, name, text, needle):
    """A one-triangle, coplanar or non-finite mesh is an AssetError naming the file (not a
    QhullError from the convex hull), and assets.on_error=skip skips it."""
    (tmp_path / f"{name}.obj").write_text(text)
    (tmp_path / "tet.obj").write_text("v 0 0 0\nv 0.1 0 0\nv 0 0.1 0\nv 0 0 0.1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    with pytest.raises(AssetError, match=f"{name}.obj' .*{needle}"):
        AssetLibrary.from_sets([str(tmp_path)]).validate()
    with pytest.warns(UserWarning, match="skipping"):
        lib = AssetLibrary.from_sets([str(tmp_path)], on_error="skip")
    lib.validate()
    assert [lib.assets[n].category for n in lib.names] == ["tet"]


def test_a_mesh_over_the_face_budget_is_simplified_with_a_warning(tmp_path, caplog):
    """assets.max_faces: a heavier mesh is decimated for rendering and physics (both use the
    same simplified mesh, so labels describe what is drawn), with a warning naming the asset;
    0 keeps every face."""
    import trimesh

    trimesh.creation.icosphere(subdivisions=5, radius=0.05).export(tmp_path / "ball.obj")  # 20,480 faces
    lib = AssetLibrary.from_sets([str(tmp_path)], units="m", max_faces=2000)
    name = lib.names[0]
    with caplog.at_level("WARNING", logger="simgen"):
        mesh = lib.visual_mesh(name)
    assert 1500 <= len(mesh.faces) <= 2000
    assert "has 20,480 faces (assets.max_faces=2,000)" in caplog.text and name in caplog.text
    assert np.allclose(mesh.extents, 0.1, atol=0.004)  # the same object, with fewer faces
    lib.validate()  # its collision hull comes from the simplified mesh
    full = AssetLibrary.from_sets([str(tmp_path)], units="m", max_faces=0)
    assert len(full.visual_mesh(full.names[0]).faces) == 20480
    duck = AssetLibrary.from_sets(["pybullet"], max_faces=1000)  # textured: kept whole, with a warning
    with caplog.at_level("WARNING", logger="simgen"):
        assert len(duck.visual_mesh("duck").faces) > 4000 and duck.is_textured("duck")
    assert "'duck' has 4,212 faces (assets.max_faces=1,000) and is kept as it is" in caplog.text


def test_pybullet_style_folder_collision_meshes_by_name_sidecar_sizes_and_declared_colours(tmp_path):
    """The layout the README documents: <name>_vhacd/_col beside <name> is its collision mesh
    (not an extra asset), <name>.yaml gives its real size, class, mass and colour, and a
    colour the file declares (MTL Kd, uniform vertex colours) is the asset's colour."""
    import pybullet_data

    pd = pybullet_data.getDataPath()
    for f in ("duck.obj", "duck.mtl", "duck_vhacd.obj", "duckCM.png"):
        shutil.copy(os.path.join(pd, f), tmp_path / f)
    os.makedirs(tmp_path / "mug")
    shutil.copy(os.path.join(pd, "objects", "mug.obj"), tmp_path / "mug" / "mug.obj")
    shutil.copy(os.path.join(pd, "objects", "mug_col.obj"), tmp_path / "mug" / "mug_col.obj")
    (tmp_path / "duck.yaml").write_text("size: 0.12\nmass: 0.3\n")
    (tmp_path / "mug" / "mug.yaml").write_text("size: 0.1\ncolor: [1.0, 0.2, 0.2]\nappearance: keep\n")
    (tmp_path / "tet.mtl").write_text("newmtl y\nKd 0.9 0.8 0.1\n")
    (tmp_path / "tet.obj").write_text("mtllib tet.mtl\nusemtl y\nv 0 0 0\nv 0.1 0 0\nv 0 0.1 0\nv 0 0 0.1\n"
                                      "f 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    cube = trimesh.creation.box([0.05, 0.05, 0.05])
    cube.visual.vertex_colors = [20, 200, 40, 255]
    cube.export(tmp_path / "green.ply")
    lib = AssetLibrary.from_sets([str(tmp_path)])
    by = {lib.assets[n].category: lib.assets[n] for n in lib.names}
    assert sorted(by) == ["duck", "green", "mug", "tet"]  # no duck_vhacd, no mug_col
    assert by["duck"].collision_path.endswith("duck_vhacd.obj") and by["mug"].collision_path.endswith("mug_col.obj")
    assert not by["duck"].decompose and by["duck"].mass == 0.3
    assert np.isclose(lib.visual_mesh(by["duck"].name).extents.max(), 0.12)
    assert np.isclose(lib.visual_mesh(by["mug"].name).extents.max(), 0.1)
    assert by["mug"].color == (1.0, 0.2, 0.2, 1.0) and by["mug"].appearance == "keep"
    assert np.allclose(by["tet"].color, (0.9, 0.8, 0.1, 1.0), atol=0.01)
    assert np.allclose(by["green"].color, (20 / 255, 200 / 255, 40 / 255, 1.0))
    assert by["duck"].color is None and lib.is_textured(by["duck"].name)
    lib.validate()
    (tmp_path / "tet.yaml").write_text("sise: 3\n")
    with pytest.raises(AssetError, match="tet.yaml': unknown key"):
        AssetLibrary.from_sets([str(tmp_path)])
    (tmp_path / "tet.yaml").write_text("color: red\n")
    with pytest.raises(AssetError, match="color must be"):
        AssetLibrary.from_sets([str(tmp_path)])


def test_empty_folder_and_unit_guess(tmp_path):
    (tmp_path / "x.txt").write_text("no meshes")
    with pytest.raises(AssetError, match="holds no meshes"):
        AssetLibrary.from_sets([str(tmp_path)])
    assert guess_unit_scale(150.0) == 0.001 and guess_unit_scale(12.0) == 0.01 and guess_unit_scale(0.3) == 1.0


def _uv_obj(folder, name, texture_ref):
    """An OBJ (a tetrahedron with UVs) whose MTL names ``texture_ref`` as its map_Kd."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.mtl").write_text(f"newmtl m\nKd 0.8 0.8 0.8\nmap_Kd {texture_ref}\n")
    (folder / f"{name}.obj").write_text(
        f"mtllib {name}.mtl\nv 0 0 0\nv 0.05 0 0\nv 0 0.05 0\nv 0 0 0.05\n"
        "vt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\nusemtl m\n"
        "f 1/1 3/3 2/2\nf 1/1 2/2 4/4\nf 1/1 4/4 3/3\nf 2/2 3/3 4/4\n")


def test_a_texture_the_mtl_names_outside_the_mesh_folder_is_loaded(tmp_path):
    """pybullet_data's torus names ../cube.png: trimesh >= 5 drops such a texture unless told,
    and the torus rendered untextured in random colours (the transfer benchmark's worst class)."""
    root = tmp_path / "set"
    (root / "ring").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), (200, 30, 30), np.uint8)).save(root / "tex.png")
    _uv_obj(root / "ring", "ring", "../tex.png")
    lib = AssetLibrary.from_sets([str(root)], units="m")
    (name,) = lib.names
    assert lib.assets[name].category == "ring" and lib.has_own_colors(name)
    img = lib.visual_mesh(name).visual.material.image
    assert np.asarray(img.convert("RGB"))[0, 0].tolist() == [200, 30, 30]


def test_a_texture_the_mtl_names_but_that_is_missing_is_a_warning(tmp_path, caplog):
    _uv_obj(tmp_path / "set" / "ring", "ring", "nowhere.png")
    lib = AssetLibrary.from_sets([str(tmp_path / "set")], units="m")
    (name,) = lib.names
    with caplog.at_level("WARNING", logger="simgen"):
        lib.visual_mesh(name)
    assert "names the texture nowhere.png, which does not exist" in caplog.text
    assert not lib.has_own_colors(name)
