"""The ``simgen`` command: a Hydra-configured generator.

    simgen [key=value ...]      generate a dataset (Hydra override syntax)
    simgen --cfg [overrides]    print the composed config and exit
    simgen --help               this text

Configs are composed with Hydra's compose API from the packaged ``configs/`` (so they work
from a wheel), and every bad input ends in one line on stderr and a non-zero exit code.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import List, Optional

USAGE = """usage: simgen [--cfg] [key=value ...]
       simgen -m [--jobs N] key=a,b other=x,y ...   (one dataset per combination)
       simgen validate <dataset> [--workers N]
       simgen merge <shard folder> [...] [--out DIR]   (shards.count=N shards.index=K runs)
       simgen export <dataset> --to yolo[,voc,semantic] [--segments | --obb | --pose]
       simgen preview <dataset> [--n 16] [--indices 0,5,9] [--amodal] [--depth] [--instances] [--out F]
       simgen report <dataset> [--against real/annotations.json [--real-images DIR]] [--out DIR]
       simgen evaluate <dataset> --predictions results.json [--iou 0.5] [--score 0] [--out DIR]
       simgen focus <eval.json> [--factor 2] [--floor 0.5] [--out focus.yaml]; then simgen focus=focus.yaml ...

Generate a labeled synthetic dataset. Common keys:
  num_images=50 seed=0 output_dir=out/demo workers=<cores> overwrite=false
  engine=local|ray shards.count=1 shards.index=null retries=2
  scene=tabletop camera.width=640 camera.height=480
  objects.count=[3,15] objects.asset_sets=[primitives,pybullet]
