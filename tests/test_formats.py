"""Writers read back by independent readers, splits, export after the fact, validate."""
import filecmp
import json
import os
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml
from conftest import run_cli

pytestmark = pytest.mark.slow

ARGS = ["num_images=8", "seed=2", "camera.width=320", "camera.height=240", "objects.count=[3,7]",
        "progress=false", "formats=[coco,yolo,voc]", "splits.train=0.6", "splits.val=0.2",
        "splits.test=0.2", "annotate.min_visibility=0.3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fmt") / "d")
    r = run_cli(*ARGS, f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    return out


def coco(d):
    return json.load(open(os.path.join(d, "annotations.json")))


def test_validate_accepts_then_names_problems(dataset, tmp_path):
    r = run_cli("validate", dataset)
    assert r.returncode == 0 and "valid" in r.stdout
    broken = str(tmp_path / "b")
    shutil.copytree(dataset, broken)
    doc = coco(broken)
    doc["annotations"][0]["bbox"][2] += 3
    json.dump(doc, open(os.path.join(broken, "annotations.json"), "w"))
    os.unlink(os.path.join(broken, "images", doc["images"][1]["file_name"]))
    r = run_cli("validate", broken)
    assert r.returncode == 1
    assert "not the tight box" in r.stdout or "outside" in r.stdout
    assert f"images/{doc['images'][1]['file_name']}: missing" in r.stdout


def test_splits_are_consistent_everywhere(dataset):
    doc = coco(dataset)
    per = {s: [i for i in doc["images"] if i["split"] == s] for s in ("train", "val", "test")}
    assert sum(len(v) for v in per.values()) == 8 and all(per.values())
    for s, imgs in per.items():
        sub = json.load(open(os.path.join(dataset, f"annotations_{s}.json")))
        assert [i["id"] for i in sub["images"]] == [i["id"] for i in imgs]
        assert sorted(os.listdir(os.path.join(dataset, "yolo", "labels", s))) == \
            sorted(i["file_name"].replace(".png", ".txt") for i in imgs)
        voc = open(os.path.join(dataset, "voc", "ImageSets", "Main", f"{s}.txt")).read().split()
        assert voc == [i["file_name"][:-4] for i in imgs]
    # A split depends on (seed, index) only: a bigger dataset keeps the first images' splits.
    from simgen.config import compose
    from simgen.pipeline import split_of

    big = compose([a for a in ARGS if not a.startswith("num_images")] + ["num_images=500"])
    assert [split_of(big, i["index"]) for i in doc["images"]] == [i["split"] for i in doc["images"]]


def test_streamed_json_is_the_whole_document(dataset):
    """annotations*.json are written one image at a time: each must be exactly the document
    json.dumps would give, with ids 1..n, and the split files the whole one's subsets."""
    raw = open(os.path.join(dataset, "annotations.json"), "rb").read()
    doc = json.loads(raw)
    assert json.dumps(doc, separators=(",", ":")).encode() == raw
    assert [i["id"] for i in doc["images"]] == [i["index"] + 1 for i in doc["images"]] == list(range(1, 9))
    assert [a["id"] for a in doc["annotations"]] == list(range(1, len(doc["annotations"]) + 1))
    for s in ("train", "val", "test"):
        keep = {i["id"] for i in doc["images"] if i["split"] == s}
        sub = dict(doc, images=[i for i in doc["images"] if i["id"] in keep],
                   annotations=[a for a in doc["annotations"] if a["image_id"] in keep])
        got = open(os.path.join(dataset, f"annotations_{s}.json"), "rb").read()
        assert got == json.dumps(sub, separators=(",", ":")).encode()
    assert not [f for _, _, fs in os.walk(dataset) for f in fs if f.startswith(".tmp-")]


def test_yolo_boxes_and_data_yaml(dataset):
    doc = coco(dataset)
    data = yaml.safe_load(open(os.path.join(dataset, "yolo", "data.yaml")))
    names = [c["name"] for c in doc["categories"]]
    assert data["nc"] == len(names) and [data["names"][k] for k in range(len(names))] == names
    for key in ("train", "val", "test"):
        assert os.path.isdir(os.path.join(dataset, "yolo", data[key]))
    for img in doc["images"]:
        W, H = img["width"], img["height"]
        path = os.path.join(dataset, "yolo", "labels", img["split"], img["file_name"].replace(".png", ".txt"))
        rows = [list(map(float, line.split())) for line in open(path) if line.strip()]
        want = sorted((names.index(next(c["name"] for c in doc["categories"] if c["id"] == a["category_id"])),
                       *a["bbox"]) for a in doc["annotations"] if a["image_id"] == img["id"] and not a["ignore"])
        got = sorted((int(c), (cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H) for c, cx, cy, w, h in rows)
        assert len(got) == len(want)
        for g, w_ in zip(got, want):
            assert g[0] == w_[0] and np.allclose(g[1:], w_[1:], atol=0.01)


def test_yolo_segments_cover_the_masks(dataset, tmp_path):
    import cv2

    from simgen.io import read_png

    d = str(tmp_path / "seg")
    shutil.copytree(dataset, d, ignore=shutil.ignore_patterns("yolo", "voc"))
    r = run_cli("export", d, "--to", "yolo", "--segments")
    assert r.returncode == 0, r.stderr
    doc = coco(d)
    for img in doc["images"]:
        inst = read_png(os.path.join(d, img["mask_file"]))
        W, H = img["width"], img["height"]
        path = os.path.join(d, "yolo", "labels", img["split"], img["file_name"].replace(".png", ".txt"))
        rows = [list(map(float, line.split())) for line in open(path) if line.strip()]
        kept = [a for a in doc["annotations"] if a["image_id"] == img["id"] and not a["ignore"]]
        assert len(rows) == len(kept)
        for a, row in zip(sorted(kept, key=lambda a: a["id"]), rows):
            poly = (np.array(row[1:]).reshape(-1, 2) * [W, H] - 0.5).round().astype(np.int32)
            filled = np.zeros((H, W), np.uint8)
            cv2.fillPoly(filled, [poly], 1)
            m = inst == a["instance_id"]
            iou = (m & (filled > 0)).sum() / (m | (filled > 0)).sum()
            assert iou > (0.8 if a["area"] >= 150 else 0.3), (a["id"], a["area"], iou)


def test_voc_xml_matches_coco(dataset):
    doc = coco(dataset)
    names = {c["id"]: c["name"] for c in doc["categories"]}
    for img in doc["images"]:
        path = os.path.join(dataset, "voc", "Annotations", img["file_name"][:-4] + ".xml")
        root = ET.parse(path).getroot()
        assert_canonical_xml(root, open(path, encoding="utf-8").read())
        assert int(root.find("size/width").text) == img["width"]
        objs = root.findall("object")
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        assert len(objs) == len(anns)
        for o, a in zip(objs, anns):
            x, y, w, h = a["bbox"]
            b = [int(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert b == [x + 1, y + 1, x + w, y + h] and o.find("name").text == names[a["category_id"]]
            assert int(o.find("difficult").text) == int(a["ignore"] or a["difficulty"] in ("hard", "beyond_hard"))
        assert os.path.isfile(os.path.join(dataset, "voc", "JPEGImages", img["file_name"]))


def assert_canonical_xml(root, text):
    """The text is what ElementTree writes for its tree once indented: the layout VOC tools
    were written against (simgen fills a template instead of building the tree)."""
    ET.indent(root)
    assert ET.tostring(root, encoding="unicode") == text


def test_voc_xml_escapes_names():
    from simgen.writers.voc import annotation_xml

    img = {"file_name": "a&b.png", "width": 64, "height": 48}
    anns = [{"bbox": [3, 4, 5, 6], "category_id": 1, "truncation": 0.5, "visibility": 0.2, "difficulty": "hard"}]
    text = annotation_xml(img, anns, {1: "nuts & <bolts>"})
    root = ET.fromstring(text)
    assert root.find("filename").text == "a&b.png" and root.find("object/name").text == "nuts & <bolts>"
    assert [root.find(f"object/{k}").text for k in ("truncated", "difficult", "occluded")] == ["1", "1", "1"]
    assert [int(root.find(f"object/bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")] == [4, 5, 8, 10]
    assert_canonical_xml(root, text)
    assert_canonical_xml(ET.fromstring(annotation_xml(img, [], {})), annotation_xml(img, [], {}))


def test_export_after_the_fact_matches_the_run(dataset, tmp_path):
    d = str(tmp_path / "e")
    shutil.copytree(dataset, d, ignore=shutil.ignore_patterns("yolo", "voc"))
    r = run_cli("export", d, "--to", "yolo,voc")
    assert r.returncode == 0, r.stderr
    for fmt in ("yolo", "voc"):
        assert_same_tree(os.path.join(dataset, fmt), os.path.join(d, fmt))
    r = run_cli("export", str(tmp_path / "nothing"), "--to", "yolo")
    assert r.returncode != 0 and "annotations.json is missing" in r.stderr


def assert_same_tree(a, b):
    stack = [filecmp.dircmp(a, b)]
    while stack:
        c = stack.pop()
        assert not c.diff_files and not c.left_only and not c.right_only, (c.left, c.diff_files, c.left_only,
                                                                           c.right_only)
        stack.extend(c.subdirs.values())


def test_large_finalize_writes_every_format_in_several_processes(dataset, tmp_path, monkeypatch):
    """From PARALLEL_FINALIZE images on, the processes that read the part files also write
    the YOLO and VOC files; the main process collects their summaries in order (split lists,
    data.yaml). Same files, same bytes as the run's one-process finalize. A failure in one
    of them (an image gone) stops finalize with the one-line error and leaves no export."""
    import simgen.config
    import simgen.runner
    from simgen.errors import OutputError
    from simgen.writers import coco

    out = tmp_path / "copy"
    shutil.copytree(dataset, out, ignore=shutil.ignore_patterns("yolo", "voc", "annotations*.json"))
    monkeypatch.setattr(simgen.runner, "PARALLEL_FINALIZE", 0)
    monkeypatch.setattr(simgen.config, "effective_workers", lambda cfg: 2)
    monkeypatch.setattr(coco, "CHUNK", 3)  # 8 images: 3 chunks over 2 processes
    simgen.runner.finalize(str(out))
    for name in ("yolo", "voc"):
        assert_same_tree(os.path.join(dataset, name), str(out / name))
    for name in ("annotations.json", "annotations_train.json", "annotations_val.json", "annotations_test.json"):
        assert open(out / name, "rb").read() == open(os.path.join(dataset, name), "rb").read()
    for name in ("yolo", "voc", "annotations.json"):
        (shutil.rmtree if os.path.isdir(out / name) else os.unlink)(out / name)
    os.unlink(out / "images" / "000005.png")
    with pytest.raises(OutputError, match="cannot write the dataset files"):
        simgen.runner.finalize(str(out))
    assert sorted(os.listdir(out)) == sorted(set(os.listdir(dataset)) - {"yolo", "voc", "annotations.json"})


def test_bop_export_reprojects_models_onto_masks(tmp_path, monkeypatch):
    """BOP ground truth read back: each model, posed with cam_R_m2c / cam_t_m2c and
    projected with cam_K, covers its full mask (the object alone) almost exactly."""
    import cv2
    import trimesh

    out = str(tmp_path / "bop")
    r = run_cli("num_images=3", "seed=4", "camera.width=320", "camera.height=240", "objects.count=[3,5]",
                "objects.scale=1", "progress=false", "formats=[coco,bop]", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    scene_dir = os.path.join(out, "bop", "train", "000000")
    cam = json.load(open(os.path.join(scene_dir, "scene_camera.json")))
    gt = json.load(open(os.path.join(scene_dir, "scene_gt.json")))
    info = json.load(open(os.path.join(scene_dir, "scene_gt_info.json")))
    checked = 0
    for im, objs in gt.items():
        K = np.array(cam[im]["cam_K"]).reshape(3, 3)
        for k, o in enumerate(objs):
            mesh = trimesh.load(os.path.join(out, "bop", "models", f"obj_{o['obj_id']:06d}.ply"))
            R, t = np.array(o["cam_R_m2c"]).reshape(3, 3), np.array(o["cam_t_m2c"])
            pts = mesh.vertices @ R.T + t  # millimetres, camera frame
            uv = pts[:, :2] / pts[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
            full = cv2.imread(os.path.join(scene_dir, "mask", f"{int(im):06d}_{k:06d}.png"), 0) > 0
            if full.sum() < 200 or info[im][k]["bbox_obj"] != info[im][k]["bbox_obj"]:
                continue
            ys, xs = np.nonzero(full)
            if xs.min() == 0 or ys.min() == 0 or xs.max() == full.shape[1] - 1 or ys.max() == full.shape[0] - 1:
                continue  # cut by the frame: the projection runs on past the mask
            # the projected model's extent equals the mask's within a pixel
            assert abs(uv[:, 0].min() - xs.min()) < 1.5 and abs(uv[:, 0].max() - xs.max()) < 1.5
            assert abs(uv[:, 1].min() - ys.min()) < 1.5 and abs(uv[:, 1].max() - ys.max()) < 1.5
            checked += 1
    assert checked >= 3
    # Scenes are split into folders of SCENE_SIZE indices (one folder's ground truth in memory):
    # with 2 per folder, the same ground truth spread over 000000/ and 000001/.
    from simgen.writers import bop, export
    from simgen.writers.coco import Coco

    whole = {f: json.load(open(os.path.join(scene_dir, f))) for f in ("scene_gt.json", "scene_camera.json")}
    monkeypatch.setattr(bop, "SCENE_SIZE", 2)
    export(out, Coco.from_doc(json.load(open(os.path.join(out, "annotations.json")))), ["bop"], {})
    split = os.path.join(out, "bop", "train")
    assert sorted(os.listdir(split)) == ["000000", "000001"]
    for f, data in whole.items():
        parts = [json.load(open(os.path.join(split, s, f))) for s in ("000000", "000001")]
        assert sorted(parts[0]) == ["0", "1"] and sorted(parts[1]) == ["2"] and {**parts[0], **parts[1]} == data
    assert os.path.isfile(os.path.join(split, "000001", "rgb", "000002.png"))
    r = run_cli("export", os.path.join(str(tmp_path), "nope"), "--to", "bop")
    assert r.returncode != 0


def test_bop_refuses_scaled_objects(dataset, tmp_path):
    d = str(tmp_path / "s")
    shutil.copytree(dataset, d, ignore=shutil.ignore_patterns("yolo", "voc"))
    r = run_cli("export", d, "--to", "bop")
    assert r.returncode != 0 and "scale other than 1" in r.stderr
    assert not os.path.exists(os.path.join(d, "bop"))


def test_coco_polygons_on_request(tmp_path):
    from pycocotools.coco import COCO
    from scipy.ndimage import binary_fill_holes

    from simgen.io import read_png

    out = str(tmp_path / "poly")
    r = run_cli("num_images=2", "camera.width=160", "camera.height=120", "objects.count=[3,6]",
                "progress=false", "coco.polygons=true", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    gt = COCO(os.path.join(out, "annotations.json"))
    for a in gt.anns.values():
        assert isinstance(a["segmentation"], list) and all(len(p) >= 6 for p in a["segmentation"])
        img = gt.imgs[a["image_id"]]
        # polygons are outer boundaries (documented: no holes), so compare with holes filled
        truth = binary_fill_holes(read_png(os.path.join(out, img["mask_file"])) == a["instance_id"])
        m = gt.annToMask(a).astype(bool)
        if truth.sum() >= 100:
            assert (m & truth).sum() / (m | truth).sum() > 0.8
    assert run_cli("validate", out).returncode == 0


@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_png_encoding_is_lossless_at_every_level(tmp_path, level):
    """Fast levels (simgen's own PNG writer: fixed row filter, zlib-ng) and slow ones
    (libpng's adaptive filters): lossless either way, read back by OpenCV and by Pillow (two
    decoders; Pillow checks every chunk's CRC), at every shape a filter has an edge case in."""
    from PIL import Image

    from simgen.io import encode_png, read_png

    rng = np.random.default_rng(level)
    images = {"rgb": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
              "u16": (np.arange(37 * 53, dtype=np.uint16).reshape(37, 53) * 31),
              "ids": rng.integers(0, 5, (37, 53)).astype(np.uint16),
              "u8": rng.integers(0, 256, (37, 53), dtype=np.uint8),
              "rgb 1x1": rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
              "rgb one row": rng.integers(0, 256, (1, 9, 3), dtype=np.uint8),
              "u16 one column": rng.integers(0, 65536, (9, 1), dtype=np.uint16),
              "u16 extremes": np.array([[0, 65535], [65535, 0], [256, 255]], dtype=np.uint16)}
    for name, img in images.items():
        path = tmp_path / "x.png"
        for labels in (False, True) if img.ndim == 2 else (False,):
            path.write_bytes(encode_png(img, level, labels=labels))
            back = read_png(str(path))
            assert back.dtype == img.dtype and (back == img).all(), (name, labels)
            with Image.open(path) as im:
                im.load()
                assert (np.asarray(im).astype(img.dtype) == img).all(), (name, labels)
    for bad in (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.float32), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match="encode_png takes"):
            encode_png(bad, level)


def test_coco_file_is_read_as_a_stream(dataset, tmp_path, monkeypatch):
    """simgen export reads annotations.json one value at a time: the same records as loading
    it whole, whatever the chunk boundaries (7 bytes: every value is cut somewhere), the white
    space or the characters (UTF-8 offsets); files laid out otherwise are loaded whole."""
    from simgen.writers import coco as C

    path = os.path.join(dataset, "annotations.json")
    whole = list(C.Coco.from_doc(coco(dataset)))
    monkeypatch.setattr(C._Stream, "CHUNK", 7)
    assert list(C.Coco.from_file(path)) == whole
    doc = coco(dataset)
    doc["categories"][0]["name"] += " — été"
    doc = {"annotations": doc["annotations"], "info": doc["info"], "images": doc["images"],
           "categories": doc["categories"]}  # categories after both arrays: the annotations are stepped over
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    ds = C.Coco.from_file(str(odd))
    assert ds.categories == doc["categories"] and list(ds) == whole
    for f in (path, str(odd)):  # random access through byte offsets (UTF-8 before them in odd.json)
        index = C.CocoIndex(f)
        assert [index[k] for k in range(len(index))] == whole
        assert index.categories == (doc if f == str(odd) else coco(dataset))["categories"]
        assert [index[int(k)][0]["split"] for k in index.of_split("val")] == ["val"] * sum(
            i["split"] == "val" for i in doc["images"])
    doc["annotations"] = doc["annotations"][::-1]
    odd.write_text(json.dumps(doc))
    with pytest.raises(C.OutOfOrder):
        list(C.Coco.from_file(str(odd)))
    with pytest.raises(ValueError):
        C.Coco.from_file(os.path.join(dataset, "config.yaml"))


def test_streamed_coco_memory_does_not_grow_with_the_file(tmp_path):
    import tracemalloc

    from simgen.writers.coco import Coco

    def peak(n):
        path = tmp_path / f"{n}.json"
        rle = "x" * 1000
        with open(path, "w") as f:
            f.write('{"info":{},"licenses":[],"categories":[{"id":1,"name":"a"}],"images":[')
            f.write(",".join(json.dumps({"id": i + 1, "index": i}) for i in range(n)))
            f.write('],"annotations":[')
            f.write(",".join(json.dumps({"id": 2 * i + k + 1, "image_id": i + 1, "segmentation": {"counts": rle}})
                             for i in range(n) for k in range(2)))
            f.write("]}")
        tracemalloc.start()
        try:
            count = sum(len(anns) for _, anns in Coco.from_file(str(path)))
            return tracemalloc.get_traced_memory()[1], count, os.path.getsize(path)
        finally:
            tracemalloc.stop()

    small, big = peak(1000), peak(10000)
    assert (small[1], big[1]) == (2000, 20000)
    # one 1 MB chunk and its text in flight, ~5 MB; the 21 MB file loaded whole takes ~100 MB
    assert big[0] < small[0] + 1_000_000 and big[0] < big[2] / 2


def test_export_of_a_reordered_or_broken_file_and_unwritable_folder(dataset, tmp_path):
    d = str(tmp_path / "e")
    shutil.copytree(dataset, d, ignore=shutil.ignore_patterns("yolo", "voc"))
    doc = coco(d)
    anns, last = doc["annotations"], doc["annotations"][-1]["image_id"]
    # another tool rewrote it, the last image's annotations first: loaded whole instead
    doc["annotations"] = [a for a in anns if a["image_id"] == last] + [a for a in anns if a["image_id"] != last]
    json.dump(doc, open(os.path.join(d, "annotations.json"), "w"))
    r = run_cli("export", d, "--to", "yolo,voc")
    assert r.returncode == 0, r.stderr
    for fmt in ("yolo", "voc"):
        assert_same_tree(os.path.join(dataset, fmt), os.path.join(d, fmt))
    shutil.rmtree(os.path.join(d, "voc"))
    open(os.path.join(d, "voc.tmp-export"), "w").close()  # a file where the export's folder goes
    r = run_cli("export", d, "--to", "voc")
    assert r.returncode == 5 and r.stderr.count("\n") == 1 and "cannot write the export" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(d, "voc"))
    os.unlink(os.path.join(d, "voc.tmp-export"))
    missing = os.path.join(d, "images", sorted(os.listdir(os.path.join(d, "images")))[2])
    os.unlink(missing)  # an image the annotations name is gone: said as such, not "free space"
    r = run_cli("export", d, "--to", "yolo,voc")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and f"'{missing}', named in" in r.stderr, r.stderr
    assert "is missing" in r.stderr and "free space" not in r.stderr and not os.path.exists(os.path.join(d, "voc"))
    open(os.path.join(d, "annotations.json"), "w").write('{"images": [')
    r = run_cli("export", d, "--to", "yolo")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not a COCO instances file" in r.stderr, r.stderr


def test_validate_names_each_corruption_in_one_or_several_processes(dataset, tmp_path, monkeypatch):
    import cv2

    from simgen import validate
    from simgen.io import read_png

    monkeypatch.setattr(validate, "CHUNK", 3)  # 8 images: the first chunk here, two in the processes
    for processes in (1, 2):
        assert validate.validate_dataset(dataset, processes=processes) == []
    d = tmp_path / "bad"
    shutil.copytree(dataset, d)
    doc = coco(d)
    a0, a1 = [a for a in doc["annotations"] if a["image_id"] == doc["images"][0]["id"]][:2]
    a0["segmentation"], a1["segmentation"] = a1["segmentation"], a0["segmentation"]
    by_img = {}
    for a in doc["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    b = by_img[doc["images"][1]["id"]][0]
    b["bbox"][2] -= 1
    c = by_img[doc["images"][2]["id"]][0]
    c["area"] += 1
    e = by_img[doc["images"][3]["id"]][0]
    e["category_id"] = 99
    f = by_img[doc["images"][4]["id"]][0]
    f["id"] = by_img[doc["images"][4]["id"]][1]["id"]
    json.dump(doc, open(d / "annotations.json", "w"))
    g = doc["images"][5]
    mask = read_png(str(d / g["mask_file"]))
    mask[0, 0] = 999  # an id nothing is annotated with
    ys, xs = np.nonzero(mask == by_img[g["id"]][0]["instance_id"])
    mask[ys[0], xs[0]] = 0  # one pixel fewer for that object
    os.unlink(d / g["mask_file"])  # (a hard link to the original)
    cv2.imwrite(str(d / g["mask_file"]), mask)
    os.unlink(d / "images" / doc["images"][6]["file_name"])
    h_ = doc["images"][7]
    k = by_img[h_["id"]][0]
    mask = read_png(str(d / h_["mask_file"]))
    x, y, w, h = k["bbox"]
    corners = [(0, 0), (0, mask.shape[1] - 1), (mask.shape[0] - 1, 0), (mask.shape[0] - 1, mask.shape[1] - 1)]
    far = max(corners, key=lambda rc: abs(rc[0] - (y + h / 2)) / h + abs(rc[1] - (x + w / 2)) / w)
    mask[far] = k["instance_id"]  # a stray pixel of that object outside its box: its RLE no longer matches
    os.unlink(d / h_["mask_file"])
    cv2.imwrite(str(d / h_["mask_file"]), mask)
    expected = [f"duplicate annotation ids: [{f['id']}]",
                f"annotation {a0['id']} ", f"annotation {a1['id']} ", "segmentation differs",
                f"annotation {b['id']} ", "is not the tight box",
                f"annotation {c['id']} ", "but the mask has",
                f"annotation {e['id']}: unknown category_id 99",
                "ids [999] have no annotation", f"annotation {by_img[g['id']][0]['id']} ",
                f"images/{doc['images'][6]['file_name']}: missing or unreadable",
                f"annotation {k['id']} ({h_['file_name']}, instance {k['instance_id']}): segmentation differs"]
    for processes in (1, 2):
        problems = validate.validate_dataset(str(d), processes=processes)
        missing = [x for x in expected if x not in "\n".join(problems)]
        assert not missing and problems[0] == expected[0], (missing, problems)
    # annotations moved away from their images: loaded whole, the stray one named
    doc["annotations"].insert(0, dict(doc["annotations"][0], id=10 ** 6, image_id=777))
    json.dump(doc, open(d / "annotations.json", "w"))
    problems = validate.validate_dataset(str(d), processes=2)
    assert problems[0] == f"annotation {10 ** 6}: unknown image_id 777"
    assert not [x for x in expected[1:] if x not in "\n".join(problems)]


def test_depth_png_values_round_to_millimetres_and_clear_what_cannot_be_stored():
    from simgen.writers.buffers import depth_to_u16

    depth = np.array([[0.0, 0.0004, 0.0005, 0.0015, 1.2344999, 65.535, 65.5355, 70.0],
                      [-0.01, np.nan, np.inf, -np.inf, 3.0, 0.9996, 2.5e-4, 1e-9]], dtype=np.float32)
    want = np.rint(depth.astype(np.float64) * 1000.0)
    want[~np.isfinite(want) | (want < 0) | (want > 65535)] = 0
    got = depth_to_u16(depth)
    assert got.dtype == np.uint16 and (got == want.astype(np.uint16)).all()
    assert got[0].tolist()[:4] == [0, 0, 1, 2] and got[1, :4].tolist() == [0, 0, 0, 0] and got[0, 7] == 0
