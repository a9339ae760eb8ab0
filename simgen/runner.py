"""Many images: output-folder bookkeeping (fingerprint, resume, overwrite), handing the
images still to make to an engine (this process, local workers or Ray: simgen.engines),
progress, the final merge into one dataset (also of shards made by separate jobs) and the
summary. Every image depends on (seed, index) only, so the bytes on disk do not depend on
the engine, the number of workers, shards or interruptions."""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import dataset
from .config import output_fingerprint, to_yaml
from .dataset import CONFIG_FILE, RUN_FILE, SUMMARY_FILE, WORK_DIR, CorruptPart, RunLock, read_part
from .errors import OutputError, SimGenError
from .io import atomic_write_bytes, atomic_write_json, os_error_reason
from .pipeline import STAGES, Pipeline, part_path
from .textures import check_image_folders
from .writers.coco import ANNOTATIONS_FILE

log = logging.getLogger("simgen")


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
    shard: Optional[object] = None  # set when this run made one shard and the dataset is not complete

    @property
    def images_per_second(self) -> float:
        return self.made / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        if self.shard is not None:
            return (f"shard {self.shard} ({self.made} made, {self.resumed} kept from an earlier run), "
                    f"{self.images_per_second:.2f} images/s; the dataset is complete once every shard "
                    f"has run (the last one merges), or: simgen merge <shard folders> --out <folder>")
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


def prepare_output(cfg, categories: Optional[List[str]] = None, lock: Optional[RunLock] = None) -> str:
    """Create/check output_dir and take the run's lock (``lock``); refuse to mix configs
    unless overwrite, and to overwrite a folder that is not simgen's. Returns the parts dir."""
    out = os.path.abspath(str(cfg.output_dir))
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # (nameless: nothing is left if this process dies)
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output_dir '{cfg.output_dir}' ({exc.strerror or exc}); "
                          f"fix: choose a writable folder, e.g. output_dir=out/mydata") from None
    ours = dataset.is_simgen_folder(out)
    if not ours and not dataset.is_empty(out):
        why = ("so overwrite=true will not delete anything in it; fix: choose an empty or new output_dir, or "
               "move its files away yourself") if cfg.overwrite else "fix: choose an empty or new output_dir"
        raise OutputError(f"output_dir '{cfg.output_dir}' is not empty and has no simgen records "
                          f"({WORK_DIR}/{RUN_FILE}); {why}")
    if lock is not None:
        lock.acquire()  # from here on no other run writes into these images
    fp = output_fingerprint(cfg)
    stored, rewrite = _stored_fingerprint(cfg, out, fp)
    if stored is not None and stored != fp:
        if not cfg.overwrite:
            keys = _diff_keys(stored, fp)
            export = ("; or, as only the output formats differ, `simgen export` writes another format from the "
                      "images there without rendering again" if all(k.split(".")[0] in ("formats", "yolo", "coco")
                                                                     for k in keys) else "")
            raise OutputError(f"output_dir '{cfg.output_dir}' holds a dataset made with a different config "
                              f"(differs in: {', '.join(keys[:4])}); fix: overwrite=true to replace it, or "
                              f"another output_dir{export}")
        dataset.clean(out, str(cfg.output_dir))
        rewrite = True
    run_path = dataset.work_path(out, RUN_FILE)
    parts = os.path.join(out, WORK_DIR, "parts")
    dirs = [d for d in dataset.IMAGE_DIRS if d != "normals" or cfg.render.write_normals]
    for d in (*dirs, parts):
        if os.path.islink(os.path.join(out, d)):
            raise OutputError(f"'{os.path.join(str(cfg.output_dir), d)}' is a symbolic link; simgen writes into "
                              f"real folders only (fix: replace the link by a folder, or choose another output_dir)")
        os.makedirs(os.path.join(out, d), exist_ok=True)
    if rewrite:
        from .version import __version__

        atomic_write_json(run_path, {"simgen_version": __version__, "config": fp, "categories": categories},
                          indent=1)
        dataset.claim(out, [WORK_DIR, *dirs, CONFIG_FILE], check=False)  # new, or cleaned above
        atomic_write_bytes(os.path.join(out, CONFIG_FILE), to_yaml(cfg).encode("utf-8"))
    from .writers import EXPORTERS

    # the formats' folders: a user's own yolo/ or semantic/ there is refused now, not after rendering
    dataset.claim(out, [EXPORTERS[f].folder for f in cfg.formats if f in EXPORTERS])
    return parts


