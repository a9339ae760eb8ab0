"""Where images are made: in this process, in N local worker processes, or as Ray tasks on a
cluster. Every engine makes each image from (seed, index) alone and commits it with
:func:`simgen.pipeline.commit_image` (files first, part record last), so the bytes on disk do
not depend on the engine, the number of workers, crashes or retries.

Work is cut into *shards*: contiguous ranges of image indices. Local workers take one image
at a time (the finest load balance on one machine); a Ray task makes one shard. A worker that
dies (killed, out of memory, node lost) has its unfinished images run again, at most
``retries`` times; anything still missing after that is reported, never silently dropped.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import ConfigError, SimGenError
from .pipeline import Pipeline, commit_image, image_name, part_path

log = logging.getLogger("simgen")

# on_done(index, stage timings, GL_RENDERER string) is called once per committed image
OnDone = Callable[[int, Dict[str, float], Optional[str]], None]

# Test hook (used by the fault tests, harmless elsewhere): "<index>:<marker file>" makes the
# process about to make image <index> exit abruptly once, as if killed.
CRASH_ENV = "SIMGEN_TEST_CRASH_ONCE"


@dataclass(frozen=True)
class Shard:
    """Image indices ``start`` .. ``stop - 1``."""

    start: int
    stop: int

    @property
    def indices(self) -> range:
        return range(self.start, self.stop)

    def __str__(self) -> str:
        return f"[{self.start}, {self.stop})"


def shard_range(num_images: int, count: int, index: Optional[int]) -> Shard:
    """The contiguous range job ``index`` of ``count`` makes (all images when index is None)."""
    if index is None:
        return Shard(0, num_images)
    return Shard(index * num_images // count, (index + 1) * num_images // count)


def plan_shards(todo: Iterable[int], size: int) -> List[Shard]:
    """Cut the (sorted) indices still to make into contiguous shards of at most ``size``."""
    shards: List[Shard] = []
    for i in todo:
        if shards and shards[-1].stop == i and shards[-1].stop - shards[-1].start < size:
            shards[-1] = Shard(shards[-1].start, i + 1)
        else:
            shards.append(Shard(i, i + 1))
    return shards


def auto_shard_size(num_todo: int, slots: int) -> int:
    """About four shards per parallel slot (load balance), at most 100 images each."""
    return max(1, min(100, -(-num_todo // max(1, 4 * slots))))


def _crash_spec() -> Optional[Tuple[int, str]]:
    """(image index, marker file) of the crash test hook, or None when it is not set."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    at, marker = spec.split(":", 1)
    return int(at), marker


def _maybe_crash(index: int) -> None:
    spec = _crash_spec()
    if spec and spec[0] == index and not os.path.exists(spec[1]):
        open(spec[1], "w").close()
        os._exit(70)


def make_image(pipe: Pipeline, index: int):
    """(files {relative path: bytes}, part record, timings) of image ``index``."""
    _maybe_crash(index)
    sample = pipe.make(index)
    files, part = pipe.encode(sample)
    return files, part, dict(sample.timings)


def make_and_commit(pipe: Pipeline, index: int, output_dir: str, parts_dir: str) -> Dict[str, float]:
    """Make image ``index`` and commit it into output_dir; returns its stage timings."""
    _maybe_crash(index)
    sample = pipe.make(index)
    with _COMMITTING:
        pipe.write(sample, output_dir, parts_dir)
    return dict(sample.timings)


_COMMITTING = threading.Lock()  # held while an image's files are written (see _exit_with_parent)


class Indices:
    """Sorted image indices held as contiguous ranges: a million-image run's to-do list, or a
    shard folder's finished images, costs memory per gap, not per image (a list of 10M ints
    is ~360 MB in the main process)."""

    def __init__(self, indices: Iterable[int] = ()):
        self.ranges = plan_shards(indices, 1 << 62)  # indices: sorted, each once

    @classmethod
    def marked(cls, marks: bytearray, start: int, value: int) -> "Indices":
        """start + i for every i where marks[i] == value (marks: 0 or 1 bytes): found with
        bytes.find, one Python step per range, not per index."""
        want, other = bytes([value]), bytes([1 - value])
        out, i = cls(), marks.find(want)
        while i >= 0:
            j = marks.find(other, i)
            j = len(marks) if j < 0 else j
            out.ranges.append(Shard(start + i, start + j))
            i = marks.find(want, j)
        return out

    def __len__(self) -> int:
        return sum(s.stop - s.start for s in self.ranges)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(s.indices for s in self.ranges)


def _is_done(parts_dir: str, index: int) -> bool:
    return os.path.isfile(part_path(parts_dir, index))


