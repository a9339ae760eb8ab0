"""Occlusion order: which objects hide each annotated object, and how much of it.

``occluders``: ``[[instance_id, pixels], ...]``, most pixels first (ties: smaller id first):
the pixels of the object's unoccluded silhouette (rendered alone, in frame) where the
visible map shows ``instance_id`` instead. Id 0 is unlabeled geometry (distractors, bin
walls, shelves, the floor). The pixels sum to ``unoccluded_area - area``: every hidden
pixel is hidden by exactly one thing."""
from __future__ import annotations

import numpy as np

from . import Target, View, register


@register("occluders")
def occluders(view: View, t: Target) -> dict:
    r0, r1, c0, c1 = t.region
    inst = view.frame.instance[r0:r1, c0:c1]
    hidden = inst[t.alone[r0:r1, c0:c1] & (inst != t.obj.instance_id)]
    ids, counts = np.unique(hidden, return_counts=True)
    order = np.lexsort((ids, -counts))
    return {"occluders": [[int(ids[k]), int(counts[k])] for k in order]}
