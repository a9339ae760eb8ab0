"""preview and report: statistics with known values, every quality flag on a dataset built to
trigger it (silent on a clean one), and the HTML page loaded in a real browser."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import run_cli

from simgen.annotate import encode_rle
from simgen.io import atomic_write_bytes, encode_png
from simgen.report import quality_flags, statistics

W, H = 160, 120


def build(root, images, categories=("a", "b")):
    """images: list of (rgb (H,W,3) uint8, [(category, x, y, w, h, visibility, truncation)], settle).
    Objects are filled rectangles in the mask; returns the dataset path."""
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    cats = {c: k + 1 for k, c in enumerate(categories)}
    doc = {"images": [], "annotations": [], "categories": [{"id": v, "name": k} for k, v in cats.items()]}
    for i, (rgb, objs, settle) in enumerate(images):
        name = f"{i:06d}.png"
        inst = np.zeros((H, W), np.uint16)
        for k, (_c, x, y, w, h, _vis, _tr) in enumerate(objs):
            inst[y:y + h, x:x + w] = k + 1
        atomic_write_bytes(os.path.join(root, "images", name), encode_png(rgb))
        atomic_write_bytes(os.path.join(root, "masks", name), encode_png(inst))
        doc["images"].append({"id": i + 1, "index": i, "file_name": name, "width": W, "height": H,
                              "mask_file": f"masks/{name}", "settle": settle, "split": "train"})
        for k, (c, x, y, w, h, vis, tr) in enumerate(objs):
            m = inst == k + 1
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i + 1, "category_id": cats[c],
                                       "instance_id": k + 1, "bbox": [x, y, w, h], "area": int(m.sum()),
                                       "segmentation": encode_rle(m), "iscrowd": 0, "visibility": vis,
                                       "truncation": tr})
    json.dump(doc, open(os.path.join(root, "annotations.json"), "w"))
    return root


def noise(seed, level=128, spread=60):
    rng = np.random.default_rng(seed)
    base = rng.integers(level - spread, level + spread, (H // 8, W // 8, 3)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))


OK = {"converged": True, "steps": 100, "attempts": 1}


def clean(tmp_path):
    return build(str(tmp_path / "clean"), [
        (noise(1), [("a", 10, 10, 20, 30, 1.0, 0.0), ("b", 100, 60, 40, 50, 0.5, 0.2)], OK),
        (noise(2), [("a", 0, 0, 40, 40, 0.8, 0.0)], OK),
        (noise(3), [("b", 70, 40, 12, 12, 0.25, 0.6), ("a", 5, 90, 10, 10, 1.0, 0.0)], OK),
        (noise(4), [("b", 20, 20, 100, 90, 1.0, 0.0)], OK),
    ])


def test_statistics_have_the_known_values(tmp_path):
    s = statistics(clean(tmp_path))
    assert s["images"] == 4 and s["instances"] == 6
    assert s["instances_per_class"] == {"a": 3, "b": 3} and s["images_per_class"] == {"a": 3, "b": 3}
    assert s["images_with_n_instances"] == [0, 2, 2]  # 2, 1, 2 and 1 instances
    # areas 600, 2000, 1600, 144, 100, 9000: small < 1024 <= medium < 9216 <= large
    assert s["box_sizes"] == {"small": 3, "medium": 3, "large": 0}
    heat = np.array(s["center_heatmap"])
    assert heat.sum() == 6 and heat[int(25 / H * 16), int(20 / W * 16)] >= 1  # centre of the first box
    assert s["visibility_hist"]["counts"][2] == 1 and s["visibility_hist"]["counts"][-1] == 3
    assert sum(s["truncation_hist"]["counts"]) == 6 and s["truncation_hist"]["counts"][0] == 4
    # areas 600, 2000, 1600, 144, 100, 9000: sqrt 24.5, 44.7, 40, 12, 10, 94.9 in bins of 8 px
    counts = s["sqrt_area_hist"]["counts"]
    assert sum(counts) == 6 and [k for k, c in enumerate(counts) for _ in range(c)] == [1, 1, 3, 5, 5, 11]
    bright = [noise(k).mean() / 255 for k in (1, 2, 3, 4)]
    assert s["mean_brightness"] == pytest.approx(np.mean(bright), abs=1e-4)
    expect = np.histogram(bright, bins=s["brightness_hist"]["edges"])[0].tolist()
    assert s["brightness_hist"]["counts"] == expect and sum(expect) == 4


def test_report_streams_simgen_files_and_loads_others_whole(tmp_path, monkeypatch, caplog):
    """A file laid out as simgen writes it is never loaded whole (a million images' JSON would
    not fit in memory); one another tool reordered is, with the same statistics and flags."""
    import simgen.report as report

    d = clean(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(report.json, "load", lambda *a, **k: pytest.fail("loaded whole"))
        stats, flags = report.survey(d)
    path = os.path.join(d, "annotations.json")
    doc = json.load(open(path))
    doc["annotations"].reverse()
    doc["images"].reverse()
    json.dump({"categories": doc["categories"], "annotations": doc["annotations"], "images": doc["images"]},
              open(path, "w"), indent=2)
    assert report.survey(d) == (stats, flags) and stats["instances"] == 6
    doc["annotations"].append(dict(doc["annotations"][0], id=99, image_id=77))  # an image the file lacks
    json.dump(doc, open(path, "w"))
    assert report.survey(d) == (stats, flags)  # left out, with a warning
    assert "1 annotation(s) of images not in the file left out" in caplog.text


def test_truncated_annotations_are_one_line_errors_for_report_and_preview(tmp_path):
    """A cut-off annotations.json (a copy stopped half-way) is found while streaming, after
    its start parsed: report and preview name the file in one line and write nothing."""
    d = clean(tmp_path)
    path = os.path.join(d, "annotations.json")
    text = open(path).read()
    open(path, "w").write(text[:len(text) * 2 // 3])
    out = str(tmp_path / "sheet.png")
    for args in (("report", d), ("preview", d, "--out", out)):
        r = run_cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"{path} is not a COCO instances file" in lines[0]
    assert not os.path.exists(os.path.join(d, "report")) and not os.path.exists(out)


def test_class_names_are_drawn_as_plain_text_not_mathtext(tmp_path):
    d = build(str(tmp_path / "tex"), [(noise(1), [("$\\nosuchcmd{x$", 10, 10, 20, 30, 1.0, 0.0),
                                                  ("$\\frac{a}{b}$", 60, 50, 30, 30, 1.0, 0.0)], OK)],
              categories=("$\\nosuchcmd{x$", "$\\frac{a}{b}$"))
    r = run_cli("report", d)
    assert r.returncode == 0, r.stderr
    assert "$\\frac{a}{b}$" in json.load(open(os.path.join(d, "report", "report.json")))["statistics"]["classes"]


@pytest.mark.parametrize("args,needle", [(("--n", "0"), "--n must be >= 1"), (("--n", "-3"), "--n must be >= 1"),
                                         (("--indices", "a,b"), "--indices takes image indices"),
                                         (("--indices", "-1"), "--indices takes image indices >= 0")])
def test_preview_bad_arguments_are_one_line_errors(tmp_path, args, needle):
    d = clean(tmp_path)
    r = run_cli("preview", d, *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(d, "preview.png"))


def test_quality_flags_silent_on_a_clean_dataset(tmp_path):
    assert all(not v for v in quality_flags(clean(tmp_path)).values())


def test_each_quality_flag_fires(tmp_path):
    black = np.full((H, W, 3), 3, np.uint8)
    white = np.full((H, W, 3), 255, np.uint8)
    d = build(str(tmp_path / "bad"), [
        (noise(1), [("a", 10, 10, 20, 30, 1.0, 0.0)], OK),                      # 0 fine
        (noise(1), [("a", 12, 10, 20, 30, 1.0, 0.0)], OK),                      # 1 duplicate of 0
        (black, [("a", 10, 10, 20, 30, 1.0, 0.0)], OK),                         # 2 near-black
        (white, [("a", 10, 10, 20, 30, 1.0, 0.0)], OK),                         # 3 blown out
        (noise(5), [], OK),                                                     # 4 empty
        (noise(6), [("a", 10, 10, 2, 30, 1.0, 0.0)], OK),                       # 5 degenerate box
        (noise(7), [("a", 10, 10, 20, 30, 1.0, 0.0)], dict(OK, below_floor=[1])),  # 6 fell through
        (noise(8), [("a", 10, 10, 20, 30, 1.0, 0.0)], dict(OK, converged=False)),  # 7 never settled
    ])
    f = quality_flags(d)
    assert f["near_duplicates"] == [["000000.png", "000001.png"]]
    assert f["near_black"] == ["000002.png"] and f["blown_out"] == ["000003.png"]
    assert f["no_labeled_object"] == ["000004.png"] and f["degenerate_boxes"] == ["000005.png"]
    assert f["fell_through_floor"] == ["000006.png"] and f["never_settled"] == ["000007.png"]
    assert [c["class"] for c in f["class_below_share"]] == ["b"]  # no "b" at all: far below 1/2


@pytest.mark.slow
def test_report_html_loads_in_a_browser(tmp_path):
    d = clean(tmp_path)
    real = build(str(tmp_path / "real"), [(noise(9), [("a", 30, 30, 50, 40, 1.0, 0.0)], OK)])
    r = run_cli("report", d, "--against", os.path.join(real, "annotations.json"), "--real-images",
                os.path.join(real, "images"))
    assert r.returncode == 0, r.stderr
    page = os.path.join(d, "report", "index.html")
    doc = json.load(open(os.path.join(d, "report", "report.json")))
    assert doc["statistics"]["instances"] == 6 and doc["real"]["instances"] == 1
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", f"file://{page}"], capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert 'data-broken-images="0"' in dom, out.stderr[-500:]
    n = int(dom.split('data-images="')[1].split('"')[0])
    assert n >= 8  # every plot is an <img> that loaded


@pytest.mark.slow
def test_preview_contact_sheet(tmp_path):
    from simgen.io import read_png

    d = clean(tmp_path)
    out = str(tmp_path / "p.png")
    r = run_cli("preview", d, "--indices", "0,2", "--instances", "--cols", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    img = read_png(out)
    assert img.shape == (H, 4 * W, 3)  # one row of two images, each beside its instance map
    r = run_cli("preview", d, "--indices", "9")
    assert r.returncode != 0 and "no image with index 9" in r.stderr
    # Read through the byte-offset index, or loaded whole from a reordered file: the same records.
    from simgen.preview import contact_sheet

    sheets = [contact_sheet(d, indices=[k], amodal=True, instances=True) for k in (2, 0)]
    path = os.path.join(d, "annotations.json")
    doc = json.load(open(path))
    doc["annotations"].reverse()
    json.dump(doc, open(path, "w"))
    assert not np.array_equal(sheets[0], sheets[1])
    assert all(np.array_equal(s, contact_sheet(d, indices=[k], amodal=True, instances=True))
               for s, k in zip(sheets, (2, 0)))


@pytest.mark.parametrize("bits", [0, 3, 6])
def test_near_duplicates_are_every_close_pair(bits):
    """The slice index finds exactly the pairs that comparing every pair finds."""
    from simgen.report import near_duplicates

    rng = np.random.default_rng(bits)
    hashes = []
    for b in rng.integers(0, 2 ** 63, size=200, dtype=np.int64).tolist():
        hashes.append(b)
        for _ in range(2):  # near copies: 0-7 bits flipped
            hashes.append(b ^ sum(1 << int(k) for k in rng.choice(64, size=rng.integers(0, 8), replace=False)))
    hashes += [hashes[5]] * 3 + [2 ** 64 - 1, 0]  # exact copies; the extremes
    every = [(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
             if bin(hashes[i] ^ hashes[j]).count("1") <= bits]
    assert near_duplicates(hashes, bits) == every and len(every) > 40
