"""Decide one proof obligation with z3: PROVED, FALSIFIED (with a model) or UNKNOWN.

The checks, in a fixed order:
1. the assumptions are satisfiable; if not, any claim would hold vacuously: UNKNOWN;
2. each claim, negated, under the assumptions: sat is a counterexample
   (FALSIFIED), unknown is a timeout (UNKNOWN), unsat means it holds;
3. the premise of every implication in a claim is satisfiable under the
   assumptions, else the claim holds only vacuously: UNKNOWN.
A counterexample is solved again with soft goals, met greedily, so that it
reads well: break as many parts of the claim as possible, take strings from
the stateful engine's universe, avoid g_str_hash collisions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import z3

from qthrottle.core import Status

Term = Any
PROVED, FALSIFIED, UNKNOWN = Status.PROVED, Status.FALSIFIED, Status.UNKNOWN
DEFAULT_TIMEOUT_MS = 10_000  # per solver query (proofs, policy derivation)
CLAIM_PART_WEIGHT = 10  # above every readability goal
# Per soft goal of a counterexample: z3's resource units (about 0.5 s here), not a wall
# clock, so that the counterexample is the same on a busy machine as on an idle one.
GOAL_RLIMIT = 1_000_000
# Goals of one counterexample given up that way before the rest are left unmet: in a
# process that has built many terms before (a test run, a review's patches), z3 can
# give up on nearly every goal, and 68 goals took 31 s where alone they take 0.5 s.
GOAL_GIVE_UPS = 3


@dataclass
class Verdict:
    status: str
    reason: str  # for FALSIFIED, the claim that failed
    model: Optional[z3.ModelRef] = None


def timeout(timeout_ms: int, solver: Any, what: str) -> str:
    return (f"timeout: z3 gave up on {what} within the solver timeout of {timeout_ms} ms "
            f"({solver.reason_unknown()}); raise it with --timeout-ms")


def premises(claim: Term) -> List[Term]:
    """Premises of the implications a claim is made of."""
    if z3.is_implies(claim):
        return [claim.arg(0)]
    if z3.is_and(claim):
        return [p for part in claim.children() for p in premises(part)]
    return []


def _satisfiable(solver: Any, term: Term) -> Any:
    solver.push()
    solver.add(term)
    answer = solver.check()
    solver.pop()
    return answer


def decide(assumptions: Sequence[Term], claims: Sequence[Tuple[str, Term]], timeout_ms: int,
           preferences: Sequence[Tuple[Term, int]] = ()) -> Verdict:
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*assumptions)
    answer = solver.check()
    if answer == z3.unsat:
        return Verdict(UNKNOWN, "vacuous: the assumptions are unsatisfiable (no valid event "
                                "reaches this code), so the claim would hold for nothing")
    if answer == z3.unknown:
        return Verdict(UNKNOWN, timeout(timeout_ms, solver, "the assumptions"))
    for label, claim in claims:
        solver.push()
        solver.add(z3.Not(claim))
        answer = solver.check()
        if answer == z3.sat:
            model = solver.model()
            solver.pop()
            goals = [(z3.Not(part), CLAIM_PART_WEIGHT)
                     for part in (claim.children() if z3.is_and(claim) else [claim])]
            better = readable([*assumptions, z3.Not(claim)], [*goals, *preferences], timeout_ms)
            return Verdict(FALSIFIED, label, better or model)
        solver.pop()
        if answer == z3.unknown:
            return Verdict(UNKNOWN, timeout(timeout_ms, solver, label))
    for label, claim in claims:
        for premise in premises(claim):
            answer = _satisfiable(solver, premise)
            if answer == z3.unsat:
                return Verdict(UNKNOWN, f"vacuous: '{label}' holds only because the premise "
                                        f"of its implication never holds")
            if answer == z3.unknown:
                return Verdict(UNKNOWN, timeout(timeout_ms, solver, f"the premise of {label}"))
    return Verdict(PROVED, "holds for every valid event (assumptions and premises satisfiable)")


def readable(hard: Sequence[Term], soft: Sequence[Tuple[Term, int]],
             timeout_ms: int) -> Optional[z3.ModelRef]:
    """A model of @hard meeting the weighted @soft goals greedily, heaviest first, or None.

    Greedy rather than z3's Optimize: MaxSMT over strings is far slower, and a
    counterexample only needs to read well, not be optimal.
    """
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*hard)
    if solver.check() != z3.sat:
        return None
    model = solver.model()
    solver.set("rlimit", GOAL_RLIMIT)  # per check: a goal too costly is given up, always
    given_up = 0
    for goal, _ in sorted(soft, key=lambda item: -item[1]):
        if given_up == GOAL_GIVE_UPS:
            break
        solver.push()
        solver.add(goal)
        answer = solver.check()
        if answer == z3.sat:
            model = solver.model()
        else:
            solver.pop()
            given_up += answer == z3.unknown
    return model
