"""Seeded random streams and a small parallel map with progress logging.

Every random choice of the data stage draws from a generator derived from (seed, names), so a
result does not depend on which worker made it or in which order.
"""

import logging
import multiprocessing
import time
import zlib
from typing import Callable, List, Sequence, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")


def derive_rng(seed: int, *names: object) -> np.random.Generator:
    """Independent generator for ``names`` under ``seed`` (stable across runs and processes)."""
    words = [int(seed)] + [zlib.crc32(str(n).encode("utf-8")) for n in names]
    return np.random.default_rng(words)


def parallel_map(fn: Callable[[T], R], items: Sequence[T], nj: int = 1, desc: str = "jobs") -> List[R]:
    """``[fn(x) for x in items]`` over ``nj`` forked workers, in order, logging progress.

    ``fn`` must be a module-level function (it is pickled by name).
    """
    items = list(items)
    total = len(items)
    results: List[R] = []
    start = time.time()
    step = max(1, total // 10)

    def _progress(done: int) -> None:
        if done % step == 0 or done == total:
            logging.info("%s: %d/%d done (%.1f s)", desc, done, total, time.time() - start)

    if nj <= 1 or total <= 1:
        for i, item in enumerate(items, 1):
            results.append(fn(item))
            _progress(i)
        return results
    # fork: workers inherit the imported modules instead of re-importing ESPnet (~10 s each).
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(nj, total)) as pool:
        for i, result in enumerate(pool.imap(fn, items, chunksize=1), 1):
            results.append(result)
            _progress(i)
    return results

