"""Work over a whole dataset in chunks, in spawned processes, results in order: the pattern
of every pass over a finished dataset (finalize, validate, report)."""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator, List


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last one shorter), drawn lazily."""
    it = iter(items)
    return iter(lambda: list(itertools.islice(it, size)), [])


def ordered_map(fn: Callable, chunks: Iterator[list], processes: int, *args, local_first: bool = False,
                initializer: Callable = None, initargs: tuple = (), what: str = "going through the dataset") -> Iterator:
    """``fn(chunk, *args)`` for each chunk, in chunk order. With ``processes`` > 1 it runs in
    that many spawned processes, at most two chunks per process in flight (results wait in
    memory: it stays bounded); ``local_first`` runs the first chunk here and starts the
    processes only if there is a second (a small dataset never pays their start-up, ~1 s).
    ``fn`` and ``args`` must be picklable; ``initializer(*initargs)`` runs in each process.
    A process that dies (killed, out of memory) stops it with a SimGenError naming ``what``."""
    chunks = iter(chunks)
    if local_first or processes <= 1:
        first = next(chunks, None)
        if first is None:
            return
        yield fn(first, *args)
    if processes <= 1:
        for chunk in chunks:
            yield fn(chunk, *args)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from .errors import SimGenError

    pending: List = list(itertools.islice(chunks, 1))
    if not pending:
        return
    broken = SimGenError(f"a helper process died while {what} (killed, or out of memory?); nothing was left "
                         f"half-written (fix: run the same command again, with fewer workers if memory is short)")
    with ProcessPoolExecutor(max_workers=processes, mp_context=mp.get_context("spawn"),
                             initializer=initializer, initargs=initargs) as ex:
        # A dead helper breaks the pool: seen by result(), or by submit() when the chunks that
        # finished before it died are collected first.
        try:
            ahead = deque(ex.submit(fn, c, *args)
                          for c in itertools.chain(pending, itertools.islice(chunks, 2 * processes - 1)))
        except BrokenProcessPool:
            raise broken from None
        while ahead:
            try:
                done = ahead.popleft().result()
                chunk = next(chunks, None)
                if chunk is not None:
                    ahead.append(ex.submit(fn, chunk, *args))
            except BrokenProcessPool:
                raise broken from None
            yield done