def _stored_fingerprint(cfg, out: str, fp: dict):
    """(the output fingerprint run.json records or None for a new folder, whether to write
    run.json anew). A corrupt run.json is rebuilt when the saved config.yaml shows the folder
    was made with this very config (nothing is lost: it holds only that and the category
    list); otherwise it is an error that says how to recover without losing images."""
    from omegaconf import OmegaConf

    run_path = dataset.work_path(out, RUN_FILE)
    parts = os.path.join(out, WORK_DIR, "parts")
    if not os.path.isfile(run_path):
        if os.path.isdir(parts) and os.listdir(parts) and not cfg.overwrite:
            raise OutputError(f"output_dir '{cfg.output_dir}' holds images but no {WORK_DIR}/{RUN_FILE} that says "
                              f"which config made them; fix: overwrite=true to replace them, or another output_dir")
        return ({"unknown": True} if os.path.isdir(parts) and os.listdir(parts) else None), True
    try:
        with open(run_path, encoding="utf-8") as f:
            stored = json.load(f)["config"]
        if isinstance(stored, dict):
            return stored, False
        why = "no config in it"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"{type(exc).__name__}: {exc}"[:100]
    if cfg.overwrite:
        return {"corrupt": why}, True  # the folder is simgen's; its record is replaced with it
    try:
        saved = output_fingerprint(OmegaConf.load(os.path.join(out, CONFIG_FILE)))
    except Exception:  # noqa: BLE001 - whatever makes config.yaml unreadable: it proves nothing
        saved = None
    if saved == fp:
        log.warning("%s was corrupt (%s); rebuilt from config.yaml, which matches this config", run_path, why)
        return fp, True
    raise OutputError(f"{run_path} is corrupt ({why}); its images are kept. fix: run the command that made "
                      f"them again (its config is in {os.path.join(out, CONFIG_FILE)}) to rebuild the record and "
                      f"resume, or overwrite=true to replace the dataset")


def run(cfg) -> Summary:
    """Generate cfg.num_images images (or the shard cfg.shards.index of cfg.shards.count) into
    cfg.output_dir, resuming finished ones; merge into one dataset once every image exists."""
    from . import engines
    from .config import effective_workers

    workers = effective_workers(cfg)
    out = os.path.abspath(str(cfg.output_dir))
    n = int(cfg.num_images)
    mine = engines.shard_range(n, int(cfg.shards.count), cfg.shards.index)
    shard = None if cfg.shards.index is None else (int(cfg.shards.index), int(cfg.shards.count))
    lock = RunLock(out, str(cfg.output_dir), shard)  # taken by prepare_output, held to the end
    try:
        for attempt in range(2):
            helpers = None  # local helper processes start first: their start-up overlaps this one's
            if cfg.engine == "local":
                helpers = engines.Helpers.start(cfg, out, os.path.join(out, WORK_DIR, "parts"), workers,
                                                len(mine.indices))
            try:
                return _run(cfg, workers, out, n, mine, helpers, lock)
            except CorruptPart as exc:  # found by the merge: those images are unfinished, make them again
                if attempt:
                    raise
                bad = dataset.discard_corrupt_parts(os.path.join(out, WORK_DIR, "parts"), n)
                log.warning("%d corrupt part record(s) (the first: %s); making those images again", len(bad),
                            exc.path)
            finally:
                if helpers is not None:
                    helpers.discard()  # (run_local takes them over: nothing left to end unless it failed before)
    finally:
        lock.release()


