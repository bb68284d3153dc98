"""A proof report for people: one line per invariant, then each finding in full."""
from __future__ import annotations

import json
from typing import Dict, List

import z3

from qthrottle.model.invariants import INVARIANTS

from .engine import PROVEN_INVARIANTS, RUN_LAW, ProofReport, ProofResult
from .solve import FALSIFIED, PROVED

NOT_PROVEN = "-  (a property of runs: stateful engine only)"
NOT_APPLICABLE = "-  (the per-key proof does not apply: see below)"


def bounds(timeout_ms: int) -> str:
    return f"z3 {z3.get_version_string()}, solver timeout {timeout_ms} ms per query"


KEPT = "kept from an earlier run of the same inputs"
AGAIN = "QTHROTTLE_PROOF_CACHE=off proves again"


def took(report: ProofReport) -> str:
    """How long the proofs took, "in 4.3 s", or where they came from when they were kept
    (proofs/remembered.py): "kept from an earlier run of the same inputs, 4.3 s then"."""
    return f"{KEPT}, {report.seconds:.1f} s then" if report.cached \
        else f"in {report.seconds:.1f} s"


def summary(report: ProofReport) -> List[str]:
    """The per-invariant table, laws of one invariant indented below it."""
    again = f"{AGAIN}; " if report.cached else ""
    lines = [f"   z3 proofs {took(report)} ({again}{bounds(report.timeout_ms)}):"]
    for number, name in INVARIANTS.items():
        if number not in PROVEN_INVARIANTS:
            lines.append(f"  {number}  {name:<62} {NOT_PROVEN}")
            continue
        laws = [r for r in report.results if r.invariant == number]
        if not laws and number in report.not_applicable:
            lines.append(f"  {number}  {name:<62} {NOT_APPLICABLE}")
            continue
        run = next((r for r in laws if r.law == RUN_LAW and r.bound), None)
        shown = f" ({run.bound})" if run is not None and run.status == report.status(number) \
            else ""
        lines.append(f"  {number}  {name:<62} {report.status(number)}{shown}")
        if len(laws) > 1:
            lines += [f"       {r.law:<59} {r.status}" + (
                f" ({r.bound.replace(RUN_LAW + ', ', '')})" if r.bound else "") for r in laws]
    return lines


def run_basis(report: ProofReport) -> List[str]:
    """What the k-induction of invariants 3-6 rests on: the decomposition theorem, the
    lemmas it was strengthened with (each kept only while proved inductive)."""
    runs = report.runs
    if runs is None:
        return []
    theorem = runs.decomposition
    lines = ["", "  invariants 3-6 for all timelines: one key's throttle, stepped by the "
                 "translated queue function and timer handler (proofs/induction.py)",
             f"    decomposition theorem (a GLib match between two records the table can "
             f"hold is exactly \"same key\" of the policy, so keys never interact): "
             f"{theorem.status}" + ("" if theorem.status == PROVED else f": {theorem.reason}")]
    for name, (event, data) in theorem.events.items():
        qmp = {"event": event} if data is None else {"event": event, "data": data}
        lines.append(f"      {name} = {json.dumps(qmp)}")
    for number, why in sorted(report.not_applicable.items()):
        lines.append(f"    invariant {number}: {why}")
    if runs.problem is not None:
        lines.append(f"    the window lemmas could not be decided: {runs.problem}")
        return lines
    unaided = [r for r in report.results if r.law == RUN_LAW and r.status == PROVED
               and r.findings]
    if unaided:
        lines.append(f"    strengthened with {len(runs.lemmas)} of the {len(runs.candidates)} "
                     "window lemmas, kept because they hold initially and every step keeps "
                     "them (an inductive invariant):")
        lines += [f"      - {lemma}" for lemma in runs.lemmas]
        alike: Dict[str, List[int]] = {}  # the same unreachable state, said once
        for r in unaided:
            alike.setdefault(r.findings[0], []).append(r.invariant)
        for finding, numbers in alike.items():
            names = ", ".join(map(str, numbers))
            lines.append(f"    invariant {names}: {finding}; with the lemmas it holds"
                         if len(numbers) == 1 else
                         f"    invariants {names}: {finding}; with the lemmas they hold")
    if runs.satisfiable:
        lines.append("    not vacuous: each proof's assumptions shown satisfiable (z3):")
        lines += [f"      {shown}" for _, shown in sorted(runs.satisfiable.items())]
    return lines


def details(report: ProofReport) -> List[str]:
    """Each falsified or unknown result: the counterexample, the C's replay, or the reason;
    then what the run invariants' proofs rest on."""
    lines: List[str] = []
    for result in report.results:
        if result.status != PROVED:
            lines += [""] + _detail(result)
    return lines + run_basis(report)


def _detail(result: ProofResult) -> List[str]:
    lines = [f"  invariant {result.invariant} ({result.law}) {result.status}: {result.reason}"]
    if result.status != FALSIFIED:
        lines += [f"    also: {finding}" for finding in result.findings[1:]]
        return lines
    lines += [f"    {finding}" for finding in result.findings[1:]]
    if result.timeline:
        lines.append(f"    counterexample: the shortest timeline from the initial state "
                     f"({result.bound}): {result.timeline!r}")
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
