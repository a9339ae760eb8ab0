"""The seed streams: every random choice simgen makes draws from a numpy Generator keyed by
(seed, image or scene index, factor[, attempt, ...]), so the same seed gives the same bytes
in any process, in any order, and pinning one factor never shifts another's draws. The
lowest module of the package: it imports nothing of simgen's."""
from __future__ import annotations

import numpy as np

# Each factor's number in the key. Never renumber one: it would change every dataset's bytes.
FACTORS = {"objects": 1, "poses": 2, "lights": 3, "camera": 4, "materials": 5, "count": 6,
           "distractors": 7, "background": 8, "balance": 9, "physics": 10, "effects": 11, "split": 12,
           "coverage": 13}


def factor_rng(seed: int, index: int, factor: str, attempt: int = 0, *extra: int) -> np.random.Generator:
    """The stream of ``factor`` for image (or scene) ``index``; ``attempt`` > 0 for a resampled
    scene, ``extra`` for sub-streams (a camera retry, an object slot)."""
    key = [int(seed), int(index), FACTORS[factor]]
    if attempt:
        key.append(int(attempt) + 1000)
    key.extend(int(e) for e in extra)
    return np.random.default_rng(key)
