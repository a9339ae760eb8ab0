"""The dataset folder on disk: which of its paths are simgen's (a manifest in ``.simgen/``
proves it), the lock a run holds while it writes there, what ``overwrite=true`` may remove,
and the part records that mark images complete.

Ownership rules (README, Reliability):
- a folder is simgen's only if ``.simgen/run.json`` or ``.simgen/owned.json`` is in it;
  ``overwrite=true`` on any other non-empty folder is refused, nothing is removed;
- in a folder of simgen's, overwrite removes the top-level entries the manifest lists (each
  recorded by the command that wrote it: a run, ``export``, ``report``, ``preview``) and,
  inside the per-image folders, only files named as simgen names images; everything else
  (a user's notes, photos beside ours) stays;
- an owned entry that is a symbolic link is never followed: overwrite refuses instead."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from typing import Dict, Iterable, List, Optional

from .errors import OutputError
from .io import atomic_write_json, temp_target

WORK_DIR = ".simgen"
RUN_FILE = "run.json"
MANIFEST_FILE = "owned.json"
LOCK_FILE = "lock"
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "run_summary.json"
REPORT_DIR = "report"
EVALUATE_DIR = "evaluate"
PREVIEW_FILE = "preview.png"
IMAGE_DIRS = ("images", "masks", "depth", "normals")  # per-image files: <image_name(index)>.<ext>

# Every top-level entry a simgen command may write into a dataset -> what writes it. Filled
# by the writers' registry (each format's folder, COCO's files) and by the commands below;
# it is the fallback list for folders made before the manifest existed, and what
# ``simgen validate`` checks leftovers against.
OUTPUTS: Dict[str, str] = {**{d: "every run" for d in IMAGE_DIRS}, CONFIG_FILE: "every run",
                           SUMMARY_FILE: "every run", REPORT_DIR: "simgen report", EVALUATE_DIR: "simgen evaluate",
                           PREVIEW_FILE: "simgen preview"}


def register_output(name: str, what: str) -> str:
    """Declare a top-level entry that ``what`` writes into datasets; returns ``name``."""
    OUTPUTS[name] = what
    return name


def image_name(index: int) -> str:
    return f"{index:06d}"


def part_path(parts_dir: str, index: int) -> str:
    """Image ``index``'s part record: written last, its existence marks the image complete."""
    return os.path.join(parts_dir, f"{image_name(index)}.json")


def work_path(out: str, name: str = "") -> str:
    return os.path.join(out, WORK_DIR, name) if name else os.path.join(out, WORK_DIR)


def is_simgen_folder(out: str) -> bool:
    """True when ``out`` holds simgen's records (a run's record, or the ownership manifest)."""
    return any(os.path.isfile(work_path(out, f)) for f in (RUN_FILE, MANIFEST_FILE))


def is_empty(out: str) -> bool:
    """True for a folder with nothing in it but, perhaps, the lock files of a run that died
    before it wrote anything."""
    for name in os.listdir(out):
        if name != WORK_DIR or any(not n.startswith(LOCK_FILE) for n in os.listdir(work_path(out))):
            return False
    return True


def is_image_file(name: str) -> bool:
    """True for a per-image file as simgen names it (``000042.png``, ``1000000.png``), or a
    temporary file of one (see io.AtomicFile)."""
    stem = (temp_target(name) or name).split(".", 1)[0]
    return stem.isdigit() and image_name(int(stem)) == stem


# ---- the manifest ---------------------------------------------------------------------

def owned(out: str) -> List[str]:
    """The top-level entries of ``out`` that simgen's records say it wrote (the manifest; for
    a folder of an older simgen without one, every entry a simgen command may write)."""
    try:
        with open(work_path(out, MANIFEST_FILE), encoding="utf-8") as f:
            entries = json.load(f)["entries"]
        if isinstance(entries, list) and all(isinstance(e, str) for e in entries):
            return sorted(set(entries))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return sorted(OUTPUTS)


