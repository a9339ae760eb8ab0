"""The chunked, ordered process map that finalize, validate and the report run on."""
import os

import pytest

from simgen.errors import SimGenError
from simgen.parallel import chunked, ordered_map


def _square(chunk, offset):
    return [(x * x + offset, os.getpid()) for x in chunk]


def _die_on(chunk, bad):
    if bad in chunk:
        os._exit(3)  # as the kernel's OOM killer would: no exception, no cleanup
    return chunk


def test_results_come_in_order_from_here_or_from_processes():
    here = os.getpid()
    for processes, local_first in ((1, False), (2, False), (2, True)):
        out = [r for done in ordered_map(_square, chunked(range(23), 4), processes, 1, local_first=local_first)
               for r in done]
        assert [v for v, _ in out] == [x * x + 1 for x in range(23)]
        pids = {pid for _, pid in out}
        assert (pids == {here}) == (processes == 1)
        if local_first:  # the first chunk here, the rest elsewhere
            assert {pid for _, pid in out[:4]} == {here} and here not in {pid for _, pid in out[4:]}
    assert list(ordered_map(_square, chunked([], 4), 2, 0, local_first=True)) == []
    assert [len(c) for c in chunked(range(10), 4)] == [4, 4, 2]


def test_a_process_that_dies_is_one_error():
    with pytest.raises(SimGenError, match="helper process died while counting sheep.*run the same command again"):
        list(ordered_map(_die_on, chunked(range(40), 5), 2, 17, what="counting sheep"))
