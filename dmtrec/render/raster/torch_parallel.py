"""Independent pieces of a torch rasterizer op run on all of torch's CPU threads.

torch parallelises one op over its elements only above ~32k of them, and not at all in the
scatters, gathers, cumulative sums and ``nonzero`` calls the rasterizer chain is made of, so at
render sizes a second thread mostly waits. :func:`parallel_map` runs pieces of work that write
disjoint outputs (the images of a batch, chunks of samples, channels) on a pool of Python
threads, one per torch thread, each of which runs its ops single-threaded: torch releases the
GIL inside its ops, so the pieces' arithmetic overlaps. Every piece computes exactly what the
serial loop computed for it, in the same order, so results are bit for bit those of one thread
(the pieces are chosen so: no sum crosses two of them).

With one torch thread (``OMP_NUM_THREADS=1``, dmtrec's thread policy on busy machines) the
pieces run in the calling thread, as before.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_LOCAL = threading.local()  # .worker: this thread is one of the pool's
_POOL: List[Optional[Tuple[int, int, ThreadPoolExecutor]]] = [None]  # (size, pid, pool)
_LOCK = threading.Lock()


def threads() -> int:
    """How many pieces run at once: torch's intra-op thread count, 1 inside a pool thread."""
    return 1 if getattr(_LOCAL, "worker", False) else torch.get_num_threads()


def _worker_init() -> None:
    _LOCAL.worker = True
    # This thread's own OpenMP team: one thread (no nesting). torch sets a thread's count from its
    # process-wide default the first time the thread asks for it: asked first, so that the
    # caller restoring that default afterwards does not reach this thread.
    torch.get_num_threads()
    torch.set_num_threads(1)


def _pool(size: int) -> ThreadPoolExecutor:
    with _LOCK:
        held = _POOL[0]
        if held is not None and held[:2] == (size, os.getpid()):
            return held[2]
        if held is not None and held[1] == os.getpid():  # a forked child has no threads to stop
            held[2].shutdown(wait=False)
        pool = ThreadPoolExecutor(size, thread_name_prefix="dmtrec-raster", initializer=_worker_init)
        # Start every thread now; each sets its own OpenMP thread count to 1, which torch also
        # records as the default for threads it has not seen: the caller's count is restored.
        barrier = threading.Barrier(size + 1)
        for _ in range(size):
            pool.submit(barrier.wait)
        barrier.wait()
        torch.set_num_threads(size)
        _POOL[0] = (size, os.getpid(), pool)
        return pool


def parallel_map(fn: Callable[[T], R], items: Sequence[T], parallel: bool = True) -> List[R]:
    """``[fn(item) for item in items]``, the items spread over torch's threads (in the calling
    thread when there is one thread or one item, or ``parallel`` is False: too little work to
    share). Grad mode is the caller's in every piece."""
    size = threads()
    if size <= 1 or len(items) <= 1 or not parallel:
        return [fn(item) for item in items]
    grad = torch.is_grad_enabled()

    def run(item: T) -> R:
        with torch.set_grad_enabled(grad):
            return fn(item)

    return list(_pool(size).map(run, items))


def split(count: int, parts: int, minimum: int = 1) -> List[Tuple[int, int]]:
    """``[start, end)`` ranges cutting ``range(count)`` into at most ``parts`` nearly equal pieces of
    at least ``minimum`` (one piece when ``count`` is small)."""
    parts = max(1, min(parts, count // max(1, minimum)))
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i + 1] > bounds[i]]


def parallel_chunks(chunk: Callable[[int, int], None], count: int, size: int, minimum: int) -> None:
    """``chunk(s, e)`` over ``range(count)`` in pieces of at most ``size``, for pieces that write
    disjoint outputs: one run of them per thread (each at least ``minimum`` long), in parallel.
    Elementwise work gives the same values whichever pieces it is cut into."""

    def run(bounds: Tuple[int, int]) -> None:
        for s in range(bounds[0], bounds[1], size):
            chunk(s, min(s + size, bounds[1]))

    parallel_map(run, split(count, threads(), minimum))
