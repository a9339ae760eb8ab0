"""`make bench`: simgen's throughput and memory on this machine. Not a test: it asserts nothing.

Reports, at 640x480 with 10 objects per image:
  - images/s end to end (sample, settle, render, annotate, write) with 1 worker and with one
    worker per core, start-up included (the whole runner.run call: every process's start-up,
    asset checks, GL contexts and the final merge into annotations.json; only the
    interpreter's start and simgen's imports, ~0.4 s, are outside it) and after start-up
    (the first fifth of the images left out),
  - mean milliseconds per stage (render split into its passes), in one single-threaded process,
  - peak RSS per process,
  - CPU time per image of the pipeline against the ceiling's raster of the same scenes, in
    one process: a ratio this VM's wall-clock noise hardly moves,
  - the ceiling: images/s of bare rasterization of the same settled scenes (RGB with the same
    shadows + instance map only: no physics, no annotation, no unoccluded masks, no writing),
    the better of one process using every core and one single-threaded process per core
    (llvmpipe rasterizing in the calling thread or in one of its own, the better of the two).
  - the same end to end run and CPU ratio with camera.views_per_scene (--views, default 4).
Each measurement runs in a fresh subprocess so peak RSS is its own, and is repeated
(--repeat, best of) because shared 2-core machines show +-30% run-to-run noise; the ratios
are also given per repetition, each against the ceiling measured minutes before it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

COMMON = ["camera.width=640", "camera.height=480", "objects.count=10", "progress=false"]


CORES = len(os.sched_getaffinity(0))


def _one_run(workers: int, n: int, views: int = 1) -> dict:
    from simgen import runner
    from simgen.config import compose

    done_at = []  # when each image was reported finished

    class Clock:
        def update(self, k):
            done_at.extend([time.perf_counter()] * k)

        def close(self):
            pass

    runner._progress = lambda total, initial, enabled: Clock()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose([*COMMON, f"num_images={n}", f"workers={workers}", f"output_dir={tmp}/d",
                       f"camera.views_per_scene={views}"])
        t0 = time.perf_counter()
        s = runner.run(cfg)
        whole = time.perf_counter() - t0
    # Steady state: the rate after the first fifth of the images, when every process has
    # started and warmed up (the ceiling, too, is timed warm). A million-image run is this.
    k = n // 5
    steady = (n - 1 - k) / (done_at[-1] - done_at[k]) if n > 10 else s.images_per_second
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"workers": workers, "views_per_scene": views, "images": n, "seconds": round(whole, 2),
            "images_per_second": round(n / whole, 3), "steady_images_per_second": round(steady, 3),
            "from_first_image_images_per_second": round(s.images_per_second, 3),
            "mean_stage_ms": {k: round(v * 1000, 1) for k, v in sorted(s.stage_seconds.items())},
            "peak_rss_mb_main": round(self_kb / 1024, 1), "peak_rss_mb_worker": round(child_kb / 1024, 1),
            "gl_renderer": s.gl_renderer}


def _raster_fn(pipe):
    """The ceiling's work for one settled scene: RGB with the pipeline's shadows + the
    instance map (one SEG pass), in the pipeline's renderer; nothing else."""
    from simgen.render import encode_id

    r = pipe.renderer
    pr = r._pr
    flags = pr.RenderFlags.SHADOWS_DIRECTIONAL | pr.RenderFlags.SHADOWS_SPOT

    def raster(sc):
        nodes = r._load(sc, pipe.all_assets)
        r._r.render(r._scene, flags=flags)
        seg = {node: encode_id(i) for i, node in nodes.items()}
        seg[r._floor_node] = encode_id(0)
        r._seg(seg)
    return raster


def _stage_totals(workers: int, n: int, views: int = 1) -> dict:
    """Per-stage means including the render sub-passes (needs the timings dict per image),
    and the CPU time per image of the whole pipeline (make + encode + commit) against the
    ceiling's raster of the same settled scenes, both in this one process, interleaved in
    rounds (best of 3 each). CPU time, unlike wall time, does not count the moments this
    VM lends the core elsewhere, so the ratio moves far less from run to run."""
    from simgen.config import compose
    from simgen.pipeline import Pipeline
    from simgen.writers.buffers import SUBDIRS

    cfg = compose([*COMMON, f"num_images={n}", f"camera.views_per_scene={views}"])
    pipe = Pipeline(cfg)
    raster = _raster_fn(pipe)
    scenes = [pipe.make(i).scene for i in range(n)]  # warm up: shaders, mesh pool, textures
    for sc in scenes:
        raster(sc)
    acc: dict = {}
    cpu_pipe, cpu_ceil = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("parts", *SUBDIRS):
            os.makedirs(os.path.join(tmp, sub))
        for rnd in range(3):
            c0 = time.process_time()
            for i in range(n):
                s = pipe.make(i)
                pipe.write(s, tmp, os.path.join(tmp, "parts"))
                if rnd == 0:
                    for k, v in s.timings.items():
                        acc[k] = acc.get(k, 0.0) + v
            c1 = time.process_time()
            for sc in scenes:
                raster(sc)
            cpu_pipe.append(c1 - c0)
            cpu_ceil.append(time.process_time() - c1)
    pipe.close()
    res = {k: round(v / n * 1000, 1) for k, v in sorted(acc.items())}
    res["cpu_ms_pipeline"] = round(min(cpu_pipe) / n * 1000, 1)
    res["cpu_ms_ceiling"] = round(min(cpu_ceil) / n * 1000, 1)
    return res


