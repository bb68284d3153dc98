"""`qthrottle verify --explain`: for each invariant, which engines check it, on what
bound, with what result on the target.

Three engines check the one definition of each invariant in model/invariants.py:
the z3 proofs on the extracted C (every valid event, no bound on strings), the
stateful engine on the compiled C against the reference model (bounded by its
profile), and CrossHair on the reference model itself (bounded by the tiny world
of model/bounded.py; the same for every target, so it runs once).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from qthrottle.engines.selfcheck import COUNTEREXAMPLE, PROVED, SelfcheckReport
from qthrottle.model.invariants import INVARIANTS
from qthrottle.proofs.induction import MAX_K, RUN_INVARIANTS
from qthrottle.proofs.transition import CLOCK_LIMIT
from qthrottle.review.reports import NOT_APPLICABLE, STATEFUL, Z3, TargetResult, VerifyReport

WHAT = {
    Z3: "z3 proofs: the extracted C's hash, equality and queue decision; for 3-6, its queue "
        "function and timer handler over every timeline of one key (k-induction)",
    STATEFUL: "stateful engine: the compiled C (ASan/UBSan) against the reference model",
    "crosshair": "CrossHair: the reference model's contracts (qthrottle selfcheck)",
}


# Why the reference model has no condition for an invariant (CrossHair checks none).
NO_CONDITION = {
    1: "- (the model's keys are tuples: the laws hold by construction)",
    2: "- (the model's keys are tuples: the laws hold by construction)",
    7: "- (the model reads the schema, not members)",
    8: "- (the model is Python: no memory to get wrong)",
}


def _crosshair_cell(selfcheck: Optional[SelfcheckReport], number: int) -> str:
    if selfcheck is None:
        return "not run"
    results = selfcheck.by_invariant()[number]
    if not results:
        return NO_CONDITION.get(number, "- (no contract)")
    statuses = [r.status for r in results]
    if COUNTEREXAMPLE in statuses:
        return f"COUNTEREXAMPLE ({statuses.count(COUNTEREXAMPLE)}/{len(statuses)})"
    proved = statuses.count(PROVED)
    if proved == len(statuses):
        return f"PROVED all paths ({proved}/{proved})"
    return f"BUDGET EXHAUSTED ({len(statuses) - proved}/{len(statuses)})"


def _engine_cell(result: TargetResult, number: int, engine: str) -> str:
    check = result.invariant(number).check(engine)
    if check.status == NOT_APPLICABLE:
        return "- (property of runs)" if number not in RUN_INVARIANTS else \
            "- (per-key proof does not apply)"
    run = next((law for law in check.laws if law.bound and law.status == check.status == PROVED),
               None)
    return f"{check.status} ({run.bound})" if run is not None else check.status


def explain_lines(report: VerifyReport, result: TargetResult,
                  selfcheck: Optional[SelfcheckReport]) -> List[str]:
    """The invariant x engine table of one target, then each engine's bound."""
    rows: List[Dict[str, str]] = []
    for number, name in INVARIANTS.items():
        rows.append({"invariant": f"{number} {name}",
                     Z3: _engine_cell(result, number, Z3),
                     STATEFUL: _engine_cell(result, number, STATEFUL),
                     "crosshair": _crosshair_cell(selfcheck, number),
                     "verdict": result.invariant(number).status})
    columns = ["invariant", Z3, STATEFUL, "crosshair", "verdict"]
    titles = {"invariant": "invariant", Z3: "z3 (C)", STATEFUL: "stateful (C vs model)",
              "crosshair": "CrossHair (model)", "verdict": "verdict (C)"}
    widths = {c: max(len(titles[c]), *(len(r[c]) for r in rows)) for c in columns}
    lines = [f"  invariant x engine for {result.name}:",
             ("  " + "  ".join(titles[c].ljust(widths[c]) for c in columns)).rstrip()]
    lines += ["  " + "  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    stateful = report.stateful_bounds
    lines += [
        "  bounds:",
        f"    {WHAT[Z3]}; every valid event of the schema, strings unbounded, g_str_hash "
        f"uninterpreted; for 3-6 every timeline (base case: the bounded check from the "
        f"initial state, up to {MAX_K} steps; the clock below "
        f"2^{CLOCK_LIMIT.bit_length() - 1} ns); "
        f"{report.z3_bounds['solver']}, {report.timeout_ms} ms per query",
        f"    {WHAT[STATEFUL]}; profile {stateful['profile']}: up to {stateful['runs']} runs "
        f"x {stateful['steps']} steps per search, seed {stateful['seed']}; "
        f"{result.stateful_events}",
    ]
    if selfcheck is None:
        lines.append(f"    {WHAT['crosshair']}; not run")
    else:
        from qthrottle.model.bounded import BOUNDS

        lines.append(f"    {WHAT['crosshair']}; {BOUNDS}; {selfcheck.timeout_s:g} s CPU per "
                     f"condition (CrossHair {selfcheck.crosshair}, {selfcheck.seconds:.0f} s); "
                     "the model is the same for every target")
    lines.append("  verdict (C): FALSIFIED if z3 or the stateful engine falsified it, UNKNOWN "
                 "if either could not decide, else HOLDS (within the bounds above); CrossHair "
                 "checks the reference those engines compare against")
    return lines