def _run(cfg, workers: int, out: str, n: int, mine, helpers, lock: RunLock) -> Summary:
    from . import engines
    from .assets import AssetLibrary

    pipe = None
    disconnect = lambda: None  # noqa: E731
    try:
        library = AssetLibrary.from_config(cfg)
        library.validate()  # bad meshes fail here, before the output folder is touched
        check_image_folders(cfg)  # and unreadable texture and background images
        pipe = Pipeline(cfg, library)
        pipe.all_assets.validate()  # distractor assets too (and concave meshes get decomposed once)
        if cfg.engine == "ray":  # the cluster's nodes render; this one only needs to reach Ray
            disconnect = engines.connect_ray(cfg)
        else:
            with engines.worker_env(workers):  # this process makes images too: its GL context
                _ = pipe.renderer  # no GL context (EGL missing?) fails here, before any file is written
        parts_dir = prepare_output(cfg, library.categories, lock)
    except BaseException:
        if pipe is not None:
            pipe.close()
        disconnect()
        raise
    todo = engines.missing_indices(parts_dir, mine.indices)
    made, kept = len(todo), len(mine.indices) - len(todo)
    engines.discard_stale_temps(out, parts_dir, todo)  # a killed run's half-written files, if any
    ann_path = os.path.join(out, ANNOTATIONS_FILE)
    if todo and os.path.exists(ann_path):
        os.unlink(ann_path)  # stale: the dataset is incomplete until the merge below
    stage = Counter()
    made_stats = {"gl": None}

    def on_done(index: int, timings: Dict[str, float], gl: Optional[str]) -> None:
        stage.update(timings)
        made_stats["gl"] = gl or made_stats["gl"]
        progress.update(1)

    t0 = time.perf_counter()
    progress = _progress(total=len(mine.indices), initial=kept, enabled=bool(cfg.progress))
    try:
        if cfg.engine == "ray":
            pipe.close()
            if todo:
                engines.run_ray(cfg, todo, out, parts_dir, on_done)
        else:
            engines.run_local(cfg, pipe, todo, out, parts_dir, workers, on_done, helpers)
    finally:
        progress.close()
        disconnect()
    seconds = time.perf_counter() - t0
    stage_seconds = {k: stage[k] / made for k in STAGES if made}
    complete = not engines.missing_indices(parts_dir, range(n)).ranges
    if not complete:  # one shard of several: the others are made elsewhere, then merged
        return Summary(output_dir=out, num_images=n, made=made, resumed=kept, seconds=seconds,
                       instances={}, not_settled=[], stage_seconds=stage_seconds, gl_renderer=made_stats["gl"],
                       shard=mine)
    summary = finalize(out, extra={"made_this_run": made, "kept": kept, "seconds": round(seconds, 3),
                                   "images_per_second": round(made / seconds, 3) if seconds > 0 else 0.0,
                                   "workers": workers, "engine": str(cfg.engine),
                                   "mean_stage_seconds": {k: round(v, 5) for k, v in stage_seconds.items()},
                                   "gl_renderer": made_stats["gl"]})
    summary.made, summary.resumed, summary.seconds = made, kept, seconds
    summary.stage_seconds, summary.gl_renderer = stage_seconds, made_stats["gl"]
    return summary