def _ceiling(n: int) -> dict:
    from simgen.config import compose
    from simgen.pipeline import Pipeline
    from simgen.scenes import sample_scene

    cfg = compose([*COMMON, f"num_images={n}"])
    pipe = Pipeline(cfg)
    scenes = [pipe.settle(sample_scene(cfg, pipe.library, 0, i))[0] for i in range(n)]
    raster = _raster_fn(pipe)
    for sc in scenes:
        raster(sc)  # warm up: shaders, mesh pool growth, texture uploads
    t0 = time.perf_counter()
    for _ in range(2):  # twice: a window of several seconds, not one lucky moment of this VM
        for sc in scenes:
            raster(sc)
    dt = time.perf_counter() - t0
    pipe.close()
    return {"images": 2 * n, "images_per_second": round(2 * n / dt, 3), "ms_per_image": round(dt / n / 2 * 1000, 1)}


def _sub(key: str, n: int, env: dict = None, views: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--one", key, "--images", str(n), "--views", str(views)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


def _result(p: subprocess.Popen) -> dict:
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"bench step failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1])


def _measure(key: str, n: int, views: int) -> dict:
    if key == "ceilingN":  # one single-threaded rasterizing process per core, at once; llvmpipe
        best = None  # rasterizing in the calling thread (as workers do) or in one thread of its own
        for lp in ("0", "1"):
            procs = [_result(p) for p in [_sub("ceiling", n, {"LP_NUM_THREADS": lp}) for _ in range(CORES)]]
            res = {"processes": CORES, "images": sum(p["images"] for p in procs), "lp_num_threads": int(lp),
                   "images_per_second": round(sum(p["images_per_second"] for p in procs), 3)}
            best = res if best is None or res["images_per_second"] > best["images_per_second"] else best
        return best
    if key in ("stages", "stagesviews"):  # one single-threaded process: the CPU time each stage costs
        return _result(_sub(key, n, {"LP_NUM_THREADS": "0"}, views=views))
    if key == "runNviews":
        return _result(_sub(key, n, views=views))
    return _result(_sub(key, n))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)  # start-up (~2.5 s a worker) under 10%
    ap.add_argument("--one", choices=["run1", "runN", "runNviews", "stages", "stagesviews", "ceiling"], help=argparse.SUPPRESS)
    ap.add_argument("--views", type=int, default=4, help="camera.views_per_scene of the extra multi-view run")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default="out/bench.json")
    a = ap.parse_args()
    if a.one:
        res = {"run1": lambda: _one_run(1, a.images), "runN": lambda: _one_run(CORES, a.images),
               "runNviews": lambda: _one_run(CORES, a.images, a.views),
               "stages": lambda: _stage_totals(1, min(a.images, 20)),
               "stagesviews": lambda: _stage_totals(1, min(a.images, 20), a.views),
               "ceiling": lambda: _ceiling(min(a.images, 40))}[a.one]()
        print(json.dumps(res))
        return 0
    results = {"cores": CORES}
    reps = []  # each repetition's own measurements: ratios of figures taken minutes apart
    for _rep in range(a.repeat):
        mine = {}
        # the N-process ceiling is measured just before and just after the N-worker run, and
        # the repetition's ratios use their mean: this VM's speed drifts from minute to minute
        for key in ("ceiling", "ceilingN", "run1", "runN", "ceilingN_after", "runNviews", "stages", "stagesviews"):
            res = mine[key] = _measure(key.replace("_after", ""), a.images, a.views)
            print(f"{key:8s} {json.dumps(res)}", flush=True)
            key = key.replace("_after", "")
            best = results.get(key)
            if key.startswith("stages"):  # the repetition with the cheapest pipeline, whole (a consistent pair)
                if best is None or res["cpu_ms_pipeline"] < best["cpu_ms_pipeline"]:
                    results[key] = res
            elif best is None or res["images_per_second"] > best["images_per_second"]:
                results[key] = res
        ceil = max(mine["ceiling"]["images_per_second"],
                   (mine["ceilingN"]["images_per_second"] + mine["ceilingN_after"]["images_per_second"]) / 2)
        reps.append({k: round(v, 3) for k, v in {
            "end_to_end_over_ceiling": max(mine["run1"]["images_per_second"], mine["runN"]["images_per_second"]) / ceil,
            "steady_over_ceiling": max(mine["run1"]["steady_images_per_second"],
                                       mine["runN"]["steady_images_per_second"]) / ceil,
            "views_over_ceiling": mine["runNviews"]["images_per_second"] / ceil,
            "views_steady_over_ceiling": mine["runNviews"]["steady_images_per_second"] / ceil,
            "cpu_ceiling_over_pipeline": mine["stages"]["cpu_ms_ceiling"] / mine["stages"]["cpu_ms_pipeline"],
            "views_cpu_ceiling_over_pipeline": (mine["stagesviews"]["cpu_ms_ceiling"]
                                                / mine["stagesviews"]["cpu_ms_pipeline"])}.items()})
    results["per_repetition"] = reps
    r1, rn = results["run1"], results["runN"]
    c1, cn = results["ceiling"]["images_per_second"], results["ceilingN"]["images_per_second"]
    ceiling = max(c1, cn)
    best = max(r1["images_per_second"], rn["images_per_second"])
    steady = max(r1["steady_images_per_second"], rn["steady_images_per_second"])
    results["ceiling_images_per_second"] = ceiling
    results["end_to_end_over_ceiling"] = round(best / ceiling, 3)
    results["steady_over_ceiling"] = round(steady / ceiling, 3)
    print(f"\nsimgen bench, 640x480, 10 objects per image, {a.images} images per run, best of {a.repeat}, "
          f"{CORES} cores")
    print(f"  end to end, 1 worker : {r1['images_per_second']:.2f} images/s, {r1['steady_images_per_second']:.2f} "
          f"after start-up  (peak RSS {r1['peak_rss_mb_main']} MB)")
    print(f"  end to end, {CORES} workers: {rn['images_per_second']:.2f} images/s, {rn['steady_images_per_second']:.2f} "
          f"after start-up  (peak RSS per worker {rn['peak_rss_mb_worker']} MB, main {rn['peak_rss_mb_main']} MB)")
    print(f"  ceiling, RGB + instance raster only: {c1:.2f} images/s in 1 process, {cn:.2f} in {CORES} "
          f"single-threaded processes")
    print(f"  end to end / ceiling: {best / ceiling:.0%} (start-up included), {steady / ceiling:.0%} after start-up")
    rv = results["runNviews"]
    results["views_over_ceiling"] = round(rv["images_per_second"] / ceiling, 3)
    results["views_steady_over_ceiling"] = round(rv["steady_images_per_second"] / ceiling, 3)
    print(f"  end to end, {CORES} workers, camera.views_per_scene={a.views} (one settle per {a.views} images): "
          f"{rv['images_per_second']:.2f} images/s, {rv['steady_images_per_second']:.2f} after start-up -> "
          f"{rv['images_per_second'] / ceiling:.0%}, {rv['steady_images_per_second'] / ceiling:.0%} of the ceiling")
    st = dict(results["stages"])
    cp, cc = st.pop("cpu_ms_pipeline"), st.pop("cpu_ms_ceiling")
    results["cpu_ceiling_over_pipeline"] = round(cc / cp, 3)
    print(f"  CPU per image, 1 single-threaded process: pipeline {cp} ms (make + write), ceiling {cc} ms "
          f"(same scenes) -> {cc / cp:.0%}")
    print("  mean ms per image by stage (1 single-threaded process): " +
          ", ".join(f"{k} {v}" for k, v in st.items()))
    sv = results["stagesviews"]
    results["views_cpu_ceiling_over_pipeline"] = round(sv["cpu_ms_ceiling"] / sv["cpu_ms_pipeline"], 3)
    print(f"  CPU per image with camera.views_per_scene={a.views}: pipeline {sv['cpu_ms_pipeline']} ms, ceiling "
          f"{sv['cpu_ms_ceiling']} ms -> {sv['cpu_ms_ceiling'] / sv['cpu_ms_pipeline']:.0%} (physics "
          f"{sv.get('physics')}, sample {sv.get('sample')} ms per image)")
    print("  per repetition (every figure of one repetition against its own ceiling, the N-process one the "
          "mean of two measured just before and after its N-worker run): " + "; ".join(
        f"{r['end_to_end_over_ceiling']:.0%} / {r['steady_over_ceiling']:.0%} end to end, "
        f"{r['views_over_ceiling']:.0%} / {r['views_steady_over_ceiling']:.0%} with views, CPU "
        f"{r['cpu_ceiling_over_pipeline']:.0%} and {r['views_cpu_ceiling_over_pipeline']:.0%}" for r in reps))
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"  written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
