"""Harness figures: cold and warm driver build time, driver throughput.

Run: python bench/harness_bench.py [TARGET ...]   (default: stop-bypass)
Prints medians of 5 measured in this run; no assertion, these machines are noisy.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from typing import Callable, List

from qthrottle.harness.driver import Driver
from qthrottle.harness.target import resolve
from qthrottle.model.timeline import Advance, Operation, Queue

REPEATS = 5
OPERATIONS = 2000
RUNS = 200


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeats))


def timeline(length: int) -> List[Operation]:
    ops: List[Operation] = []
    for i in range(length):
        if i % 4 == 3:
            ops.append(Advance(250_000_000))
        else:
            ops.append(Queue("VSERPORT_CHANGE", {"id": f"vs{i % 3}", "open": bool(i % 2)}))
    return ops


def bench_target(name: str) -> str:
    """One table row: cold and warm build, driver throughput, runs per second."""
    target = resolve(name)

    def cold() -> float:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["QTHROTTLE_CACHE_DIR"] = cache
            start = time.perf_counter()
            target.build()
            del os.environ["QTHROTTLE_CACHE_DIR"]
            return time.perf_counter() - start

    def warm() -> float:
        start = time.perf_counter()
        target.build()
        return time.perf_counter() - start

    cold_s = median_of(REPEATS, cold)
    warm_s = median_of(REPEATS, warm)
    ops = timeline(OPERATIONS)
    short = timeline(10)
    with Driver(target.build().binary) as driver:
        def throughput() -> float:
            driver.reset()
            start = time.perf_counter()
            for op in ops:
                driver.apply(op)
            return OPERATIONS / (time.perf_counter() - start)

        def runs() -> float:
            start = time.perf_counter()
            for _ in range(RUNS):
                driver.run(short)
            return RUNS / (time.perf_counter() - start)

        ops_s = median_of(REPEATS, throughput)
        runs_s = median_of(REPEATS, runs)
    return f"{name:<14} {cold_s:>10.2f}s {warm_s * 1000:>9.1f}ms {ops_s:>9.0f} {runs_s:>16.0f}"


def main(names: List[str]) -> None:
    print(f"{'target':<14} {'cold build':>11} {'warm build':>11} {'ops/s':>9} "
          f"{'runs/s (10 ops)':>16}")
    for name in names or ["stop-bypass"]:
        print(bench_target(name))
    print(f"(median of {REPEATS}; throughput over {OPERATIONS} operations; "
          f"a run = reset + 10 operations)")


if __name__ == "__main__":
    main(sys.argv[1:])
