"""z3 proof figures: time to prove (or falsify) every theorem of a target.

Run: python bench/proofs_bench.py [--timeout-ms N] [--command] [TARGET ...]
Default targets: the bundled case studies, plus Debian's QEMU 5.2, 7.2 and 10.0.x
trees when `qthrottle fetch-qemu` has cached them. Each figure is the median of
5 runs of the proofs alone (extraction and schema loaded once; no replay of
counterexamples against the C). With --command, each figure is instead the whole
`qthrottle prove TARGET` command as a user runs it (interpreter start, extraction,
schema, compiled rate table from the cache, proofs, replay): wall-clock seconds and
CPU seconds (user + system, the command and its children), so that a loaded
machine's wall clock can be told from the work done. Prints figures only; these
machines are noisy.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

from qthrottle.cases import EXPECTED
from qthrottle.harness.qemu_sources import RELEASES, QemuSourceError, cached_tree
from qthrottle.harness.target import resolve
from qthrottle.model.qapi_schema import load_schema
from qthrottle.proofs.engine import ProofReport, prove
from qthrottle.proofs.report import bounds
from qthrottle.proofs.solve import DEFAULT_TIMEOUT_MS

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


def command_run(target: str, timeout_ms: int) -> Tuple[float, float, int]:
    """One `qthrottle prove TARGET`: wall seconds, CPU seconds, exit code."""
    qthrottle = Path(sys.executable).with_name("qthrottle")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(qthrottle), "prove", target, "--timeout-ms", str(timeout_ms)],
                          stdout=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def commands(targets: List[str], timeout_ms: int) -> None:
    print(f"`qthrottle prove TARGET`, median of {REPEATS} ({bounds(timeout_ms)})")
    print(f"{'target':<60} {'wall':>8} {'cpu':>8}  exit")
    for name in targets:
        runs = [command_run(name, timeout_ms) for _ in range(REPEATS)]
        label = name if len(name) <= 60 else "..." + name[-57:]
        print(f"{label:<60} {statistics.median(r[0] for r in runs):>7.2f}s "
              f"{statistics.median(r[1] for r in runs):>7.2f}s  "
              f"{sorted({r[2] for r in runs})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET")
    parser.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS)
    parser.add_argument("--command", action="store_true",
                        help="time the whole `qthrottle prove` command (wall and CPU)")
    args = parser.parse_args()
    if args.command:
        commands(args.targets or default_targets(), args.timeout_ms)
        return
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
