"""A user's files are never lost and simgen's own records never lie: overwrite removes only
what simgen wrote, corrupt records are recovered from, temporaries are cleaned, two runs
into one folder cannot both write it, and every file honours the umask."""
import json
import os
import shutil
import subprocess
import time

import pytest
from conftest import ROOT, SIMGEN, run_cli
from test_cli import BASE as PLAIN
from test_cli import assert_same_dataset

from simgen import dataset
from simgen.dataset import RunLock
from simgen.errors import OutputError
from simgen.io import AtomicFile, atomic_write_bytes

BASE = [*PLAIN, "objects.scale=1"]  # (the reference dataset has a BOP export: models of one size)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ref") / "data")
    r = run_cli(*BASE, f"output_dir={out}", "workers=1", "formats=[coco,bop]")
    assert r.returncode == 0, r.stderr
    r = run_cli("report", out)
    assert r.returncode == 0, r.stderr
    return out


def _copy(reference, tmp_path, name="copy"):
    return shutil.copytree(reference, str(tmp_path / name), symlinks=True)


def _one_line_error(r, needle):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simgen: error:"), r.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def _tree(d):
    return sorted(os.path.relpath(os.path.join(p, f), d) for p, _, fs in os.walk(d) for f in fs)


def test_overwrite_refuses_a_folder_without_simgen_records_and_removes_nothing(tmp_path):
    d = tmp_path / "d"
    (d / "images").mkdir(parents=True)
    (d / "images" / "IMG_0001.jpg").write_bytes(b"a photo")
    (d / "config.yaml").write_text("mine: true\n")
    before = _tree(d)
    r = run_cli(*BASE, f"output_dir={d}", "num_images=2", "overwrite=true")
    _one_line_error(r, "no simgen records")
    assert "overwrite=true will not delete" in r.stderr
    assert _tree(d) == before and (d / "config.yaml").read_text() == "mine: true\n"


def test_overwrite_with_another_config_removes_exactly_what_simgen_wrote(reference, tmp_path):
    d = _copy(reference, tmp_path)
    assert {"bop", "report"} <= set(dataset.owned(d))
    user = ["notes.txt", "images/IMG_0001.jpg", "masks/readme.md", "images/000001-edited.png"]
    for rel in user:
        with open(os.path.join(d, rel), "w") as f:
            f.write("the user's")
    r = run_cli(*BASE, f"output_dir={d}", "seed=6", "num_images=3", "overwrite=true")
    assert r.returncode == 0, r.stderr
    for rel in user:
        assert open(os.path.join(d, rel)).read() == "the user's", rel
    assert not os.path.exists(os.path.join(d, "bop")) and not os.path.exists(os.path.join(d, "report"))
    assert sorted(os.listdir(os.path.join(d, "images"))) == ["000000.png", "000001-edited.png", "000001.png",
                                                            "000002.png", "IMG_0001.jpg"]
    assert json.load(open(os.path.join(d, "annotations.json")))["info"]["seed"] == 6
    assert run_cli("validate", d).returncode == 0


def test_overwrite_does_not_follow_a_symlinked_images_folder(reference, tmp_path):
    d = _copy(reference, tmp_path)
    elsewhere = shutil.move(os.path.join(d, "images"), str(tmp_path / "elsewhere"))
    os.symlink(elsewhere, os.path.join(d, "images"))
    before = _tree(elsewhere)
    r = run_cli(*BASE, f"output_dir={d}", "seed=6", "overwrite=true")
    _one_line_error(r, "is a symbolic link")
    assert _tree(elsewhere) == before and os.path.exists(os.path.join(d, "annotations.json"))


