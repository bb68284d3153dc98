"""What a report must say when invariants 3-6 hold for every timeline (k-induction),
shared by tests/test_induction.py and the real-QEMU proofs of tests/test_proofs.py."""
from __future__ import annotations

import re

from qthrottle.proofs.engine import RUN_LAW, ProofReport, ProofResult
from qthrottle.proofs.report import summary
from qthrottle.proofs.solve import PROVED

RUNS = (3, 4, 5, 6)


def run(report: ProofReport, invariant: int) -> ProofResult:
    return next(r for r in report.results if r.invariant == invariant and r.law == RUN_LAW)


def assert_all_timelines(report: ProofReport) -> None:
    for number in RUNS:
        result = run(report, number)
        assert result.status == PROVED, (number, result.reason)
        assert result.bound.startswith("all timelines, k-induction k="), result.bound
    assert report.runs is not None and report.runs.decomposition.status == PROVED
    lines = summary(report)
    for number in RUNS:
        assert re.search(rf"^  {number} .* PROVED \(all timelines, k-induction k=\d\)$",
                         "\n".join(lines), re.M)
