"""Stateful engine figures: time to first counterexample, operations per second.

Run: python bench/stateful_bench.py [--profile quick|ci] [--seeds 5]
For every buggy case study: the time until the engine reports its first
falsified invariant (found and minimised), median over seeds; and the operations
per second the engine runs on the C and judges (batches), on every case.
Prints figures only; these machines are shared and noisy.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List

from qthrottle.cases import EXPECTED
from qthrottle.engines.bounds import PROFILES
from qthrottle.engines.stateful import Subject, search
from qthrottle.harness.driver import Batch, Driver, RunResult
from qthrottle.harness.target import resolve
from qthrottle.model.qapi_schema import load_schema
from qthrottle.review.target_policy import target_policy


def measure(name: str, profile_name: str, seed_value: int) -> Dict[str, float]:
    target = resolve(name)
    assert target.qapi_dir is not None
    catalog = load_schema(target.qapi_dir)
    binary = target.build().binary
    derived = target_policy(target)
    with Driver(binary) as driver:
        steps = 0
        finish_batch = driver.finish_batch

        def counting(batch: Batch) -> List[RunResult]:
            nonlocal steps
            runs = finish_batch(batch)
            steps += sum(len(run.steps) for run in runs)
            return runs

        driver.finish_batch = counting  # type: ignore[method-assign]
        first: List[float] = []
        start = time.perf_counter()
        result = search(Subject.create(driver, derived.policy, catalog, derived.unknown),
                        PROFILES[profile_name], seed_value,
                        progress=lambda _: first.append(time.perf_counter() - start))
        total = time.perf_counter() - start
    return {"first": first[0] if first else float("nan"), "total": total,
            "steps_per_s": steps / total, "found": float(len(result.falsified))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    seeds = range(1, args.seeds + 1)
    print(f"{PROFILES[args.profile].describe()}; seeds 1..{args.seeds}; medians")
    print(f"{'case':<18} {'first counterexample':>21} {'whole search':>13} "
          f"{'ops/s':>8}  invariants found per seed")
    for name, broken in EXPECTED.items():
        runs = [measure(name, args.profile, s) for s in seeds]
        first = (f"{statistics.median(r['first'] for r in runs):.1f}s" if broken
                 else "- (holds)")
        print(f"{name:<18} {first:>21} {statistics.median(r['total'] for r in runs):>12.1f}s "
              f"{statistics.median(r['steps_per_s'] for r in runs):>8.0f}  "
              f"{[int(r['found']) for r in runs]}")


if __name__ == "__main__":
    main()