def test_corrupt_part_records_are_made_again_byte_identical(reference, tmp_path):
    d = _copy(reference, tmp_path)
    parts = os.path.join(d, ".simgen", "parts")
    text = open(os.path.join(parts, "000001.json"), "rb").read()
    open(os.path.join(parts, "000001.json"), "wb").write(text[: len(text) // 2])  # truncated
    open(os.path.join(parts, "000002.json"), "wb").close()  # empty
    open(os.path.join(parts, "000003.json"), "w").write("{}")
    shutil.copyfile(os.path.join(parts, "000005.json"), os.path.join(parts, "000004.json"))  # another image's
    open(os.path.join(parts, "000005.json"), "wb").write(b"\x89PNG\x00\xff")  # binary
    r = run_cli(*BASE, f"output_dir={d}", "formats=[coco,bop]")
    assert r.returncode == 0, r.stderr
    assert "5 corrupt part record(s)" in r.stderr and "Traceback" not in r.stderr
    assert_same_dataset(reference, d)
    for i in range(6):
        assert open(os.path.join(parts, f"{i:06d}.json"), "rb").read() == \
            open(os.path.join(reference, ".simgen", "parts", f"{i:06d}.json"), "rb").read()


def test_merge_of_a_corrupt_part_is_one_line_naming_the_file(reference, tmp_path):
    d = _copy(reference, tmp_path)
    open(os.path.join(d, ".simgen", "parts", "000003.json"), "w").write("{}")
    r = run_cli("merge", d)
    _one_line_error(r, "000003.json is corrupt")
    assert "run the command that made the dataset again" in r.stderr


def test_corrupt_run_record_is_rebuilt_for_the_same_config_and_never_wipes_for_another(reference, tmp_path):
    d = _copy(reference, tmp_path)
    run_json = os.path.join(d, ".simgen", "run.json")
    good = open(run_json, "rb").read()
    open(run_json, "wb").write(good[:40])
    r = run_cli(*BASE, f"output_dir={d}", "seed=6")  # another config: says what is corrupt, removes nothing
    _one_line_error(r, "run.json is corrupt")
    assert "run the command that made them again" in r.stderr and "its images are kept" in r.stderr
    assert _tree(d) == _tree(reference)
    r = run_cli(*BASE, f"output_dir={d}", "formats=[coco,bop]")  # the same config: rebuilt, every image kept
    assert r.returncode == 0, r.stderr
    assert "6 kept" in r.stdout and "rebuilt from config.yaml" in r.stderr
    assert json.loads(open(run_json).read()) == json.loads(good)
    assert_same_dataset(reference, d)


def test_temporaries_of_a_failed_merge_are_cleaned_and_nothing_else(reference, tmp_path):
    d = _copy(reference, tmp_path)
    leftovers = [".tmp-1a2b3c-annotations.json", ".tmp-77aa-run_summary.json", ".tmp-9f-annotations_val.json",
                 "bop.tmp-export/x.json", "bop.old-export/y.json", ".simgen/.tmp-0e-run.json"]
    keep = [".tmp-mine", "notes.tmp-export/z", ".tmp-aa-notes.txt"]
    for rel in leftovers + keep:
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        open(os.path.join(d, rel), "w").write("x")
    r = run_cli(*BASE, f"output_dir={d}", "formats=[coco,bop]")
    assert r.returncode == 0, r.stderr
    for rel in leftovers:
        assert not os.path.exists(os.path.join(d, rel.split("/")[0] if "export" in rel else rel)), rel
    for rel in keep:
        assert os.path.exists(os.path.join(d, rel)), rel
    assert_same_dataset(reference, d)


def test_a_second_run_into_a_busy_folder_refuses_naming_the_holder(tmp_path):
    d = str(tmp_path / "busy")
    first = subprocess.Popen([SIMGEN, *BASE, "num_images=40", f"output_dir={d}", "workers=1"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = os.path.join(d, ".simgen", "lock")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(lock) and open(lock).read()):
        time.sleep(0.05)
    second = run_cli(*BASE, "num_images=40", f"output_dir={d}", "workers=1")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    _one_line_error(second, f"in use by simgen pid {first.pid}")
    assert "40 made" in out


def test_run_lock_exclusive_for_a_whole_run_shared_between_other_shards(tmp_path):
    d = str(tmp_path / "locks")
    whole, s0, s1 = RunLock(d, d), RunLock(d, d, (0, 2)), RunLock(d, d, (1, 2))
    s0.acquire()
    s1.acquire()  # shards of one run write side by side
    with pytest.raises(OutputError, match="in use by"):
        RunLock(d, d, (0, 2)).acquire()  # the same shard twice
    with pytest.raises(OutputError, match="in use by"):
        whole.acquire()
    s0.release()
    s1.release()
    whole.acquire()
    with pytest.raises(OutputError, match=f"in use by simgen pid {os.getpid()}"):
        RunLock(d, d).acquire()
    with pytest.raises(OutputError, match="in use by"):
        RunLock(d, d, (1, 2)).acquire()
    whole.release()
    assert dataset.is_empty(d)  # a run that died holding only the lock leaves the folder usable


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_dataset_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(str(tmp_path / "a.png"), b"x")
        with AtomicFile(str(tmp_path / "b.json"), "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    for name in ("a.png", "b.json"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == mode


def test_export_and_report_do_not_replace_a_folder_simgen_did_not_write(reference, tmp_path):
    d = _copy(reference, tmp_path)
    os.makedirs(os.path.join(d, "voc"))
    open(os.path.join(d, "voc", "mine.xml"), "w").write("the user's")
    r = run_cli("export", d, "--to", "voc")
    _one_line_error(r, "exists and simgen did not write it")
    assert os.listdir(os.path.join(d, "voc")) == ["mine.xml"]
    r = run_cli("report", d, "--out", os.path.join(d, "voc"))
    _one_line_error(r, "exists and simgen did not write it")
    r = run_cli("export", d, "--to", "yolo")  # a new folder: written and recorded
    assert r.returncode == 0, r.stderr
    assert "yolo" in dataset.owned(d) and "voc" not in dataset.owned(d)


def test_validate_flags_an_export_folder_left_from_another_config(reference, tmp_path):
    d = _copy(reference, tmp_path)
    assert run_cli("validate", d).returncode == 0
    run_json = os.path.join(d, ".simgen", "run.json")
    t = os.stat(run_json).st_mtime
    os.utime(os.path.join(d, "bop"), (t - 60, t - 60))
    r = run_cli("validate", d)
    assert r.returncode != 0 and "bop/ is older than this dataset's run record" in r.stdout


def test_validate_warns_when_a_distractor_is_also_a_class(tmp_path):
    d = str(tmp_path / "shared")
    r = run_cli(*PLAIN, "num_images=2", f"output_dir={d}", "distractors.count=2",
                "distractors.asset_sets=[primitives]", "distractors.share_class_shapes=true")
    assert r.returncode == 0, r.stderr
    r = run_cli("validate", d)
    assert r.returncode == 0 and "warning: distractor asset(s) brick, capsule" in r.stdout, r.stdout
    d2 = str(tmp_path / "clutter")
    assert run_cli(*PLAIN, "num_images=2", f"output_dir={d2}", "distractors.count=2").returncode == 0
    r = run_cli("validate", d2)
    assert r.returncode == 0 and "warning" not in r.stdout