def claim(out: str, names: Iterable[str], check: bool = True) -> None:
    """Record top-level entries of ``out`` that simgen is about to write in its manifest,
    before writing them; with ``check``, refuse (OutputError) if one exists already and simgen
    did not write it (a user's own ``yolo/`` would otherwise be replaced). No-op in a folder
    that is not simgen's (``simgen export`` and ``report`` also serve other COCO datasets)."""
    names = sorted({n.split("/", 1)[0] for n in names if n})
    if not names or not os.path.isfile(work_path(out, RUN_FILE)):
        return
    with open(work_path(out, "owned.lock"), "a") as lock:  # read-modify-write by one process at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        have = set(owned(out)) if check or os.path.isfile(work_path(out, MANIFEST_FILE)) else set()  # (a new folder)
        foreign = [n for n in names if check and n not in have and os.path.lexists(os.path.join(out, n))]
        if foreign:
            raise OutputError(f"'{os.path.join(out, foreign[0])}' exists and simgen did not write it, so it will not "
                              f"replace it; fix: move it out of the dataset folder, then run the same command again")
        if not set(names) <= have or not os.path.isfile(work_path(out, MANIFEST_FILE)):
            atomic_write_json(work_path(out, MANIFEST_FILE), {"entries": sorted(have | set(names))}, indent=1)