def _load_run(out: str):
    """(run.json record, the full saved config) of a simgen output folder."""
    from omegaconf import OmegaConf

    run_path = os.path.join(out, WORK_DIR, RUN_FILE)
    try:
        record = json.load(open(run_path, encoding="utf-8"))
        cfg = OmegaConf.load(os.path.join(out, "config.yaml"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"'{out}' is not a simgen output folder ({WORK_DIR}/{RUN_FILE} or config.yaml "
                          f"unreadable: {exc}); fix: give folders written by simgen") from None
    return record, cfg


def finalize(out: str, extra: Optional[dict] = None) -> "Summary":
    """Build the dataset from the per-image parts in ``out``: every other format, then COCO's
    annotations.json last (its appearance marks the dataset complete), and run_summary.json.
    Runs under a file lock, so shards finishing together on a shared folder merge once."""
    import fcntl

    record, cfg = _load_run(out)
    categories = record.get("categories")
    if categories is None:
        raise OutputError(f"'{out}' was written by an older simgen without categories in "
                          f"{WORK_DIR}/{RUN_FILE}; fix: run it again with overwrite=true")
    n = int(cfg.num_images)
    parts_dir = os.path.join(out, WORK_DIR, "parts")
    try:
        lock = open(os.path.join(out, WORK_DIR, "merge.lock"), "w")
    except OSError as exc:
        raise OutputError(f"cannot write in '{out}': {exc.strerror}; fix: make it writable") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            dataset.discard_top_temps(out)  # of a merge that failed (a full disk) or was killed
            return _finalize_locked(out, cfg, categories, n, parts_dir, extra)
        except OSError as exc:
            raise OutputError(f"cannot write the dataset files in '{out}': {os_error_reason(exc)}; every image is kept "
                              f"(fix: free space or fix permissions, then run the same command again)") from None


# From this many images on, finalize reads and encodes the COCO records, and writes the other
# formats' files, in one process per worker (~1 s to start them; 20,000 images, COCO only:
# 7.6-8.9 s in one process, 5.1 s with 2 workers).
PARALLEL_FINALIZE = 20000


class _PartPaths:
    """The part files of images 0 .. n-1 in order, named as they are read: finalize goes
    through a million of them without holding a million paths."""

    def __init__(self, parts_dir: str, n: int):
        self.parts_dir, self.n = parts_dir, n

    def __iter__(self):
        return (part_path(self.parts_dir, i) for i in range(self.n))


def category_fields(cfg) -> Dict[str, dict]:
    """Extra COCO category fields: ``keypoints`` (names) and ``skeleton`` (1-based index pairs)
    of every class (empty for those without), when annotate.labels has keypoints."""
    if "keypoints" not in cfg.annotate.labels:
        return {}
    from .assets import AssetLibrary

    lib = AssetLibrary.from_config(cfg)
    schema = lib.keypoint_schema()
    return {c: {"keypoints": list(schema[c][0]), "skeleton": [[a + 1, b + 1] for a, b in schema[c][1]]}
            if c in schema else {"keypoints": [], "skeleton": []} for c in lib.categories}


def _finalize_locked(out: str, cfg, categories: List[str], n: int, parts_dir: str, extra: Optional[dict]):
    from .version import __version__
    from .writers import EXPORTERS, coco

    info = {"description": f"simgen synthetic dataset, scene '{cfg.scene_name}'",
            "version": __version__, "seed": int(cfg.seed), "num_images": n,
            "conventions": "units metres; K and cam_pose in OpenCV camera axes (x right, y down, "
                           "z forward); cam_pose is camera-to-world; bbox [x,y,w,h] of the visible "
                           "mask with w = x_max - x_min + 1; depth PNG in millimetres"}
    # Streamed from the part files one image at a time: memory does not grow with the dataset.
    # One pass writes COCO and every other format.
    paths = _PartPaths(parts_dir, n)
    fields = category_fields(cfg)
    plain = coco.Coco.from_parts(paths, categories, info, category_fields=fields)
    exporters = [EXPORTERS[fmt](out, plain.categories, {"yolo_segments": bool(cfg.yolo.segments),
                                                             "yolo_obb": bool(cfg.yolo.obb),
                                                             "yolo_pose": bool(cfg.yolo.pose)})
                 for fmt in cfg.formats if fmt != "coco"]
    instances: Counter = Counter()
    not_settled: List[int] = []
    resampled = 0

    def observe(img, anns):
        nonlocal resampled
        instances.update(categories[a["category_id"] - 1] for a in anns)
        if not img["settle"]["converged"]:
            not_settled.append(img["index"])
        resampled += img["settle"].get("attempts", 1) - 1

    from .config import effective_workers

    processes = effective_workers(cfg) if n >= PARALLEL_FINALIZE else 1
    dataset.claim(out, [ANNOTATIONS_FILE, *coco.SPLIT_FILES, SUMMARY_FILE, *(e.folder for e in exporters)])
    coco.write(out, coco.Coco.from_parts(paths, categories, info, polygons=bool(cfg.coco.polygons),
                                         processes=processes, category_fields=fields), observe, exporters, plain)
    atomic_write_json(os.path.join(out, SUMMARY_FILE), {
        "images": n, **(extra or {}), "instances": dict(sorted(instances.items())),
        "not_settled": not_settled, "resampled_scenes": resampled}, indent=1)
    return Summary(output_dir=out, num_images=n, made=0, resumed=n, seconds=0.0, instances=dict(instances),
                   not_settled=not_settled, annotations_file=os.path.join(out, "annotations.json"),
                   resampled=resampled)


def merge(inputs: List[str], out: Optional[str] = None) -> "Summary":
    """One dataset from shard folders made with the same config (``shards.index`` runs, or any
    simgen output folders of that config). Files are hard-linked where possible. With a single
    input and no ``out``, the input is finalized in place. Missing images are an error naming
    the index ranges, never a silently smaller dataset."""
    from . import engines

    if not inputs:
        raise SimGenError("simgen merge needs at least one shard folder (fix: simgen merge out/s0 out/s1 "
                          "--out out/all)")
    records = [(os.path.abspath(d), *_load_run(d)) for d in inputs]
    first_dir, first, cfg = records[0]
    for d, rec, _ in records[1:]:
        if rec["config"] != first["config"]:
            keys = _diff_keys(first["config"], rec["config"])[:4]
            raise OutputError(f"'{d}' was made with a different config than '{first_dir}' (differs in: "
                              f"{', '.join(keys)}); fix: merge only shards of one run")
    n = int(cfg.num_images)
    claimed = bytearray(n)  # one byte an image, not a dict entry (~100 bytes)

    def claim(have):  # the finished images of a folder that no earlier folder has
        for i in have:
            if not claimed[i]:
                claimed[i] = 1
                yield i

    owned = [engines.Indices(claim(engines.done_indices(os.path.join(d, WORK_DIR, "parts"), range(n))))
             for d, _, _ in records]
    missing = engines.Indices.marked(claimed, 0, 0)
    if missing:
        raise OutputError(f"{len(missing)} of {n} images are in none of the shards: indices "
                          f"{engines.format_ranges(missing)}; fix: "
                          f"finish the shard runs that make them (run the same command again), then merge")
    target = os.path.abspath(out) if out else first_dir
    if target != first_dir or len(records) > 1:
        _merge_into(target, records, owned)
    return finalize(target, extra={"merged_from": [d for d, _, _ in records]})


def _merge_into(target: str, records, owned: list) -> None:
    """Link each image (its files, then its part) into ``target`` from the folder of
    ``records`` that owns it (``owned``: per folder, the images it is the first to have)."""
    from .writers.common import link_or_copy as link

    first_dir, first, _ = records[0]
    if os.path.isdir(os.path.join(target, WORK_DIR)):
        rec, _ = _load_run(target)
        if rec["config"] != first["config"]:
            raise OutputError(f"--out '{target}' holds a dataset of another config; fix: choose a new folder")
    elif os.path.isdir(target) and os.listdir(target):
        raise OutputError(f"--out '{target}' is not empty; fix: choose a new or empty folder")
    parts_dir = os.path.join(target, WORK_DIR, "parts")
    try:
        for d in ("images", "masks", "depth", parts_dir):  # (normals/: made by _link_image when there are any)
            os.makedirs(os.path.join(target, d), exist_ok=True)
        for name in (os.path.join(WORK_DIR, RUN_FILE), "config.yaml"):
            if not os.path.exists(os.path.join(target, name)):
                shutil.copyfile(os.path.join(first_dir, name), os.path.join(target, name))
        for (d, _, _), mine in zip(records, owned):
            if d != target:
                for i in mine:
                    _link_image(d, i, target, link)
    except OSError as exc:
        raise OutputError(f"cannot merge into '{target}': {os_error_reason(exc)}; fix: free space or "
                          f"choose a writable --out, then merge again") from None


def _link_image(source: str, index: int, target: str, link) -> None:
    """Image ``index``'s files from folder ``source`` into folder ``target``, its part record
    last: the image is whole once that is there."""
    part_file = part_path(os.path.join(source, WORK_DIR, "parts"), index)
    img = read_part(part_file, index)["image"]
    if img.get("normals_file"):
        os.makedirs(os.path.dirname(os.path.join(target, img["normals_file"])), exist_ok=True)
    for rel in (f"images/{img['file_name']}", img["mask_file"], img.get("depth_file"), img.get("normals_file")):
        if rel:
            link(os.path.join(source, rel), os.path.join(target, rel))
    link(part_file, part_path(os.path.join(target, WORK_DIR, "parts"), index))


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
