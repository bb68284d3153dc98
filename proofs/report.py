"""A proof report for people: one line per invariant, then each finding in full."""
from __future__ import annotations

import json
from typing import List

import z3

from qthrottle.model.invariants import INVARIANTS

from .engine import PROVEN_INVARIANTS, ProofReport, ProofResult
from .solve import FALSIFIED, PROVED

NOT_PROVEN = "-  (a property of runs: stateful engine only)"


def bounds(timeout_ms: int) -> str:
    return f"z3 {z3.get_version_string()}, solver timeout {timeout_ms} ms per query"


def summary(report: ProofReport) -> List[str]:
    """The per-invariant table, laws of one invariant indented below it."""
    lines = [f"   z3 proofs in {report.seconds:.1f} s ({bounds(report.timeout_ms)}):"]
    for number, name in INVARIANTS.items():
        if number not in PROVEN_INVARIANTS:
            lines.append(f"  {number}  {name:<62} {NOT_PROVEN}")
            continue
        lines.append(f"  {number}  {name:<62} {report.status(number)}")
        laws = [r for r in report.results if r.invariant == number]
        if len(laws) > 1:
            lines += [f"       {r.law:<59} {r.status}" for r in laws]
    return lines


def details(report: ProofReport) -> List[str]:
    """Each falsified or unknown result: the counterexample, the C's replay, or the reason."""
    lines: List[str] = []
    for result in report.results:
        if result.status != PROVED:
            lines += [""] + _detail(result)
    return lines


def _detail(result: ProofResult) -> List[str]:
    lines = [f"  invariant {result.invariant} ({result.law}) {result.status}: {result.reason}"]
    if result.status != FALSIFIED:
        lines += [f"    also: {finding}" for finding in result.findings[1:]]
        return lines
    lines += [f"    {finding}" for finding in result.findings[1:]]
    if result.events:
        lines.append("    counterexample (QMP events):")
        for name, (event, data) in result.events.items():
            qmp = {"event": event} if data is None else {"event": event, "data": data}
            lines.append(f"      {name} = {json.dumps(qmp)}")
    lines += [f"    z3: {fact}" for fact in result.facts]
    if result.replay:
        verdict = {True: "confirmed by the C", False: "NOT reproduced by the C",
                   None: "not replayed"}[result.confirmed]
        lines.append(f"    replay against the C ({verdict}):")
        lines += [f"      {line}" for line in result.replay]
    return lines