def claim_path(dataset: str, path: str) -> None:
    """:func:`claim` for ``path`` (a file or folder a sub-command writes) if it lies inside
    ``dataset``."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(dataset))
    if not rel.startswith(os.pardir) and rel != os.curdir:
        claim(dataset, [rel.split(os.sep, 1)[0]])


# ---- overwrite ------------------------------------------------------------------------

def clean(out: str, what: str) -> None:
    """Remove what simgen wrote in ``out`` (see the module's ownership rules), for
    ``overwrite=true``. ``what`` names the folder in errors. Refuses, removing nothing, on a
    folder that is not simgen's or an owned entry that is a symbolic link. The run's lock
    file, run.json and the manifest stay (the caller rewrites them): a clean killed halfway
    is finished by the next overwrite."""
    if not is_simgen_folder(out):
        raise OutputError(f"output_dir '{what}' is not empty and has no simgen records ({WORK_DIR}/{RUN_FILE}), "
                          f"so overwrite=true will not delete anything in it; fix: choose an empty or new "
                          f"output_dir, or move its files away yourself")
    entries = [e for e in owned(out) if e != WORK_DIR and os.path.lexists(os.path.join(out, e))]
    links = [e for e in entries + [WORK_DIR] if os.path.islink(os.path.join(out, e))]
    if links:
        raise OutputError(f"'{os.path.join(what, links[0])}' is a symbolic link; overwrite=true does not follow "
                          f"links and removed nothing (fix: replace the link by a real folder, or choose "
                          f"another output_dir)")
    for name in entries:
        path = os.path.join(out, name)
        if name in IMAGE_DIRS and os.path.isdir(path):
            with os.scandir(path) as it:
                for e in it:
                    if is_image_file(e.name) and not e.is_dir(follow_symlinks=False):
                        os.unlink(e.path)
            if not os.listdir(path):
                os.rmdir(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    keep = {LOCK_FILE, RUN_FILE, MANIFEST_FILE}
    with os.scandir(work_path(out)) as it:
        for e in it:
            if e.name not in keep:
                shutil.rmtree(e.path) if e.is_dir(follow_symlinks=False) else os.unlink(e.path)
    atomic_write_json(work_path(out, MANIFEST_FILE), {"entries": [WORK_DIR]}, indent=1)


def discard_top_temps(out: str) -> int:
    """Delete the temporary files and folders a failed merge or export left at the top of
    ``out`` (``.tmp-*-annotations.json``, ``yolo.tmp-export``, ``voc.old-export`` ...): only
    those of entries simgen writes. Call it holding the merge lock. Returns how many."""
    removed = 0
    for folder, names in ((out, OUTPUTS), (work_path(out), (RUN_FILE, MANIFEST_FILE))):
        for name in os.listdir(folder):
            base = name.rsplit(".", 1)[0] if name.endswith((".tmp-export", ".old-export")) else None
            if temp_target(name) in names or base in names:
                path = os.path.join(folder, name)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
                removed += 1
    return removed


# ---- the run lock ---------------------------------------------------------------------

class RunLock:
    """The advisory lock (``flock``) a run holds on ``.simgen/lock`` while it writes into a
    folder: exclusive for a whole run, shared for one shard of several (shards of one run
    write side by side by design) plus an exclusive lock of that shard's own. A second run
    into the same images refuses at once, naming the process that holds it. The OS drops
    the lock when its holder dies, however it dies."""

    def __init__(self, out: str, what: str, shard: Optional[tuple] = None):
        self.out, self.what, self.shard = out, what, shard  # shard: (index, count) or None
        self._files: list = []

    def acquire(self) -> None:
        if self._files:
            return
        os.makedirs(work_path(self.out), exist_ok=True)
        try:
            self._take(LOCK_FILE, fcntl.LOCK_SH if self.shard else fcntl.LOCK_EX)
            if self.shard:
                self._take(f"lock-shard-{self.shard[0]}-of-{self.shard[1]}", fcntl.LOCK_EX)
        except BaseException:
            self.release()
            raise

    def _take(self, name: str, mode: int) -> None:
        path = work_path(self.out, name)
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            who = f"simgen {holder}" if holder else "another simgen run (shards of one run)"
            raise OutputError(f"output_dir '{self.what}' is in use by {who}; fix: wait for that run to finish "
                              f"(or stop it), or choose another output_dir") from None
        if mode == fcntl.LOCK_EX:
            f.truncate(0)
            f.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
            f.flush()
        self._files.append(f)

    def release(self) -> None:
        for f in reversed(self._files):
            f.close()  # closing drops the flock
        self._files = []


# ---- part records ---------------------------------------------------------------------

class CorruptPart(OutputError):
    """A part record that does not parse as one (truncated, empty, ``{}``, another image's):
    its image is unfinished and is made again by the next run."""

    def __init__(self, path: str, why: str):
        super().__init__(path, why)
        self.path, self.why = path, why

    def __str__(self) -> str:
        return (f"the part record {self.path} is corrupt ({self.why}); fix: run the command that made the "
                f"dataset again: it makes that image again and keeps the others")


def read_part(path: str, index: Optional[int] = None) -> dict:
    """The part record at ``path`` (of image ``index`` when given), checked for the keys every
    reader uses; raises CorruptPart for anything else (FileNotFoundError if it is missing)."""
    try:
        with open(path, "rb") as f:
            part = json.loads(f.read())
        img = part["image"]
        ok = (isinstance(img, dict) and isinstance(part["annotations"], list)
              and isinstance(img["index"], int) and isinstance(img["file_name"], str)
              and all(isinstance(a, dict) for a in part["annotations"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptPart(path, f"{type(exc).__name__}: {exc}"[:120]) from None
    if not ok:
        raise CorruptPart(path, "not an image record")
    if index is not None and img["index"] != index:
        raise CorruptPart(path, f"it records image {img['index']}, not {index}")
    return part


def discard_corrupt_parts(parts_dir: str, n: int) -> List[int]:
    """Delete the part records of images 0 .. n-1 that do not parse (so those images count
    as unfinished and are made again); returns their indices. One read of every part: only
    on the path where the merge found a corrupt one."""
    bad = []
    for i in range(n):
        path = part_path(parts_dir, i)
        try:
            read_part(path, i)
        except FileNotFoundError:
            continue
        except CorruptPart:
            os.unlink(path)
            bad.append(i)
    return bad
