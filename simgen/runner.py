"""Many images: output-folder bookkeeping (fingerprint, resume, overwrite), one process or N
local worker processes (spawned, each with its own GL context and physics client), progress,
final merge and summary. Every image depends on (seed, index) only, so the bytes on disk do
not depend on the number of workers or on interruptions."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .config import output_fingerprint, to_yaml
from .errors import OutputError, SimGenError
from .io import atomic_write_bytes, atomic_write_json
from .pipeline import STAGES, Pipeline, image_name

WORK_DIR = ".simgen"
RUN_FILE = "run.json"
OWNED = ("images", "masks", "depth", "annotations.json", "annotations_train.json", "annotations_val.json",
         "annotations_test.json", "yolo", "voc", "config.yaml", "run_summary.json", WORK_DIR)


@dataclass
class Summary:
    output_dir: str
    num_images: int
    made: int
    resumed: int
    seconds: float
    instances: Dict[str, int]
    not_settled: List[int]
    stage_seconds: Dict[str, float] = field(default_factory=dict)
    gl_renderer: Optional[str] = None
    annotations_file: str = ""
    resampled: int = 0  # scenes thrown away by physics checks and sampled again

    @property
    def images_per_second(self) -> float:
        return self.made / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        inst = ", ".join(f"{k} {v}" for k, v in sorted(self.instances.items(), key=lambda kv: (-kv[1], kv[0])))
        return (f"{self.num_images} images ({self.made} made, {self.resumed} kept from an earlier run), "
                f"{sum(self.instances.values())} instances [{inst}], "
                f"{self.images_per_second:.2f} images/s, {len(self.not_settled)} scenes did not settle, "
                f"{self.resampled} resampled after failed physics checks")


def _diff_keys(a, b, prefix="") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def prepare_output(cfg) -> str:
    """Create/check output_dir; refuse to mix configs unless overwrite. Returns the parts dir."""
    out = os.path.abspath(str(cfg.output_dir))
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".simgen-write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to output_dir '{cfg.output_dir}' ({exc.strerror or exc}); "
                          f"fix: choose a writable folder, e.g. output_dir=out/mydata") from None
    fp = output_fingerprint(cfg)
    run_path = os.path.join(out, WORK_DIR, RUN_FILE)
    stored = None
    if os.path.isfile(run_path):
        try:
            stored = json.load(open(run_path, encoding="utf-8"))["config"]
        except (OSError, ValueError, KeyError):
            stored = {"unreadable": True}
    entries = [e for e in os.listdir(out) if not e.startswith(".simgen-write-test")]
    if stored is not None and stored != fp:
        if not cfg.overwrite:
            keys = _diff_keys(stored, fp)[:4]
            raise OutputError(f"output_dir '{cfg.output_dir}' holds a dataset made with a different config "
                              f"(differs in: {', '.join(keys)}); fix: overwrite=true to replace it, or "
                              f"another output_dir")
        _clean(out)
    elif stored is None and entries:
        if not cfg.overwrite:
            raise OutputError(f"output_dir '{cfg.output_dir}' is not empty and holds no simgen run; "
                              f"fix: choose an empty or new folder, or overwrite=true (removes only "
                              f"simgen's own files there)")
        _clean(out)
    parts = os.path.join(out, WORK_DIR, "parts")
    for d in ("images", "masks", "depth", parts):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    if stored != fp:
        from . import __version__

        atomic_write_json(run_path, {"simgen_version": __version__, "config": fp}, indent=1)
        atomic_write_bytes(os.path.join(out, "config.yaml"), to_yaml(cfg).encode("utf-8"))
    return parts


def _clean(out: str) -> None:
    for name in OWNED:
        p = os.path.join(out, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.unlink(p)


# ---- worker processes ---------------------------------------------------------------

_WORKER: Optional[Pipeline] = None
_WORKER_OUT = ("", "")


def _init_worker(cfg_yaml: str, output_dir: str, parts_dir: str) -> None:
    global _WORKER, _WORKER_OUT
    from omegaconf import OmegaConf

    _WORKER = Pipeline(OmegaConf.create(cfg_yaml))
    _WORKER_OUT = (output_dir, parts_dir)


def _work(index: int):
    return _make_and_write(_WORKER, index, *_WORKER_OUT)


def _make_and_write(pipe: Pipeline, index: int, output_dir: str, parts_dir: str):
    sample = pipe.make(index)
    part = pipe.write(sample, output_dir, parts_dir)
    return index, part, dict(sample.timings), pipe.renderer.gl_renderer


def _worker_env(workers: int) -> None:
    # llvmpipe spawns one raster thread per core in every process: share the cores instead.
    if workers > 1 and "LP_NUM_THREADS" not in os.environ:
        os.environ["LP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


def run(cfg) -> Summary:
    """Generate cfg.num_images images into cfg.output_dir, resuming finished ones."""
    from omegaconf import OmegaConf

    from .assets import AssetLibrary
    from .writers import EXPORTERS

    library = AssetLibrary.from_config(cfg)
    library.validate()  # bad meshes fail here, before the output folder is touched
    pipe = Pipeline(cfg, library)
    pipe.all_assets.validate()  # distractor assets too (and concave meshes get decomposed once)
    try:
        pipe.renderer  # no GL context (EGL missing?) fails here too, before any file is written
        parts_dir = prepare_output(cfg)
    except BaseException:
        pipe.close()
        raise
    if int(cfg.workers) > 1:
        pipe.close()  # workers make their own contexts; the probe is not needed any more
    out = os.path.abspath(str(cfg.output_dir))
    n = int(cfg.num_images)
    done = {i for i in range(n) if os.path.isfile(os.path.join(parts_dir, f"{image_name(i)}.json"))}
    todo = [i for i in range(n) if i not in done]
    ann_path = os.path.join(out, "annotations.json")
    if todo and os.path.exists(ann_path):
        os.unlink(ann_path)  # stale: the dataset is incomplete until the merge below
    stage = Counter()
    gl = None
    t0 = time.perf_counter()
    progress = _progress(total=n, initial=len(done), enabled=bool(cfg.progress))
    try:
        if cfg.workers == 1:
            try:
                for i in todo:
                    _, _, timings, gl = _make_and_write(pipe, i, out, parts_dir)
                    stage.update(timings)
                    progress.update(1)
            finally:
                pipe.close()
        elif todo:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            _worker_env(int(cfg.workers))
            ctx = mp.get_context("spawn")  # never fork a process that may hold a GL context
            yaml_cfg = OmegaConf.to_yaml(cfg)
            try:
                with ProcessPoolExecutor(max_workers=min(int(cfg.workers), len(todo)), mp_context=ctx,
                                         initializer=_init_worker,
                                         initargs=(yaml_cfg, out, parts_dir)) as ex:
                    for _, _, timings, gl in ex.map(_work, todo, chunksize=1):
                        stage.update(timings)
                        progress.update(1)
            except BrokenProcessPool:
                raise SimGenError("a worker process died (killed or out of memory); finished images "
                                  "are kept: run the same command again to resume") from None
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    parts = [json.load(open(os.path.join(parts_dir, f"{image_name(i)}.json"), encoding="utf-8"))
             for i in range(n)]
    from . import __version__

    info = {"description": f"simgen synthetic dataset, scene '{cfg.scene_name}'",
            "version": __version__, "seed": int(cfg.seed), "num_images": n,
            "conventions": "units metres; K and cam_pose in OpenCV camera axes (x right, y down, "
                           "z forward); cam_pose is camera-to-world; bbox [x,y,w,h] of the visible "
                           "mask with w = x_max - x_min + 1; depth PNG in millimetres"}
    from .writers import coco

    # Exporters first, COCO last: annotations.json appearing marks the dataset complete.
    doc = coco.assemble(parts, library.categories, info)
    for fmt in cfg.formats:
        if fmt != "coco":
            EXPORTERS[fmt](out, doc, {"yolo_segments": bool(cfg.yolo.segments)})
    coco.finalize(out, parts, library.categories, info, polygons=bool(cfg.coco.polygons))
    instances = Counter(a["category"] for p in parts for a in p["annotations"])
    not_settled = [p["image"]["index"] for p in parts if not p["image"]["settle"]["converged"]]
    resampled = sum(p["image"]["settle"].get("attempts", 1) - 1 for p in parts)
    made = len(todo)
    summary = Summary(output_dir=out, num_images=n, made=made, resumed=len(done), seconds=seconds,
                      instances=dict(instances), not_settled=not_settled,
                      stage_seconds={k: stage[k] / made for k in STAGES if made}, gl_renderer=gl,
                      annotations_file=ann_path, resampled=resampled)
    atomic_write_json(os.path.join(out, "run_summary.json"), {
        "images": n, "made_this_run": made, "kept": len(done), "seconds": round(seconds, 3),
        "images_per_second": round(summary.images_per_second, 3), "workers": int(cfg.workers),
        "instances": dict(sorted(instances.items())), "not_settled": not_settled,
        "resampled_scenes": resampled,
        "mean_stage_seconds": {k: round(v, 5) for k, v in summary.stage_seconds.items()},
        "gl_renderer": gl}, indent=1)
    return summary


class _NoProgress:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="simgen", file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)
