"""simgen focus: from an evaluation (eval.json), a config that shifts the next dataset toward
the slices the detector fails on, bounded so that the dataset still covers everything.

``focus.yaml`` is a flat mapping of config keys (dotted) to values, each preceded by comments
naming the slices and figures that set it; ``simgen focus=focus.yaml ...`` applies it before
the other overrides (a key given on the command line as a list or mapping wins; edit the file
to change the others). What it moves today:

- ``objects.class_weights``: each class's share of the objects is multiplied by
  (1 - its recall) / (1 - the overall recall), clipped to [floor, factor] and renormalised,
  so no class's share grows more than ``factor`` times and none falls below ``floor`` times;
- ``edge_cases.<condition>``: each condition's probability is multiplied the same way (its
  objects' recall against the overall), clipped to [floor, factor] times and to at most 1.
A slice with fewer than the evaluation's ``min_count`` objects, or whose 95% interval holds
the overall recall, is not a finding and keeps its share. Shares are those measured on the
evaluated dataset's labels and the bounds apply to the change the weights make: the next
dataset's shares move by those factors in expectation, each dataset's measured shares also
carrying its own sampling noise.

The other slices (visibility, size, distance, view direction) are listed as comments with
their recall: simgen has no single knob for them yet."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import SimGenError

FOCUS_FILE = "focus.yaml"


def bounded_shares(shares: Dict[str, float], wanted: Dict[str, float], floor: float, factor: float
                   ) -> Dict[str, float]:
    """New shares (summing to 1) near ``shares[k] * wanted[k]`` renormalised, with every ratio
    new / old kept within [floor, factor]: the ratios are clipped and the rest renormalised
    over the unclipped ones until none is out of bounds (water-filling)."""
    keys = [k for k in shares if shares[k] > 0]
    s = np.array([shares[k] for k in keys], float)
    s /= s.sum()
    q = np.clip(np.array([wanted[k] for k in keys], float), floor, factor)
    fixed = np.zeros(len(keys), bool)
    ratio = q.copy()
    for _ in range(4 * len(keys) + 4):
        free = ~fixed
        budget = 1.0 - (s[fixed] * ratio[fixed]).sum()
        mass = (s[free] * q[free]).sum()
        ratio[free] = q[free] * (budget / mass if mass > 0 else 0.0)
        hi, lo = free & (ratio > factor + 1e-12), free & (ratio < floor - 1e-12)
        if not hi.any() and not lo.any():
            break
        ratio[hi], ratio[lo] = factor, floor
        fixed |= hi | lo
    new = s * ratio
    return {k: float(v) for k, v in zip(keys, new / new.sum())}


def _source_config(result: dict) -> dict:
    """The config.yaml beside the evaluated annotations ({} for a dataset without one)."""
    import yaml

    path = os.path.join(os.path.dirname(result.get("annotations", "")), "config.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        return cfg if isinstance(cfg, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def _wanted(s: dict, overall: float, min_count: int) -> float:
    """How much more of slice ``s`` the next dataset wants: its miss rate over the overall one;
    1 (no change) for a slice under ``min_count`` objects or whose interval holds the overall
    recall (not a finding)."""
    if overall >= 1.0 or s["instances"] < min_count or s["ci95"][0] <= overall <= s["ci95"][1]:
        return 1.0
    return (1.0 - s["recall"]) / (1.0 - overall)


def _row(s: dict) -> str:
    return f"recall {s['recall']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] of {s['instances']} objects"


def focus(result: dict, factor: float = 2.0, floor: float = 0.5) -> Tuple[str, Dict[str, object]]:
    """(focus.yaml's text, its mapping) for the evaluation ``result`` (eval.json's content)."""
    if not factor >= 1.0 or not 0.0 < floor <= 1.0:
        raise SimGenError(f"--factor must be >= 1 and --floor in (0, 1], got {factor} and {floor} (fix: --factor 2 "
                          f"--floor 0.5)")
    try:
        overall, slices = float(result["recall"]), result["slices"]
        classes = {s["value"]: s for s in slices["class"]}
    except (KeyError, TypeError, ValueError):
        raise SimGenError("this is not an eval.json of simgen evaluate (it has no recall or class slices); fix: "
                          "simgen evaluate <dataset> --predictions <results.json>") from None
    src = _source_config(result)
    objects = src.get("objects") if isinstance(src.get("objects"), dict) else {}
    old_w = {str(k): float(v) for k, v in (objects.get("class_weights") or {}).items()}
    lines = [f"# simgen focus: from {result.get('predictions')} against {result.get('annotations')}",
             f"# overall recall {overall:.3f} at IoU {result.get('iou')}; no share grows more than {factor:g}x or "
             f"falls below {floor:g}x.", "# Use: simgen focus=<this file> num_images=... output_dir=...", ""]
    out: Dict[str, object] = {}
    total = sum(s["instances"] for s in classes.values())
    shares = {c: s["instances"] / total for c, s in classes.items()} if total else {}
    min_count = int(result.get("min_count", 30))
    new = bounded_shares(shares, {c: _wanted(s, overall, min_count) for c, s in classes.items()}, floor, factor) \
        if shares else {}
    if new:
        weights = {c: old_w.get(c, 1.0) * new[c] / shares[c] for c in new}
        top = max(weights.values())
        weights = {c: round(w / top, 4) for c, w in sorted(weights.items())}
        lines.append("# objects.class_weights: each class's share of the objects (measured -> next dataset)")
        for c in sorted(new, key=lambda c: classes[c]["recall"]):
            lines.append(f"#   {c}: {_row(classes[c])}; share {shares[c]:.3f} -> {new[c]:.3f} "
                         f"(x{new[c] / shares[c]:.2f})")
        lines.append(f"objects.class_weights: {json.dumps(weights)}")
        lines.append("")
        out["objects.class_weights"] = weights
    conditions = src.get("edge_cases") if isinstance(src.get("edge_cases"), dict) else {}
    for s in sorted(slices.get("condition", []), key=lambda s: s["recall"]):
        name = s["value"]
        cond = conditions.get(name)
        if name == "none" or not isinstance(cond, dict) or not isinstance(cond.get("p"), (int, float)):
            continue
        p = float(cond["p"])
        q = float(np.clip(_wanted(s, overall, min_count), floor, factor))
        new_p = round(min(1.0, p * q), 4)
        if new_p == round(p, 4):
            continue
        lines.append(f"# edge_cases.{name}: condition={name}: {_row(s)}; p {p:g} -> {new_p:g}")
        lines.append(f"edge_cases.{name}: {json.dumps({**cond, 'p': new_p})}")
        lines.append("")
        out[f"edge_cases.{name}"] = {**cond, "p": new_p}
    other = [s | {"slice": k} for k, rows in slices.items() if k not in ("class", "condition") for s in rows
             if s["instances"] >= result.get("min_count", 30)]
    if other:
        lines.append("# Slices without a knob here yet (worst first):")
        for s in sorted(other, key=lambda s: s["recall"])[:12]:
            lines.append(f"#   {s['slice']}={s['value']}: {_row(s)}")
    return "\n".join(lines) + "\n", out


def load(path: str) -> List[Tuple[str, object]]:
    """focus.yaml's (dotted key, value) pairs, in file order; one-line errors for a bad file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise SimGenError(f"focus={path}: no such file (fix: make one with simgen focus <eval.json>)") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SimGenError(f"focus={path} is not a YAML file ({type(exc).__name__}); fix: make one with simgen "
                          f"focus <eval.json>, or repair it") from None
    if data is None:
        return []
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise SimGenError(f"focus={path} must map config keys (objects.class_weights, edge_cases.<name>) to values")
    return list(data.items())


def write(text: str, path: str) -> str:
    from .io import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def default_path(eval_json: str, out: Optional[str] = None) -> str:
    return out or os.path.join(os.path.dirname(os.path.abspath(eval_json)), FOCUS_FILE)
