"""Scale: killed workers, shards and merge, Ray, and a full disk. Every way of making a dataset
must give the bytes of the plain one-process run, and nothing may go silently missing."""
import errno
import importlib.util
import json
import os
import signal
import subprocess
import time

import pytest
from conftest import ROOT, SIMGEN, run_cli
from test_cli import assert_same_dataset

pytestmark = pytest.mark.slow

BASE = ["num_images=10", "seed=7", "camera.width=256", "camera.height=192", "objects.count=[3,6]",
        "progress=false"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ref") / "data")
    r = run_cli(*BASE, f"output_dir={out}", "workers=1")
    assert r.returncode == 0, r.stderr
    return out


def _parts(out):
    d = os.path.join(out, ".simgen", "parts")
    return len(os.listdir(d)) if os.path.isdir(d) else 0


def _single_error_line(r):
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and lines and lines[-1].startswith("simgen: error:"), r.stderr
    assert "Traceback" not in r.stderr
    return lines[-1]


def test_killed_worker_is_replaced_and_nothing_is_lost(reference, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = str(tmp_path / "k")
    proc = subprocess.Popen([SIMGEN, *BASE, f"output_dir={out}", "workers=2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _parts(out) < 2:
        time.sleep(0.02)
    workers = [c for c in psutil.Process(proc.pid).children()
               if "resource_tracker" not in " ".join(c.cmdline())]
    assert workers and proc.poll() is None, "the run ended before a worker could be killed"
    workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "a worker process died" in stderr and "retry 1 of 2" in stderr
    assert_same_dataset(reference, out)


def test_helper_dying_idle_is_replaced(reference, tmp_path, monkeypatch, caplog):
    """A helper that dies between images (nothing in flight: killed, or out of memory) breaks
    the pool for the next submission; the run replaces it instead of ending in a traceback."""
    import concurrent.futures
    from concurrent.futures.process import ProcessPoolExecutor

    from simgen.config import compose
    from simgen.engines import llvmpipe_threads
    from simgen.runner import run

    class DiesIdle(ProcessPoolExecutor):
        killed = False
        initargs = []

        def __init__(self, *args, **kwargs):
            DiesIdle.initargs.append(kwargs["initargs"])
            super().__init__(*args, **kwargs)

        def submit(self, fn, *args):
            futures = self.__dict__.setdefault("futures", [])
            if len(futures) == 1 and not DiesIdle.killed:
                DiesIdle.killed = True
                futures[0].result()  # the helper has finished its image: idle
                for proc in list(self._processes.values()):
                    proc.kill()
                    proc.join()
                deadline = time.time() + 60
                while not self._broken and time.time() < deadline:
                    time.sleep(0.01)
            futures.append(super().submit(fn, *args))
            return futures[-1]

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", DiesIdle)
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    out = str(tmp_path / "idle")
    summary = run(compose([*BASE, f"output_dir={out}", "workers=2"]))
    assert DiesIdle.killed and summary.made == 10
    # Helpers, the replacement too, get their share of the cores for llvmpipe; this process
    # had it only while making its GL context: no later run or child process inherits it.
    share = llvmpipe_threads((os.cpu_count() or 1) // 2)
    assert [a[-1] for a in DiesIdle.initargs] == [share, share]
    assert "LP_NUM_THREADS" not in os.environ
    assert "a worker process died" in caplog.text
    assert_same_dataset(reference, out)


def test_helpers_started_early_end_with_a_failed_or_finished_run(reference, tmp_path):
    """Helpers start before the main process's own start-up (overlapping it) and are ended
    when the run fails before using them, when it needs none (resuming a finished run), and
    when it ends: no process is left behind either way."""
    import multiprocessing as mp
    import shutil

    from simgen.config import compose
    from simgen.errors import OutputError
    from simgen.runner import run

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write to output_dir"):
        run(compose([*BASE, f"output_dir={blocker}/data", "workers=2"]))
    assert not mp.active_children()
    out = str(tmp_path / "copy")
    shutil.copytree(reference, out)
    summary = run(compose([*BASE, f"output_dir={out}", "workers=2"]))  # all 10 made already
    assert (summary.made, summary.resumed) == (0, 10) and not mp.active_children()
    assert_same_dataset(reference, out)


def test_resuming_a_million_image_run_holds_no_per_image_lists(tmp_path, monkeypatch):
    """What is done and what is left of a run are kept as index ranges: resuming a run of a
    million images (every thousandth missing) takes about one byte an image more than one of
    ten thousand (the folder listing's marks; a list or set of a million ints is 36-60 MB)."""
    import tracemalloc

    from simgen import engines
    from simgen.config import compose
    from simgen.runner import run

    made = []
    def marks(parts_dir, idx):  # as the listing gives them: every thousandth image missing
        assert idx.start == 0
        m = bytearray(b"\x01") * len(idx)
        m[7::1000] = bytes(len(range(7, len(idx), 1000)))
        return m

    monkeypatch.setattr(engines, "_done_marks", marks)
    monkeypatch.setattr(engines, "make_and_commit", lambda pipe, i, out, parts: made.append(i) or {})

    def peak(n):
        made.clear()
        tracemalloc.reset_peak()
        summary = run(compose([*BASE, f"num_images={n}", f"output_dir={tmp_path / str(n)}", "workers=1"]))
        assert made == list(range(7, n, 1000))
        assert (summary.made, summary.resumed) == (n // 1000, n - n // 1000)
        return tracemalloc.get_traced_memory()[1]

    tracemalloc.start()
    try:
        peak(1000)  # warm: assets, GL context
        small, big = peak(10000), peak(1000000)
    finally:
        tracemalloc.stop()
    assert big - small < 2.5 * 10**6, (small, big)  # was 0.8 MB before the marks (1 MB)


def test_finished_images_are_read_from_one_listing_of_exact_part_names(tmp_path):
    """done/missing come from one listing of the parts folder; only the names part_path
    gives count: not a temp file of an unfinished write, not another zero-padding, not a
    folder, not an index outside the range asked."""
    from simgen.engines import done_indices, missing_indices
    from simgen.pipeline import part_path

    for i in (0, 1, 2, 5, 9, 1234567):
        open(part_path(str(tmp_path), i), "w").close()
    for junk in ("000003.json.tmp", ".000004.json.x1y2", "3.json", "0000004.json", "000006.JSON", "abcdef.json"):
        open(tmp_path / junk, "w").close()
    os.mkdir(tmp_path / "000007.json")
    assert [(s.start, s.stop) for s in done_indices(str(tmp_path), range(10)).ranges] == [(0, 3), (5, 6), (9, 10)]
    assert list(missing_indices(str(tmp_path), range(1, 10))) == [3, 4, 6, 7, 8]
    assert list(done_indices(str(tmp_path), range(1234560, 1234570))) == [1234567]
    assert list(missing_indices(str(tmp_path / "none"), range(2, 4))) == [2, 3]


def test_a_killed_runs_temp_files_are_removed_for_the_images_this_run_makes(reference, tmp_path):
    """A run killed while writing leaves AtomicFile temporaries (.tmp-<random>-<name>). The
    run that resumes deletes those of the images it is about to make, in every image folder
    and the parts folder, and nothing else: a shard beside it owns the other indices."""
    import shutil

    from simgen.engines import Indices, discard_stale_temps
    from simgen.io import AtomicFile

    out = tmp_path / "d"
    parts = out / ".simgen" / "parts"
    for d in ("images", "masks", "depth"):
        os.makedirs(out / d)
    os.makedirs(parts)
    left = {}
    for folder, name in (("images", "000004.png"), ("masks", "000004.png"), ("depth", "000012.png"),
                         (".simgen/parts", "000005.json"), ("images", "000030.png"), ("images", "0004.png"),
                         ("images", "notes.png")):
        f = AtomicFile(str(out / folder / name))  # as a killed writer leaves it: never committed
        left[(folder, name)] = f.tmp
    (out / "images" / ".tmp-keep").write_text("")  # not an AtomicFile name
    removed = discard_stale_temps(str(out), str(parts), Indices([3, 4, 5, 12, 13]))
    assert removed == 4
    gone = {k for k, path in left.items() if not os.path.exists(path)}
    assert gone == {("images", "000004.png"), ("masks", "000004.png"), ("depth", "000012.png"),
                    (".simgen/parts", "000005.json")}
    assert (out / "images" / ".tmp-keep").exists()
    # end to end: a partial copy of the reference dataset with leftovers resumes clean and identical
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    os.unlink(copy / "annotations.json")
    os.unlink(copy / ".simgen" / "parts" / "000003.json")
    AtomicFile(str(copy / "images" / "000003.png"))
    AtomicFile(str(copy / ".simgen" / "parts" / "000003.json"))
    r = run_cli(*BASE, f"output_dir={copy}", "workers=1")
    assert r.returncode == 0, r.stderr
    assert not [f for _, _, fs in os.walk(copy) for f in fs if f.startswith(".tmp-")]
    assert_same_dataset(reference, str(copy))


def test_finalize_in_several_processes_writes_the_same_bytes(reference, tmp_path, monkeypatch):
    """Large datasets read and encode their COCO records in one process per worker, a few
    chunks ahead of the writer; annotation ids still count through the dataset in order."""
    import shutil

    import simgen.config
    import simgen.runner
    from simgen.writers import coco

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    os.unlink(out / "annotations.json")
    monkeypatch.setattr(simgen.runner, "PARALLEL_FINALIZE", 0)
    monkeypatch.setattr(simgen.config, "effective_workers", lambda cfg: 2)
    monkeypatch.setattr(coco, "CHUNK", 3)  # 10 images: 4 chunks over 2 processes
    summary = simgen.runner.finalize(str(out))
    assert open(out / "annotations.json", "rb").read() == open(os.path.join(reference, "annotations.json"), "rb").read()
    ref = json.load(open(os.path.join(reference, "run_summary.json")))
    assert summary.instances == ref["instances"] and summary.not_settled == ref["not_settled"]
    assert summary.resampled == ref["resampled_scenes"]


def test_image_that_keeps_crashing_is_reported_then_resumed(reference, tmp_path):
    out = str(tmp_path / "c")
    marker = tmp_path / "crashed"
    r = run_cli(*BASE, f"output_dir={out}", "workers=2", "retries=0",
                env={"SIMGEN_TEST_CRASH_ONCE": f"4:{marker}"})
    line = _single_error_line(r)
    assert "not made" in line and "retries=0" in line and "run the same command again" in line
    made = _parts(out)
    assert f"{10 - made} image(s)" in line  # every image not on disk is named, none is silently lost
    assert made >= 8  # only what the dead helper held (one running, one queued) is lost: the main process made the rest
    assert not os.path.exists(os.path.join(out, ".simgen", "parts", "000004.json"))
    assert marker.exists() and not os.path.exists(os.path.join(out, "annotations.json"))
    r = run_cli(*BASE, f"output_dir={out}", "workers=2")
    assert r.returncode == 0, r.stderr
    assert_same_dataset(reference, out)


def test_views_of_one_scene_share_it_and_any_view_is_remade_alone(tmp_path):
    """camera.views_per_scene=3: images 3s..3s+2 show scene s (one settle), each from its own
    camera. Two workers, with the helper holding image 4 killed mid-scene, and Ray give the
    bytes of one worker; image 4 made alone, by a fresh pipeline, gives the bytes on disk."""
    import numpy as np

    from simgen.config import compose
    from simgen.pipeline import Pipeline

    views = [*BASE, "camera.views_per_scene=3"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    r = run_cli(*views, f"output_dir={one}", "workers=1")
    assert r.returncode == 0, r.stderr
    r = run_cli(*views, f"output_dir={two}", "workers=2",
                env={"SIMGEN_TEST_CRASH_ONCE": f"4:{tmp_path / 'crashed'}"})
    assert r.returncode == 0 and "a worker process died" in r.stderr, r.stderr
    assert_same_dataset(one, two)

    doc = json.load(open(os.path.join(one, "annotations.json")))
    images = sorted(doc["images"], key=lambda im: im["index"])
    assert [im["scene_index"] for im in images] == [i // 3 for i in range(10)]
    world = {im["id"]: {} for im in images}  # image -> instance -> (asset, world pose)
    for a in doc["annotations"]:
        p = a["pose"]
        world[a["image_id"]][a["instance_id"]] = (a["asset"], np.r_[np.ravel(p["R_m2w"]), p["t_m2w"]])
        # each view's labels are in its own camera: m2c = inverse(camera pose) @ m2w
        cam = np.asarray(next(im for im in images if im["id"] == a["image_id"])["cam_pose"])
        m2w = np.eye(4)
        m2w[:3, :3], m2w[:3, 3] = p["R_m2w"], p["t_m2w"]
        m2c = np.linalg.inv(cam) @ m2w
        assert np.allclose(m2c[:3, :3], p["R_m2c"], atol=1e-5) and np.allclose(m2c[:3, 3], p["t_m2c"], atol=1e-5)
    shared = 0
    for x in images:
        for y in images:
            if x["index"] >= y["index"]:
                continue
            common = set(world[x["id"]]) & set(world[y["id"]])
            same_scene = x["scene_index"] == y["scene_index"]
            if same_scene:
                assert x["split"] == y["split"] and x["cam_pose"] != y["cam_pose"]
                for i in common:  # the same object, at the same place in the world
                    assert world[x["id"]][i][0] == world[y["id"]][i][0]
                    assert np.allclose(world[x["id"]][i][1], world[y["id"]][i][1], atol=1e-6)
                shared += len(common)
            else:
                assert not any(np.allclose(world[x["id"]][i][1], world[y["id"]][i][1], atol=1e-3) for i in common)
    assert shared >= 10  # the views really do see the same objects

    ray = str(tmp_path / "ray")  # shards of 4 images, rounded up to whole scenes of 3
    if importlib.util.find_spec("ray") is not None:
        r = run_cli(*views, f"output_dir={ray}", "engine=ray", "workers=2", "shards.size=4")
        assert r.returncode == 0, r.stderr
        assert_same_dataset(one, ray)

    pipe = Pipeline(compose(views))
    files, _ = pipe.encode(pipe.make(4))  # its scene (images 3-5) never settled in this process
    assert files and all(open(os.path.join(one, rel), "rb").read() == data for rel, data in files.items())
    pipe.close()


def test_shards_in_separate_folders_merge_to_the_same_dataset(reference, tmp_path):
    dirs = [str(tmp_path / f"s{k}") for k in range(3)]
    for k in (0, 2):
        r = run_cli(*BASE, f"output_dir={dirs[k]}", "workers=1", "shards.count=3", f"shards.index={k}")
        assert r.returncode == 0, r.stderr
        assert "shard [" in r.stdout and not os.path.exists(os.path.join(dirs[k], "annotations.json"))
    merged = str(tmp_path / "merged")
    line = _single_error_line(run_cli("merge", dirs[0], dirs[2], "--out", merged))
    assert "[3, 6)" in line and "3 of 10 images" in line  # shard 1 (indices 3..5) is missing
    other = str(tmp_path / "other")
    assert run_cli(*BASE, "seed=8", f"output_dir={other}", "workers=1", "shards.count=3",
                   "shards.index=1").returncode == 0
    line = _single_error_line(run_cli("merge", dirs[0], other, dirs[2], "--out", merged))
    assert "different config" in line and "seed" in line
    assert run_cli(*BASE, f"output_dir={dirs[1]}", "workers=1", "shards.count=3",
                   "shards.index=1").returncode == 0
    r = run_cli("merge", *dirs, "--out", merged)
    assert r.returncode == 0, r.stderr
    assert_same_dataset(reference, merged)
    assert run_cli("validate", merged).returncode == 0


def test_shards_sharing_one_folder_merge_when_the_last_finishes(reference, tmp_path):
    out = str(tmp_path / "shared")
    for k in (1, 0):
        r = run_cli(*BASE, f"output_dir={out}", "workers=1", "shards.count=2", f"shards.index={k}")
        assert r.returncode == 0, r.stderr
    assert "dataset written" in r.stdout
    assert_same_dataset(reference, out)


def test_full_disk_mid_run_stops_cleanly_and_resumes(reference, tmp_path, monkeypatch):
    import simgen.io
    from simgen.config import compose
    from simgen.errors import OutputError
    from simgen.runner import run

    real = simgen.io.AtomicFile.write
    calls = {"n": 0}

    def full_after(limit, when=lambda path: True):
        def write(self, data):  # every dataset file is written through AtomicFile
            if when(self.path):
                calls["n"] += 1
                if calls["n"] > limit:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, data)
        return write

    def leftovers():
        return [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".tmp-")]

    out = str(tmp_path / "full")
    cfg = compose([*BASE, f"output_dir={out}", "workers=1"])
    monkeypatch.setattr(simgen.io.AtomicFile, "write", full_after(12, lambda p: "/.simgen/" not in p))
    with pytest.raises(OutputError, match="disk is full.*run the same command again"):
        run(cfg)
    assert 0 < _parts(out) < 10 and not os.path.exists(os.path.join(out, "annotations.json"))
    assert not leftovers()
    # the disk fills up again while streaming the dataset's JSON files at the end
    for limit in (0, 5):
        calls["n"] = 0
        monkeypatch.setattr(simgen.io.AtomicFile, "write", full_after(limit, lambda p: p.endswith(".json")
                                                                      and "/.simgen/" not in p))
        with pytest.raises(OutputError, match="disk is full"):
            run(cfg)
        assert _parts(out) == 10 and not os.path.exists(os.path.join(out, "annotations.json"))
        assert not leftovers()
    monkeypatch.setattr(simgen.io.AtomicFile, "write", real)
    run(cfg)
    assert_same_dataset(reference, out)


# ---- Ray (a local instance, as on one node of a cluster) --------------------------------

def _ray():
    return pytest.importorskip("ray")


@pytest.mark.parametrize("shared", [False, True])
def test_ray_engine_gives_the_same_bytes_and_retries_a_dead_worker(reference, tmp_path, shared):
    _ray()
    out = str(tmp_path / "ray")
    marker = tmp_path / "crashed"
    r = run_cli(*BASE, f"output_dir={out}", "engine=ray", "workers=2", "shards.size=3", "ray.max_pending=2",
                f"ray.shared_storage={str(shared).lower()}", env={"SIMGEN_TEST_CRASH_ONCE": f"4:{marker}"})
    assert r.returncode == 0, r.stderr
    assert marker.exists()  # a Ray worker died making image 4, and its shard ran again
    # (4 shards, at most 2 in flight: the others were submitted as earlier ones finished)
    assert_same_dataset(reference, out)
    summary = json.load(open(os.path.join(out, "run_summary.json")))
    assert summary["engine"] == "ray"


@pytest.mark.parametrize("address", ["127.0.0.1:1", "auto"])
def test_unreachable_ray_cluster_is_one_line_and_writes_nothing(tmp_path, address):
    _ray()
    out = str(tmp_path / "o")
    line = _single_error_line(run_cli(*BASE, f"output_dir={out}", "engine=ray", f"ray.address={address}",
                                      env={"RAY_ADDRESS": ""}))
    assert "Ray" in line and "fix:" in line
    assert not os.path.exists(out)


def test_ray_shard_failing_for_good_is_reported_then_resumed(reference, tmp_path):
    _ray()
    out = str(tmp_path / "rayfail")
    marker = tmp_path / "crashed"
    r = run_cli(*BASE, f"output_dir={out}", "engine=ray", "workers=2", "shards.size=3", "retries=0",
                env={"SIMGEN_TEST_CRASH_ONCE": f"4:{marker}"})
    line = _single_error_line(r)
    assert "failed after 0 retries" in line and "[3, 6)" in line
    assert _parts(out) == 7 and not os.path.exists(os.path.join(out, "annotations.json"))
    r = run_cli(*BASE, f"output_dir={out}", "engine=ray", "workers=2")
    assert r.returncode == 0, r.stderr
    assert "7 kept" in r.stdout
    assert_same_dataset(reference, out)


# ---- Hydra launcher plugins (simgen-hydra) ----------------------------------------------

@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_hydra_launcher_sweep_matches_plain_runs(tmp_path, launcher):
    pytest.importorskip({"joblib": "hydra_plugins.hydra_joblib_launcher",
                         "submitit_local": "hydra_plugins.hydra_submitit_launcher"}[launcher])
    small = ["num_images=2", "camera.width=160", "camera.height=120", "objects.count=[2,4]", "workers=1"]
    base = tmp_path / "sweep"
    r = subprocess.run([SIMGEN + "-hydra", "-m", f"hydra/launcher={launcher}", "seed=1,2", *small,
                        f"output_dir={base}", f"hydra.sweep.dir={tmp_path / 'hydra'}"],
                       capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    folders = sorted(os.listdir(base))
    assert len(folders) == 2 and all(f.startswith("seed=") for f in folders), folders
    single = str(tmp_path / "single")
    assert run_cli("seed=2", *small, "progress=false", f"output_dir={single}").returncode == 0
    (two,) = [f for f in folders if f.startswith("seed=2,")]
    assert_same_dataset(str(base / two), single)
