"""Wall time of `qthrottle review` on a 5-patch series, as a reviewer runs it.

Run: python bench/review_bench.py [--timelines N] [--repeats N]
Builds the tests' 5-patch series (tests/series_builder.py: Debian's QEMU 10.0.x
monitor/ and qapi/ from the cache of `qthrottle fetch-qemu`, our own commits on top,
`git format-patch --cover-letter --stdout`) in a temporary directory, then runs the
installed command `qthrottle review SERIES --git REPO --base base --format json` and
prints its wall time, and from its JSON each patch's time and verdict. Figures only:
these machines are noisy and shared.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from qthrottle.engines.bounds import DYNAMIC_DIFF
from qthrottle.harness.qemu_sources import cached_tree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import series_builder as build  # noqa: E402 (the tests' series, not a copy of it)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timelines", type=int, default=DYNAMIC_DIFF.runs,
                        help=f"dynamic diff per patch (default {DYNAMIC_DIFF.runs}, "
                        "the command's default)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tree = cached_tree("trixie")
    if tree is None:
        sys.exit("QEMU 10.0.x sources not cached: run `qthrottle fetch-qemu`")
    command = Path(sys.executable).parent / "qthrottle"
    with tempfile.TemporaryDirectory(prefix="qthrottle-bench-") as where:
        repository = build.base_repository(tree, Path(where) / "qemu")
        build.five_patch_series(repository)
        series = Path(where) / "series.mbox"
        series.write_text(repository.format_patch("base", "--cover-letter"))
        argv = [str(command), "review", str(series), "--git", str(repository.path),
                "--base", "base", "--seed", str(args.seed), "--timelines",
                str(args.timelines), "--format", "json"]
        print(f"command: QTHROTTLE_PROOF_CACHE=off {shlex.join(argv)} (every tree proved)")
        times: List[float] = []
        report: Dict[str, Any] = {}
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = subprocess.run(argv, capture_output=True, text=True, check=False,
                                    env={**os.environ, "QTHROTTLE_PROOF_CACHE": "off"})
            times.append(time.perf_counter() - start)
            if result.returncode not in (0, 1, 3):
                sys.exit(f"qthrottle review failed ({result.returncode}): {result.stderr}")
            report = json.loads(result.stdout)
    print(f"wall time: median {statistics.median(times):.1f} s, min {min(times):.1f} s, "
          f"max {max(times):.1f} s over {len(times)} run(s); exit {report['exit_code']}")
    for patch in report["patches"]:
        print(f"  patch {patch['number']}/{patch['total']}: {patch['seconds']:6.1f} s  "
              f"{patch['verdict']}")
    print(f"  the series as a whole and reading, applying: "
          f"{report['seconds'] - sum(p['seconds'] for p in report['patches']):.1f} s "
          f"(of {report['seconds']:.1f} s in the command)")


if __name__ == "__main__":
    main()
