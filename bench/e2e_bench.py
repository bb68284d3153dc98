"""End-to-end figures: QEMU start to QMP-ready, and timelines per second.

Run: python bench/e2e_bench.py [--runs 100] [--seed 7] [--qemu BINARY --tree DIR]
(default: the binary of `qthrottle fetch-qemu --build`). Prints what it measured in
this run; no assertion, these machines are noisy. The build's own time is in its
BUILD.json (build_seconds), printed here too.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from qthrottle.engines.bounds import E2E, Profile
from qthrottle.engines.e2e import open_subject, search
from qthrottle.harness.qemu_build import cached_build
from qthrottle.harness.qemu_machine import Guest, find_libfaketime
from qthrottle.harness.target import resolve
from qthrottle.review.target_policy import target_policy

STARTS = 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--qemu")
    parser.add_argument("--tree")
    args = parser.parse_args()
    build = cached_build()
    if args.qemu is None and build is None:
        print("no build: run `qthrottle fetch-qemu --build` first", file=sys.stderr)
        return 2
    binary = Path(args.qemu) if args.qemu else build.binary  # type: ignore[union-attr]
    tree = Path(args.tree) if args.tree else build.tree  # type: ignore[union-attr]
    if build is not None and args.qemu is None:
        print(f"build: QEMU {build.version}, configure + ninja "
              f"{build.info.get('build_seconds')} s ({build.root})")
    target = resolve(str(tree))
    with open_subject(binary, target, 12, target_policy(target).policy) as subject:
        with tempfile.TemporaryDirectory() as scratch:
            bios = Path(scratch) / "bios.bin"
            bios.write_bytes(bytes(64 * 1024))
            starts = []
            for _ in range(STARTS):
                begin = time.perf_counter()
                with Guest(subject.machine, binary, bios, find_libfaketime()):
                    starts.append(time.perf_counter() - begin)
        print(f"QEMU start to QMP-ready (and the RTC found): median "
              f"{statistics.median(starts) * 1000:.0f} ms of {STARTS}")
        result = search(subject, Profile(E2E.name, args.runs, E2E.steps), args.seed)
        steps = sum(result.coverage.steps.values())
        verdict = ("0 mismatches" if result.mismatch is None and result.undecided is None
                   else "NOT all agreeing")
        print(f"{result.runs} timelines ({steps} steps, drains included), seed {args.seed}: "
              f"{result.seconds:.1f} s, {result.seconds / max(result.runs, 1) * 1000:.0f} ms "
              f"per timeline; {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