def _image_index(stem: str) -> Optional[int]:
    """The image index a file stem names in image_name's form exactly, else None."""
    return int(stem) if stem.isdigit() and image_name(int(stem)) == stem else None


def _done_marks(parts_dir: str, indices: range) -> bytearray:
    """One byte per index of ``indices`` (step 1; ~1 MB per million images): 1 where the
    image's part record exists. One listing of the folder, not a stat per image (a run checks
    its folder at start and end: ~3x faster on a local disk, far more on network storage).
    Only the exact names part_path gives count, not temp files of an unfinished write."""
    assert indices.step == 1, indices
    marks = bytearray(len(indices))
    try:
        entries = os.scandir(parts_dir)
    except FileNotFoundError:
        return marks
    with entries:
        for e in entries:
            index = _image_index(e.name[:-5]) if e.name.endswith(".json") else None
            if index is not None and 0 <= index - indices.start < len(marks) and e.is_file():
                marks[index - indices.start] = 1
    return marks


def discard_stale_temps(output_dir: str, parts_dir: str, todo: Indices) -> int:
    """Delete the temporary files (io.AtomicFile) that a killed run left behind for images
    this run is about to make; returns how many. Only this run's images: a shard writing
    beside it into a shared folder owns other indices, and its temporary files are in flight."""
    import bisect

    from .io import temp_target
    from .writers.buffers import SUBDIRS

    if not todo:
        return 0
    starts = [r.start for r in todo.ranges]
    removed = 0
    for folder in [os.path.join(output_dir, d) for d in SUBDIRS] + [parts_dir]:
        try:
            entries = os.scandir(folder)
        except FileNotFoundError:
            continue
        with entries:
            for e in entries:
                i = _image_index((temp_target(e.name) or "").split(".")[0])
                if i is None:
                    continue
                k = bisect.bisect_right(starts, i) - 1
                if k >= 0 and i < todo.ranges[k].stop:
                    try:
                        os.unlink(e.path)
                        removed += 1
                    except FileNotFoundError:
                        pass
    return removed


def done_indices(parts_dir: str, indices: range) -> Indices:
    """The indices among ``indices`` whose image is complete (its part record exists)."""
    return Indices.marked(_done_marks(parts_dir, indices), indices.start, 1)


def missing_indices(parts_dir: str, indices: range) -> Indices:
    """The indices among ``indices`` whose image is not complete yet."""
    return Indices.marked(_done_marks(parts_dir, indices), indices.start, 0)


def format_ranges(indices: Sequence[int], most: int = 6) -> str:
    """Sorted indices as contiguous ranges: "[3, 6), [9, 10) ..."."""
    shards = plan_shards(sorted(indices), 1 << 30)
    return ", ".join(str(s) for s in shards[:most]) + (" ..." if len(shards) > most else "")


def unfinished_error(missing: Sequence[int], why: str) -> SimGenError:
    return SimGenError(f"{len(missing)} image(s) not made ({why}): indices {format_ranges(missing)}; "
                       f"finished images are kept: run the same command again to make the rest")


# ---- local ----------------------------------------------------------------------------

_WORKER: Optional[Pipeline] = None  # (or the SimGenError its config raised)
_WORKER_OUT = ("", "")


def _exit_with_parent(every: float = 1.0) -> None:
    """End this worker when the process that started it is gone (killed with SIGKILL): the
    pool's queues would otherwise keep it waiting forever, holding its memory and GL context."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(every)
            if os.getppid() != parent:
                with _COMMITTING:  # never in the middle of an image's files
                    os._exit(1)

    threading.Thread(target=watch, name="simgen-parent-watch", daemon=True).start()


def _init_worker(cfg_yaml: str, output_dir: str, parts_dir: str, lp_threads: Optional[str]) -> None:
    global _WORKER, _WORKER_OUT
    from omegaconf import OmegaConf

    _exit_with_parent()
    if lp_threads is not None:  # before this helper's GL context (made with its first image)
        os.environ["LP_NUM_THREADS"] = lp_threads

    _WORKER_OUT = (output_dir, parts_dir)
    try:
        _WORKER = Pipeline(OmegaConf.create(cfg_yaml))
    except SimGenError as exc:  # (the main process meets the same and says it in one line: no traceback here)
        _WORKER = exc


def _warm_up() -> None:
    """A helper's first task: its GL context and shaders, made while the main process is
    still starting, not with its first image."""
    if isinstance(_WORKER, Pipeline):
        _ = _WORKER.renderer  # made here, on purpose


class Helpers:
    """The spawned helper processes of a local run, started as early as the run knows it
    wants them: each needs ~2.5 s to import and make its GL context, which then overlaps the
    main process's own start-up (asset checks, GL context: ~1 s) instead of following it.
    They do nothing but warm up until run_local hands them images."""

    def __init__(self, cfg, output_dir: str, parts_dir: str, workers: int, count: int):
        from omegaconf import OmegaConf

        self.count = count
        self._initargs = (OmegaConf.to_yaml(cfg), output_dir, parts_dir, worker_lp_threads(workers))
        self.pool = self.new()
        for _ in range(count):  # (a pool spawns its processes as tasks arrive)
            self.pool.submit(_warm_up)

    @classmethod
    def start(cls, cfg, output_dir: str, parts_dir: str, workers: int, images: int) -> Optional["Helpers"]:
        """Helpers for a local run of ``images`` images at most, or None when it needs none."""
        count = min(workers, images) - 1
        return cls(cfg, output_dir, parts_dir, workers, count) if count >= 1 else None

    def new(self):
        """A fresh pool of ``count`` helpers (the first, or after one died)."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.count, mp_context=mp.get_context("spawn"),  # never fork a
                                   initializer=_init_worker, initargs=self._initargs)  # process holding GL

    def discard(self) -> None:
        """End the helpers now, warming up or idle (the run needs none, or it failed)."""
        if self.pool is None:
            return
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            proc.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = None


