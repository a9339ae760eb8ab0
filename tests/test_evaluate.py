"""simgen evaluate against detectors whose failures are known: predictions made from the
ground truth with one kind of object left out must rank exactly that slice worst, with the
recall the omission implies."""
import json
import os

import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ev") / "d")
    r = run_cli("num_images=30", "seed=2", "scene=bin", "camera.width=320", "camera.height=240", "progress=false",
                "edge_cases.low_light={p:0.3}", f"output_dir={out}")
    assert r.returncode == 0, r.stderr
    return out, json.load(open(os.path.join(out, "annotations.json")))


def _evaluate(tmp_path, out, dets, *args):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(dets))
    r = run_cli("evaluate", out, "--predictions", str(path), "--out", str(tmp_path / "ev"), *args)
    assert r.returncode == 0, r.stderr
    return json.load(open(tmp_path / "ev" / "eval.json"))


def _as_detections(anns, keep):
    return [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=0.9)
            for a in anns if keep(a)]


def _slice(res, name, value):
    (row,) = [s for s in res["slices"][name] if s["value"] == value]
    return row


def test_objects_below_half_visible_left_out_rank_worst(data, tmp_path):
    out, d = data
    res = _evaluate(tmp_path, out, _as_detections(d["annotations"], lambda a: a["visibility"] >= 0.5))
    positives = [a for a in d["annotations"] if not a["iscrowd"]]
    low = [a for a in positives if a["visibility"] < 0.5]
    assert len(low) >= 30 and res["instances"] == len(positives)
    assert res["recall"] == pytest.approx(1 - len(low) / len(positives), abs=1e-4)
    assert {(w["slice"], w["value"]) for w in res["worst"][:2]} == {("visibility", "0-0.25"), ("visibility", "0.25-0.5")}
    for v in ("0-0.25", "0.25-0.5"):
        assert _slice(res, "visibility", v)["recall"] == 0.0
    for v in ("0.5-0.75", "0.75-1"):
        row = _slice(res, "visibility", v)
        assert row["recall"] == 1.0 and row["ci95"] == [1.0, 1.0]
    # a slice between: its interval holds its recall and is not a point
    row = _slice(res, "difficulty", "beyond_hard")
    assert 0 < row["recall"] < 1 and row["ci95"][0] < row["recall"] < row["ci95"][1]
    assert [s["value"] for s in res["slices"]["visibility"]] == ["0-0.25", "0.25-0.5", "0.5-0.75", "0.75-1"]
    # the page: one plot per slice and the sheet of missed objects, each of them below half visible
    page = open(tmp_path / "ev" / "index.html").read()
    assert page.count("data:image/png;base64,") == len(res["slices"]) + 1 and "Missed objects" in page
    vis = {a["id"]: a["visibility"] for a in d["annotations"]}
    assert res["missed_examples"] and all(vis[e["id"]] < 0.5 for e in res["missed_examples"])


def test_one_class_left_out(data, tmp_path):
    out, d = data
    cats = {c["id"]: c["name"] for c in d["categories"]}
    counts = {}
    for a in d["annotations"]:
        counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
    gone = max(counts, key=counts.get)
    res = _evaluate(tmp_path, out, _as_detections(d["annotations"], lambda a: a["category_id"] != gone))
    assert _slice(res, "class", cats[gone])["recall"] == 0.0 and res["worst"][0]["value"] == cats[gone]
    assert res["per_class"][cats[gone]]["ap"] == 0.0
    assert all(v["ap"] == pytest.approx(1.0) for c, v in res["per_class"].items() if c != cats[gone] and v["ap"] is not None)


def test_low_light_images_left_out(data, tmp_path):
    out, d = data
    dark = {im["id"] for im in d["images"] if "low_light" in im["conditions"]}
    assert 0 < len(dark) < len(d["images"])
    res = _evaluate(tmp_path, out, _as_detections(d["annotations"], lambda a: a["image_id"] not in dark))
    assert _slice(res, "condition", "low_light")["recall"] == 0.0
    assert res["worst"][0]["slice"] == "condition" and res["worst"][0]["value"] == "low_light"
    # the other conditions share images with low light: only 'none' is untouched
    assert _slice(res, "condition", "none")["recall"] == 1.0


def test_a_coco_file_with_fewer_fields_gets_the_slices_it_has(data, tmp_path):
    out, d = data
    keep = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")
    plain = {"images": [{k: im[k] for k in ("id", "file_name", "width", "height")} for im in d["images"]],
             "annotations": [{k: a[k] for k in keep} for a in d["annotations"]], "categories": d["categories"]}
    (tmp_path / "real.json").write_text(json.dumps(plain))
    (tmp_path / "p.json").write_text(json.dumps(_as_detections(d["annotations"], lambda a: True)))
    r = run_cli("evaluate", str(tmp_path / "real.json"), "--predictions", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr
    res = json.load(open(tmp_path / "evaluate" / "eval.json"))
    assert set(res["slices"]) == {"class", "size", "objects_in_image"} and res["recall"] == 1.0
    assert res["coco"]["map"] == pytest.approx(1.0)


@pytest.mark.parametrize("preds, words", [
    ("not json", "is not JSON"),
    ('{"a": 1}', "not a list of detections"),
    ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "needs image_id, category_id, bbox and score"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}]', "bbox must be [x, y, w, h]"),
    ('[{"image_id": 99999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "is not in the dataset"),
    ('[{"image_id": 1, "category_id": 999, "bbox": [0, 0, 1, 1], "score": 1}]', "not in the dataset's categories"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}]', "score must be a number"),
])
def test_bad_predictions_are_named(data, tmp_path, preds, words):
    out, _ = data
    (tmp_path / "p.json").write_text(preds)
    r = run_cli("evaluate", out, "--predictions", str(tmp_path / "p.json"), "--out", str(tmp_path / "ev"))
    assert r.returncode == 1 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "ev").exists()


