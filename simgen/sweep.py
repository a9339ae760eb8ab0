"""Sweeps: ``simgen -m scene=tabletop,bin edge_cases=none,night`` makes one dataset per
combination (Hydra's override grammar: ``a,b``, ``range(0,3)``, ``choice(...)``), each in
``<output_dir>/<key=value,...>/`` with its own config.yaml, plus ``sweep.json`` listing them.
``--jobs N`` runs N combinations at once in separate processes (joblib), each with its own
GL context and ``workers=1`` (without --jobs, combinations run one after the other, each
with all local workers); every dataset is the same as a single run with those overrides."""
from __future__ import annotations

import itertools
import os
import re
from typing import List, Tuple

from .errors import ConfigError


def expand(overrides: List[str]) -> List[List[str]]:
    """All combinations of the sweep overrides, each a plain override list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot parse the sweep overrides: {first}") from None
    fixed, axes = [], []
    for text, ov in zip(overrides, parsed):
        if ov.is_sweep_override():
            key = ov.get_key_element()
            axes.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            fixed.append(text)
    if not axes:
        raise ConfigError("-m/--multirun needs at least one sweep, e.g. scene=tabletop,bin")
    return [fixed + list(combo) for combo in itertools.product(*axes)]


def folder_name(combo: List[str], fixed: List[str]) -> str:
    swept = [c for c in combo if c not in fixed]
    return re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(swept))[:200]


def _one(overrides: List[str]) -> Tuple[str, str]:
    from .config import compose
    from .runner import run

    cfg = compose(overrides + ["progress=false"])
    s = run(cfg)
    return s.output_dir, s.line()


def run_sweep(overrides: List[str], jobs: int = 1) -> str:
    from .config import compose

    combos = expand(overrides)
    base_cfg = compose([o for o in overrides if "," not in o.split("=", 1)[-1] and "(" not in o])
    base = os.path.abspath(str(base_cfg.output_dir))
    plans = []
    for combo in combos:
        name = folder_name(combo, overrides)
        plans.append((name, [o for o in combo if not o.startswith("output_dir=")] +
                      [f"output_dir='{os.path.join(base, name)}'"]))  # quoted: names hold = and ,
    for _, ov in plans:
        compose(ov)  # every combination's config is valid before anything runs
    if jobs > 1:
        from joblib import Parallel, delayed

        # jobs parallel combinations, each in one process (no worker pool nested in loky's)
        results = Parallel(n_jobs=jobs, backend="loky")(delayed(_one)(ov + ["workers=1"]) for _, ov in plans)
    else:
        results = [_one(ov) for _, ov in plans]
    os.makedirs(base, exist_ok=True)
    manifest = [{"folder": name, "overrides": ov, "summary": line}
                for (name, ov), (_, line) in zip(plans, results)]
    from .io import atomic_write_json

    atomic_write_json(os.path.join(base, "sweep.json"), manifest, indent=1)
    return base