`simgen --cfg` prints every key with its current value. See README.md (config reference).
"""


def _validate(args: List[str]) -> int:
    import argparse

    from .config import usable_cores
    from .validate import validate_dataset, warnings

    ap = argparse.ArgumentParser(prog="simgen validate", description="Check a dataset on disk.")
    ap.add_argument("dataset")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes checking images (default: one per CPU core this process may use)")
    a = ap.parse_args(args)
    workers = a.workers if a.workers is not None else usable_cores()
    if workers < 1:
        ap.error("--workers must be >= 1")
    problems = validate_dataset(a.dataset, processes=workers)
    for w in warnings(a.dataset):
        print(f"warning: {w}")
    for p in problems:
        print(f"problem: {p}")
    if problems:
        print(f"simgen: {a.dataset}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"simgen: {a.dataset}: valid")
    return 0


def _export(args: List[str]) -> int:
    import argparse
    import os

    from .dataset import claim
    from .errors import OutputError, SimGenError
    from .io import os_error_reason
    from .writers import EXPORTERS, export
    from .writers.coco import ANNOTATIONS_FILE, dataset_annotations, not_coco, read_coco

    ap = argparse.ArgumentParser(prog="simgen export", description="Write other formats from a dataset's COCO.")
    ap.add_argument("dataset")
    ap.add_argument("--to", required=True, help=f"comma-separated: {', '.join(sorted(EXPORTERS))}")
    ap.add_argument("--segments", action="store_true", help="YOLO segmentation polygons instead of boxes")
    ap.add_argument("--obb", action="store_true", help="YOLO oriented boxes (Ultralytics OBB task) instead of boxes")
    ap.add_argument("--pose", action="store_true", help="YOLO boxes with keypoints (Ultralytics pose task)")
    a = ap.parse_args(args)
    if a.segments + a.obb + a.pose > 1:
        raise SimGenError("--segments, --obb and --pose: give one; a YOLO label file holds one kind")
    fmts = [f for f in a.to.split(",") if f and f != "coco"]
    unknown = [f for f in fmts if f not in EXPORTERS]
    if len(set(fmts)) < len(fmts):
        raise SimGenError(f"--to names a format twice: {a.to} (fix: name each once)")
    if (a.segments or a.obb or a.pose) and "yolo" not in fmts:
        raise SimGenError("--segments, --obb and --pose shape YOLO labels, and --to has no yolo (fix: --to yolo)")
    if not fmts and not unknown:
        raise SimGenError(f"--to {a.to!r} names no format to write (COCO is the dataset itself); known: "
                          f"{', '.join(sorted(EXPORTERS))}")
    path = os.path.join(a.dataset, ANNOTATIONS_FILE)
    if unknown:
        raise SimGenError(f"unknown format(s) {unknown}; known: {', '.join(sorted(EXPORTERS))}")
    dataset_annotations(path)
    claim(a.dataset, [EXPORTERS[f].folder for f in fmts])
    options = {"yolo_segments": a.segments, "yolo_obb": a.obb, "yolo_pose": a.pose}
    try:  # read as a stream: a million-image annotations.json (~10 GB) is never loaded whole
        folders = read_coco(path, lambda coco: export(a.dataset, coco, fmts, options))
    except (ValueError, KeyError) as exc:
        raise not_coco(path, exc, "point simgen export at a dataset folder that simgen wrote") from None
    except FileNotFoundError as exc:
        raise SimGenError(f"'{exc.filename}', named in {path}, is missing, so nothing was exported (fix: restore "
                          f"it, or export a complete dataset; `simgen validate {a.dataset}` lists what is "
                          f"missing)") from None
    except OSError as exc:
        raise OutputError(f"cannot write the export in '{a.dataset}' ({exc.filename or ''}: {os_error_reason(exc)}); "
                          f"no half-written export is left (fix: free space or fix permissions, then run "
                          f"the same command again)") from None
    for folder in folders:
        print(f"simgen: wrote {folder}")
    return 0


def _preview(args: List[str]) -> int:
    import argparse
    import os

    from .errors import SimGenError

    ap = argparse.ArgumentParser(prog="simgen preview", description="Contact sheet of labeled images.")
    ap.add_argument("dataset")
    ap.add_argument("--n", type=int, default=16, help="random images to show (default 16)")
    ap.add_argument("--indices", help="comma-separated image indices instead of random ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cols", type=int, help="images per row (default 4, or fewer with --depth/--instances)")
    ap.add_argument("--amodal", action="store_true", help="also draw amodal boxes")
    ap.add_argument("--depth", action="store_true", help="depth beside each image")
    ap.add_argument("--instances", action="store_true", help="instance map beside each image")
    ap.add_argument("--out", help="PNG to write (default <dataset>/preview.png)")
    a = ap.parse_args(args)
    import cv2

    from .dataset import PREVIEW_FILE, claim_path
    from .preview import contact_sheet

    if a.n < 1:
        raise SimGenError(f"--n must be >= 1, got {a.n} (fix: --n 16)")
    try:
        idx = [int(v) for v in a.indices.split(",") if v.strip()] if a.indices else None
    except ValueError:
        raise SimGenError(f"--indices takes image indices separated by commas, got {a.indices!r} "
                          f"(fix: --indices 0,5,12)") from None
    if idx is not None and (not idx or min(idx) < 0):
        raise SimGenError(f"--indices takes image indices >= 0, got {a.indices!r} (fix: --indices 0,5,12)")
    sheet = contact_sheet(a.dataset, a.n, idx, a.seed, a.amodal, a.depth, a.instances, a.cols)
    out = a.out or os.path.join(a.dataset, PREVIEW_FILE)
    claim_path(a.dataset, out)
    if not cv2.imwrite(out, sheet[..., ::-1]):
        raise SimGenError(f"cannot write {out} (fix: --out to a writable path ending in .png)")
    print(f"simgen: preview written to {out}")
    return 0


def _report(args: List[str]) -> int:
    import argparse
    import os

    from .errors import SimGenError

    ap = argparse.ArgumentParser(prog="simgen report", description="HTML report, plots and quality flags.")
    ap.add_argument("dataset")
    ap.add_argument("--against", help="a real dataset's COCO annotations to compare with")
    ap.add_argument("--real-images", help="folder of the real images (colour statistics)")
    ap.add_argument("--out", help="folder to write (default <dataset>/report)")
    a = ap.parse_args(args)
    from .dataset import REPORT_DIR, claim_path
    from .report import write_report

    if a.against and not os.path.isfile(a.against):
        raise SimGenError(f"--against {a.against}: no such file (fix: give a COCO annotations JSON)")
    out = a.out or os.path.join(a.dataset, REPORT_DIR)
    claim_path(a.dataset, out)
    path = write_report(a.dataset, out, a.against, a.real_images)
    print(f"simgen: report written to {path}")
    return 0


def _evaluate(args: List[str]) -> int:
    import argparse
    import os

    from .errors import SimGenError

    ap = argparse.ArgumentParser(prog="simgen evaluate",
                                 description="A detector's COCO results against a dataset, overall and per slice.")
    ap.add_argument("dataset", help="a dataset folder (its annotations.json) or a COCO instances file")
    ap.add_argument("--predictions", required=True, help="COCO results JSON: [{image_id, category_id, bbox, score}]")
    ap.add_argument("--out", help="folder to write eval.json in (default <dataset>/evaluate)")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU at which an object counts as found (default 0.5)")
    ap.add_argument("--score", type=float, default=0.0,
                    help="lowest detection score that finds an object (default 0: every detection, COCO's recall)")
    ap.add_argument("--min-count", type=int, default=30, help="objects a slice needs to be ranked (default 30)")
    ap.add_argument("--images", help="folder of the images: brightness slices and the page's missed objects "
                                     "(default: the dataset's)")
    a = ap.parse_args(args)
    from .dataset import EVALUATE_DIR, claim_path
    from .evaluate import evaluate, summary, write
    from .writers.coco import ANNOTATIONS_FILE

    folder = os.path.isdir(a.dataset)
    ann = os.path.join(a.dataset, ANNOTATIONS_FILE) if folder else a.dataset
    if not os.path.isfile(ann):
        raise SimGenError(f"{ann}: no such file (fix: give a dataset folder with annotations.json, or a COCO file)")
    if a.min_count < 1:
        raise SimGenError(f"--min-count must be >= 1, got {a.min_count}")
    root = a.images or (a.dataset if folder else os.path.dirname(os.path.abspath(ann)))
    result = evaluate(ann, a.predictions, iou=a.iou, score=a.score, min_count=a.min_count, image_root=root)
    out = a.out or os.path.join(a.dataset if folder else os.path.dirname(os.path.abspath(ann)), EVALUATE_DIR)
    if folder:
        claim_path(a.dataset, out)
    print(summary(result))
    print(f"simgen: evaluation written to {write(result, out, root)} (and index.html beside it)")
    return 0


def _focus(args: List[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="simgen focus",
                                 description="A config that shifts the next dataset toward the slices a detector fails on.")
    ap.add_argument("eval_json", help="simgen evaluate's eval.json")
    ap.add_argument("--factor", type=float, default=2.0, help="the most any share may grow (default 2x)")
    ap.add_argument("--floor", type=float, default=0.5, help="the least any share keeps (default 0.5x)")
    ap.add_argument("--out", help="the file to write (default: focus.yaml beside eval.json)")
    a = ap.parse_args(args)
    from .errors import SimGenError
    from .focus import default_path, focus, write
    from .io import load_json

    result = load_json(a.eval_json, "simgen evaluate's eval.json", "simgen evaluate <dataset> --predictions ...")
    if not isinstance(result, dict):
        raise SimGenError(f"{a.eval_json} is not an eval.json of simgen evaluate (fix: simgen evaluate ...)")
    text, _ = focus(result, a.factor, a.floor)
    path = write(text, default_path(a.eval_json, a.out))
    print(text.rstrip())
    print(f"simgen: focus written to {path}; use it: simgen focus={path} num_images=... output_dir=...")
    return 0


def _multirun(args: List[str]) -> int:
    from .errors import ConfigError

    jobs = 1
    if len(args) >= 2 and args[0] in ("--jobs", "-j"):
        try:
            jobs = int(args[1])
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise ConfigError(f"--jobs takes a whole number >= 1, got {args[1]!r} (fix: --jobs 2)")
        args = args[2:]
    from .sweep import run_sweep

    base = run_sweep(args, jobs=jobs)
    print(f"simgen: sweep written to {base} (one dataset per combination; see sweep.json)")
    return 0


def _generate(argv: List[str]) -> int:
    from .errors import ConfigError

    show_cfg = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    bad = [a for a in overrides if a.startswith("-")]
    if bad:
        raise ConfigError(f"unknown option {bad[0]} (fix: see `simgen --help`; config values are "
                          f"given as key=value)")
    from .config import compose, to_yaml

    cfg = compose(overrides)
    if show_cfg:
        print(to_yaml(cfg), end="")
        return 0
    from .runner import run

    summary = run(cfg)
    if summary.shard is None:
        print(f"simgen: dataset written to {summary.output_dir} (COCO: {summary.annotations_file})")
    print(f"simgen: {summary.line()}")
    if summary.gl_renderer:
        print(f"simgen: GL_RENDERER {summary.gl_renderer}")
    return 0


def _merge(args: List[str]) -> int:
    import argparse

    from .runner import merge

    ap = argparse.ArgumentParser(prog="simgen merge", description="One dataset from shard folders of one run.")
    ap.add_argument("shards", nargs="+", help="folders written by runs with shards.index=K")
    ap.add_argument("--out", help="dataset folder to build (default: finalize a single shard folder in place)")
    a = ap.parse_args(args)
    summary = merge(a.shards, a.out)
    print(f"simgen: dataset written to {summary.output_dir} (COCO: {summary.annotations_file})")
    print(f"simgen: {summary.num_images} images, {sum(summary.instances.values())} instances merged "
          f"from {len(a.shards)} folder(s)")
    return 0


COMMANDS = {"merge": _merge, "validate": _validate, "export": _export, "preview": _preview, "report": _report,
            "evaluate": _evaluate, "focus": _focus}


def main(argv: Optional[List[str]] = None) -> int:
    """Dispatch a sub-command; every SimGenError becomes one line on stderr and its exit code."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # headless OpenGL, for this process and its workers
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        command, argv = COMMANDS[argv[0]], argv[1:]
    elif any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    elif argv and argv[0] in ("-m", "--multirun"):
        command, argv = _multirun, argv[1:]
    else:
        command = _generate
    logging.basicConfig(level=logging.WARNING, format="simgen: %(message)s")
    from .errors import SimGenError

    try:
        return command(argv)
    except SimGenError as exc:
        print(f"simgen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("simgen: interrupted; finished images are kept: run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