def test_bad_arguments_are_named(data, tmp_path):
    out, d = data
    (tmp_path / "p.json").write_text("[]")
    r = run_cli("evaluate", out, "--predictions", str(tmp_path / "p.json"), "--iou", "0.52")
    assert r.returncode == 1 and "0.50, 0.55" in r.stderr
    r = run_cli("evaluate", str(tmp_path / "nowhere"), "--predictions", str(tmp_path / "p.json"))
    assert r.returncode == 1 and "no such file" in r.stderr
    res = _evaluate(tmp_path, out, [])  # no detections: everything missed, not a crash
    assert res["recall"] == 0.0 and res["coco"]["map"] == 0.0


def test_focus_raises_the_missed_class_share_in_the_next_dataset(tmp_path):
    """A detector that never finds cubes: focus doubles the cubes' share (the cap) and keeps
    every other class at least half its share, measured on the new dataset's labels (here
    0.140 -> 0.334: x2 in expectation, and both datasets' sampling noise)."""
    # (100 images of ~8 objects: each dataset's cube share has ~9% sampling noise)
    common = ["num_images=100", "camera.width=128", "camera.height=96", "progress=false",
              "objects.asset_sets=[primitives]", "objects.count=[6,10]"]
    a = str(tmp_path / "a")
    assert run_cli(*common, "seed=1", f"output_dir={a}").returncode == 0
    d = json.load(open(os.path.join(a, "annotations.json")))
    cube = next(c["id"] for c in d["categories"] if c["name"] == "cube")
    res = _evaluate(tmp_path, a, _as_detections(d["annotations"], lambda x: x["category_id"] != cube))
    r = run_cli("focus", str(tmp_path / "ev" / "eval.json"), "--factor", "2", "--floor", "0.5")
    assert r.returncode == 0, r.stderr
    text = open(tmp_path / "ev" / "focus.yaml").read()
    assert "#   cube: recall 0.000" in text and "objects.class_weights:" in text

    def shares(anns):
        names = {c["id"]: c["name"] for c in d["categories"]}
        n = [names[x["category_id"]] for x in anns if not x["iscrowd"]]
        return {c: n.count(c) / len(n) for c in set(n)}

    before = shares(d["annotations"])
    b = str(tmp_path / "b")
    r = run_cli(*common, "seed=2", f"focus={tmp_path / 'ev' / 'focus.yaml'}", f"output_dir={b}")
    assert r.returncode == 0, r.stderr
    after = shares(json.load(open(os.path.join(b, "annotations.json")))["annotations"])
    assert res["slices"]["class"] and 1.6 < after["cube"] / before["cube"] < 2.5, (before["cube"], after["cube"])
    assert all(after[c] > 0.4 * before[c] for c in before if c != "cube")


def test_focus_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "e.json").write_text('{"a": 1}')
    r = run_cli("focus", str(tmp_path / "e.json"))
    assert r.returncode == 1 and "not an eval.json" in r.stderr
    r = run_cli("num_images=1", f"focus={tmp_path / 'nope.yaml'}", f"output_dir={tmp_path / 'o'}")
    assert r.returncode == 1 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "f.yaml").write_text("objects.class_weights: {nosuchclass: 2.0}\n")
    r = run_cli("num_images=1", f"focus={tmp_path / 'f.yaml'}", f"output_dir={tmp_path / 'o'}")
    assert r.returncode == 2 and "nosuchclass" in r.stderr


def test_dark_objects_left_out_make_the_dark_brightness_slice(data, tmp_path):
    """Brightness: the mean luminance of each object's box in the image (read here with
    OpenCV): a detector blind to boxes darker than 0.2 has recall 0 there and 1 elsewhere."""
    import cv2

    out, d = data
    names = {im["id"]: im["file_name"] for im in d["images"]}

    def dark(a):
        bgr = cv2.imread(os.path.join(out, "images", names[a["image_id"]]))
        x, y, w, h = a["bbox"]
        g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[y:y + h, x:x + w].astype(float) / 255.0
        return g.mean() < 0.2

    res = _evaluate(tmp_path, out, _as_detections(d["annotations"], lambda a: not dark(a)))
    rows = {s["value"]: s for s in res["slices"]["brightness"]}
    assert rows["0-0.2"]["recall"] < 0.05 and rows["0-0.2"]["instances"] >= 20
    assert all(r["recall"] > 0.97 for v, r in rows.items() if v in ("0.4-0.6", "0.6-0.8", "0.8-1"))
