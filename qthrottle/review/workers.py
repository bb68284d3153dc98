"""Worker processes for the commands that spread their work over the cores, and for
proofs that must start from a fresh z3 (review/diff.py: one process per tree).

A worker dies with the command (harness/lifetime.py) and leaves SIGINT to it (a
terminal's Ctrl-C reaches every process of its group): on SIGINT or SIGTERM
(core.Interrupted), or any error, the command kills its workers at once instead of
waiting for their jobs.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Iterator

from qthrottle.harness.lifetime import die_with_parent


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def _worker_starts(parent: int) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def worker_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """@jobs worker processes (spawned: z3 and hypothesis state stay per process)."""
    pool = ProcessPoolExecutor(max(1, jobs), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_starts, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        for child in multiprocessing.active_children():
            child.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