def _local_task(group: Tuple[int, ...]):
    if not isinstance(_WORKER, Pipeline):
        raise _WORKER
    return [(i, make_and_commit(_WORKER, i, *_WORKER_OUT), _WORKER.renderer.gl_renderer) for i in group]


def scene_groups(todo: Iterable[int], views: int) -> Iterator[Tuple[int, ...]]:
    """The (sorted) indices to make, grouped by scene: one process makes all of a scene's
    views in a row, so it settles the scene once (camera.views_per_scene)."""
    return (tuple(g) for _, g in itertools.groupby(todo, key=lambda i: i // views))


def llvmpipe_threads(cores: int) -> str:
    """LP_NUM_THREADS for a process given ``cores`` CPUs.

    With one core or less, llvmpipe rasterizes in the calling thread (0 threads). One raster
    thread would take no more CPU than that, but every pass hands its work to that thread
    and waits for it, and the thread often wakes on the other core, far from the caches the
    calling thread just filled: 2 workers on 2 cores made 300 images in 32.2 s with 0
    against 35.5 s with 1 thread (3 runs each, alternated). Pixels are the same."""
    return str(cores if cores > 1 else 0)


def worker_lp_threads(workers: int) -> Optional[str]:
    """llvmpipe starts one raster thread per core in every process: with several workers, the
    LP_NUM_THREADS each should have to share the cores instead; None to leave it alone (one
    worker, or the user set it)."""
    if workers > 1 and "LP_NUM_THREADS" not in os.environ:
        return llvmpipe_threads((os.cpu_count() or 1) // workers)
    return None


@contextmanager
def worker_env(workers: int):
    """LP_NUM_THREADS for this process's worker share while the block runs (make its GL
    context inside: llvmpipe reads the variable then), restored after it, so neither later
    runs in this Python process nor processes it starts afterwards inherit it."""
    lp = worker_lp_threads(workers)
    if lp is None:
        yield
        return
    os.environ["LP_NUM_THREADS"] = lp
    try:
        yield
    finally:
        os.environ.pop("LP_NUM_THREADS", None)


def run_local(cfg, pipe: Pipeline, todo: Indices, output_dir: str, parts_dir: str, workers: int,
              on_done: OnDone, helpers: Optional[Helpers] = None) -> None:
    """Make ``todo`` here, helped by ``workers - 1`` spawned processes when workers > 1
    (``helpers``, when the caller started them early; ended here either way).

    This process is a worker too: its pipeline is warm (assets checked, GL context made), so
    it makes images from the first second while the helpers import and start (~2.5 s each),
    and one process fewer holds a GL context. Helpers are kept two images ahead; this process
    takes the next image whenever it is free. A helper that dies has its unfinished images
    queued again and a new helper started, at most ``retries`` times; images lost with the
    last allowed helper are reported, never silently dropped."""
    from collections import deque

    if helpers is None:
        helpers = Helpers.start(cfg, output_dir, parts_dir, workers, len(todo))
    elif min(workers, len(todo)) < 2:
        helpers.discard()  # started for a run that turned out to need none (resumed, nearly done)
        helpers = None
    if helpers is None:
        try:
            for i in todo:
                on_done(i, make_and_commit(pipe, i, output_dir, parts_dir), pipe.renderer.gl_renderer)
        finally:
            pipe.close()
        return
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    views = int(cfg.camera.views_per_scene)
    fresh = scene_groups(todo, views)
    queue: deque = deque()  # scenes' images nobody has started: a few drawn from `fresh` at a time, retries first

    def fill() -> None:
        while len(queue) < 2 * helpers.count + 2:
            group = next(fresh, None)
            if group is None:
                return
            queue.append(group)

    crash = (_crash_spec() or (None,))[0]  # the crash test hook's image: left to helpers
    pending: Dict[object, Tuple[int, ...]] = {}  # helper futures -> image indices
    lost: List[int] = []  # in flight on a helper that died with no retries left
    retries = int(cfg.retries)
    used = 0
    ex, helpers.pool = helpers.pool, None
    try:
        while True:
            fill()
            if not (queue or pending):
                break
            finished = [f for f in pending if f.done()]
            broken = False
            for f in finished:
                group = pending.pop(f)
                try:
                    done = f.result()
                except BrokenProcessPool:
                    broken = True
                    pending[f] = group  # handled with the pool's other images below
                    continue
                for index, timings, gl in done:
                    on_done(index, timings, gl)
            if not broken and ex is not None:
                try:  # keep the helpers two images ahead
                    while queue and len(pending) < 2 * helpers.count:
                        pending[ex.submit(_local_task, queue[0])] = queue[0]
                        queue.popleft()
                except BrokenProcessPool:  # a helper died idle, between its images and new ones
                    broken = True
            if broken:
                dead = sorted(i for group in pending.values() for i in group)
                pending.clear()
                # Wait for the broken pool's manager thread (it has terminated the other
                # helpers): left running, it can close its wake-up pipe just as the
                # interpreter's exit hook writes to it, and "OSError: Bad file descriptor"
                # lands on stderr after simgen's error line (CPython 3.11 race, seen in CI).
                ex.shutdown(wait=True, cancel_futures=True)
                ex = None
                redo = []
                for i in dead:
                    if _is_done(parts_dir, i):  # committed by the helper before it died, not reported yet
                        on_done(i, {}, None)
                    else:
                        redo.append(i)
                if used < retries:
                    used += 1
                    log.warning(f"a worker process died (killed or out of memory); making its "
                                f"{len(redo)} unfinished image(s) again (retry {used} of {retries})")
                    queue.extendleft(reversed(list(scene_groups(redo, views))))
                    ex = helpers.new()
                else:
                    lost += redo
                continue
            mine = next((k for k, group in enumerate(queue) if crash not in group), None)
            if mine is not None:
                group = queue[mine]
                del queue[mine]
                for i in group:
                    on_done(i, make_and_commit(pipe, i, output_dir, parts_dir), pipe.renderer.gl_renderer)
            elif pending:
                wait(list(pending), return_when=FIRST_COMPLETED)
            elif ex is None:  # no helper left and only images this process must not make
                lost += [i for group in (*queue, *fresh) for i in group]
                queue.clear()
    except BaseException:
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)  # running images finish; queued ones are dropped
        pipe.close()
        raise
    if ex is not None:
        ex.shutdown(wait=True)
    pipe.close()
    if lost:
        raise unfinished_error(sorted(lost), f"worker processes kept dying; retries={retries} used up")


# ---- Ray ------------------------------------------------------------------------------

_RAY_PIPE: Tuple[str, Optional[Pipeline]] = ("", None)


def _ray_shard(cfg_yaml: str, start: int, stop: int, output_dir: Optional[str], parts_dir: Optional[str]):
    """A Ray task: make images start..stop-1. With shared storage, commit them here; else return
    the encoded files for the driver to commit. The Pipeline is cached per worker process."""
    global _RAY_PIPE
    from .version import __version__

    if _RAY_PIPE[0] != cfg_yaml:
        from omegaconf import OmegaConf

        if _RAY_PIPE[1] is not None:
            _RAY_PIPE[1].close()
        _RAY_PIPE = (cfg_yaml, Pipeline(OmegaConf.create(cfg_yaml)))
    pipe = _RAY_PIPE[1]
    out = []
    for i in range(start, stop):
        if parts_dir is not None and _is_done(parts_dir, i):
            continue  # a retried shard keeps what its first attempt committed
        if output_dir is not None:
            out.append((i, None, None, make_and_commit(pipe, i, output_dir, parts_dir)))
        else:
            out.append((i, *make_image(pipe, i)))
    return __version__, pipe.renderer.gl_renderer if out else None, out


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("engine=ray needs Ray (fix: pip install 'simgen[ray]', or engine=local)") from None
    return ray


def _probe(address: str) -> None:
    """Fail in seconds, not minutes, when a host:port cluster address does not answer (Ray
    itself keeps retrying for a long time)."""
    import socket

    hostport = address.split("://", 1)[-1]
    if ":" not in hostport:
        return  # "auto", "local": Ray resolves and fails fast itself
    host, port = hostport.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise SimGenError(f"cannot reach the Ray cluster at ray.address={address} ({exc}); fix: start it "
                          f"(ray start --head) or correct the address: auto on a cluster node, "
                          f"ray://<head>:10001 from outside, or null for a local instance") from None


def connect_ray(cfg) -> Callable[[], None]:
    """Connect to ``ray.address`` or start a local Ray instance (before any file is written);
    returns the function that disconnects again (a no-op if Ray was already initialised)."""
    ray = _import_ray()
    if ray.is_initialized():
        return lambda: None
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if cfg.ray.address:
        _probe(str(cfg.ray.address))
        kw["address"] = str(cfg.ray.address)
    elif cfg.workers:
        kw["num_cpus"] = int(cfg.workers) * int(cfg.ray.cpus_per_task)
    try:
        ray.init(**kw)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on the cause
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SimGenError(f"cannot start or reach Ray at {cfg.ray.address or 'a local instance'}: "
                          f"{first} (fix: ray.address=auto on a node of a running cluster, "
                          f"ray://<head>:10001 from outside, or null for a local instance)") from None
    return ray.shutdown


def run_ray(cfg, todo: Indices, output_dir: str, parts_dir: str, on_done: OnDone) -> None:
    """Make ``todo`` as Ray tasks, one per shard, on the connected Ray (see connect_ray)."""
    ray = _import_ray()
    from omegaconf import OmegaConf

    from .version import __version__

    cpus = int(cfg.ray.cpus_per_task)
    env = {"PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl"), "LP_NUM_THREADS": llvmpipe_threads(cpus)}
    if os.environ.get(CRASH_ENV):
        env[CRASH_ENV] = os.environ[CRASH_ENV]

    def slots() -> int:
        return max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))

    size = int(cfg.shards.size) or auto_shard_size(len(todo), slots())
    views = int(cfg.camera.views_per_scene)
    size = -(-size // views) * views  # whole scenes per shard: each settled once
    shards = iter(plan_shards(todo, size))
    task = ray.remote(_ray_shard).options(num_cpus=cpus, max_retries=int(cfg.retries),
                                          runtime_env={"env_vars": env})
    cfg_ref = ray.put(OmegaConf.to_yaml(cfg))
    shared = bool(cfg.ray.shared_storage)
    futures: Dict[object, Shard] = {}
    limit = 0

    def submit(refresh: bool) -> None:
        # A bounded number of shards in flight: each ray.wait below looks at every pending
        # task (all 100k shards of a 10M-image run at once made the driver quadratic), and
        # finished ones hold their images until the driver takes them. The cluster's size is
        # re-read now and then, so a cluster that grows (autoscaling) gets more in flight.
        nonlocal limit
        if refresh:
            limit = int(cfg.ray.max_pending) or max(16, 4 * slots())
        while len(futures) < limit:
            s = next(shards, None)
            if s is None:
                return
            futures[task.remote(cfg_ref, s.start, s.stop, output_dir if shared else None,
                                parts_dir if shared else None)] = s

    submit(refresh=True)
    failed: List[Tuple[Shard, str]] = []
    finished = 0
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1)
        shard = futures.pop(ready[0])
        finished += 1
        submit(refresh=finished % 32 == 0)
        try:
            version, gl, images = ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:  # the task raised
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SimGenError):  # bad input or a full disk: every shard would fail
                for f in futures:
                    ray.cancel(f)
                raise cause from None
            failed.append((shard, f"{type(cause or exc).__name__}: {str(cause or exc).splitlines()[0]}"))
            continue
        except ray.exceptions.RayError as exc:  # worker or node died more than `retries` times
            failed.append((shard, type(exc).__name__))
            continue
        if version != __version__:
            raise SimGenError(f"a Ray worker runs simgen {version}, this driver {__version__}; the "
                              f"images would differ (fix: install the same simgen on every node)")
        for i, files, part, timings in images:
            if not shared:
                t0 = time.perf_counter()
                commit_image(output_dir, parts_dir, i, files, part)
                timings["write"] += time.perf_counter() - t0
            on_done(i, timings, gl)
    if failed:
        missing = [i for s, _ in failed for i in s.indices if not _is_done(parts_dir, i)]
        why = f"{len(failed)} shard(s) failed after {cfg.retries} retries, first: {failed[0][0]} {failed[0][1]}"
        raise unfinished_error(missing, why)
