"""z3 proof figures: time to prove (or falsify) every theorem of a target.

Run: python bench/proofs_bench.py [--timeout-ms N] [TARGET ...]
Default targets: the bundled case studies, plus Debian's QEMU 5.2, 7.2 and 10.0.x
trees when `qthrottle fetch-qemu` has cached them. Each figure is the median of
5 runs of the proofs alone (extraction and schema loaded once; no replay of
counterexamples against the C). Prints figures only; these machines are noisy.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import List

from qthrottle.cases import EXPECTED
from qthrottle.harness.qemu_sources import RELEASES, QemuSourceError, cached_tree
from qthrottle.harness.target import resolve
from qthrottle.model.qapi_schema import load_schema
from qthrottle.proofs.engine import DEFAULT_TIMEOUT_MS, ProofReport, prove
from qthrottle.proofs.report import bounds

REPEATS = 5


def default_targets() -> List[str]:
    targets = list(EXPECTED)
    for release in RELEASES:
        try:
            tree = cached_tree(release)
        except QemuSourceError:
            tree = None
        if tree is not None:
            targets.append(str(tree))
    return targets


def verdict(report: ProofReport) -> str:
    broken = sorted(report.falsified)
    text = f"falsified {broken}" if broken else "all proved"
    return text + (" (some UNKNOWN)" if report.unknown else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET")
    parser.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS)
    args = parser.parse_args()
    print(f"proof time per target, median of {REPEATS} ({bounds(args.timeout_ms)})")
    print(f"{'target':<60} {'median':>8} {'min':>8} {'max':>8}  verdict")
    for name in args.targets or default_targets():
        target = resolve(name)
        assert target.qapi_dir is not None, f"{name}: no QAPI schema"
        extraction, catalog = target.extract(), load_schema(target.qapi_dir)
        times: List[float] = []
        report = None
        for _ in range(REPEATS):
            start = time.perf_counter()
            report = prove(extraction, catalog, target.name, args.timeout_ms)
            times.append(time.perf_counter() - start)
        assert report is not None
        label = name if len(name) <= 60 else "..." + name[-57:]
        print(f"{label:<60} {statistics.median(times):>7.2f}s {min(times):>7.2f}s "
              f"{max(times):>7.2f}s  {verdict(report)}")


if __name__ == "__main__":
    main()
