"""Do two versions of the throttle's C decide alike? The one equivalence checker.

``queue_outcome`` is what the queue function does with one event (never throttled,
throttled, dropped, aborts) as one z3 term: ``qthrottle diff`` compares it between two
versions event by event (decision_diff.py). ``equivalent`` asks whether a changed hash,
equality or queue function is the original's on every valid event the code can meet
(``qthrottle mutate`` lists such mutants as equivalent): the same hash (or one that
still agrees with the equality), the same equality, or the same decision taken in the
same state, so that the code after the decision (which the proofs do not translate)
sees the same variables.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

import z3

from qthrottle.harness.extract import SHIMMED, Extraction, walk
from qthrottle.model import invariants as inv
from qthrottle.model.qapi_schema import Catalog

from .callbacks import Callbacks
from .execution import Unsupported, conj, text
from .solve import PROVED, UNKNOWN, decide
from .space import EventSpace, SymbolicRecord
from .translate import LOOKUPS, Context, Executor, Translation
from .values import CInt, EventQDict, NotModelled, Value, same_value

Term = Any
Point = Tuple[int, int]  # a tree-sitter (row, column)
# What the queue function does with one event, in this order of the outcome term.
NEVER, THROTTLED, DROPPED, ABORTS = 0, 1, 2, 3
OUTCOMES = ("never throttled", "throttled", "dropped", "aborts")


def queue_outcome(callbacks: Callbacks, record: SymbolicRecord) -> Term:
    """The queue function's outcome on @record, an index into OUTCOMES."""
    call = callbacks.translation("queue", record)
    d = call.decisions
    return z3.If(z3.Not(call.defined()), ABORTS,
                 z3.If(d["lookup"], THROTTLED, z3.If(d["emit"], NEVER, DROPPED)))


def _span(node: Any) -> Tuple[Point, Point]:
    return (tuple(node.start_point), tuple(node.end_point))


class Traced(Executor):
    """The queue function's translation, recording the nodes it executes and the
    variables in scope at each decision (the state the rest of the function reads)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "queue")
        self.visited: Set[Tuple[Point, Point]] = set()
        self.snapshots: List[Tuple[str, Term, Dict[str, Value]]] = []
        self.nested_decision = False

    def decisions_end_translation(self) -> bool:
        """No statement the translation executed can also run after a decision (for
        example after an emit, on the path that emitted): so the state at the decisions
        is all the untranslated rest of the function depends on. Conservative."""
        function = self.ctx.function(self.ctx.extraction.roles["queue"])
        for call in walk(function):
            if call.type != "call_expression" or text(
                    call.child_by_field_name("function")) not in LOOKUPS | SHIMMED:
                continue
            current = call
            while current.parent is not None and current.id != function.id:
                parent = current.parent
                if parent.type in ("switch_statement", "case_statement"):
                    return False
                later = [c for c in parent.named_children if c.start_byte >= current.end_byte]
                if parent.type == "if_statement":  # the branches run after their condition
                    condition = parent.child_by_field_name("condition")
                    if condition is None or condition.id != current.id:
                        later = []
                if any(_span(n) in self.visited for c in later for n in walk(c)):
                    return False
                current = parent
        return True

    def translate(self, record: SymbolicRecord) -> Translation:
        return self.run(self.ctx.extraction.roles["queue"],
                        [CInt(record.event, False), EventQDict(record)])

    def execute(self, node: Any, state: Any) -> Any:
        if not state.dead:
            self.visited.add(_span(node))
        return super().execute(node, state)

    def eval(self, node: Any, state: Any, guard: Term) -> Value:
        self.visited.add(_span(node))
        if node.type == "call_expression":
            name = text(node.child_by_field_name("function"))
            if name in LOOKUPS or name in SHIMMED:
                self.nested_decision |= len(self.frames) > 1
                variables = {n: v.value for scope in state.scopes for n, v in scope.items()}
                self.snapshots.append(("lookup" if name in LOOKUPS else "emit",
                                       conj(state.pc, guard), variables))
        return super().eval(node, state, guard)


def queue_claim(original: Callbacks, mutated: Callbacks, record: SymbolicRecord
                 ) -> Tuple[Optional[Term], str]:
    """Same decisions, same aborts, same variables wherever the decision is taken."""
    o_run, m_run = Traced(original.ctx), Traced(mutated.ctx)
    o, m = o_run.translate(record), m_run.translate(record)
    if o_run.nested_decision or m_run.nested_decision:
        return None, "a decision inside a helper function is not compared"
    if not (o_run.decisions_end_translation() and m_run.decisions_end_translation()):
        return None, "code the translation executes also runs after a decision"
    if [s[0] for s in o_run.snapshots] != [s[0] for s in m_run.snapshots]:
        return None, ""
    parts = [o.decisions[k] == m.decisions[k] for k in ("lookup", "emit", "drop")]
    parts.append(o.defined() == m.defined())
    for (_, o_pc, o_vars), (_, m_pc, m_vars) in zip(o_run.snapshots, m_run.snapshots):
        parts.append(o_pc == m_pc)
        if set(o_vars) != set(m_vars):
            return None, ""
        for name, value in o_vars.items():
            same = same_value(value, m_vars[name])
            if same is None:
                return None, f"z3 cannot compare the variable '{name}' at the decision"
            parts.append(z3.Or(z3.Not(o_pc), same))
    return z3.And(*parts), ""


def paired_callbacks(original: Extraction, mutated: Extraction, catalog: Catalog
               ) -> Optional[Tuple[Callbacks, Callbacks]]:
    """The original's and the changed version's functions, over the same symbolic records (each
    reads its own rate table); None when the two do not number the events alike."""
    spaces = EventSpace(catalog, original), EventSpace(catalog, mutated)
    if spaces[0].names != spaces[1].names:
        return None
    return Callbacks(spaces[0], original), Callbacks(spaces[1], mutated)


def decision_unchanged(original: Extraction, mutated: Extraction, catalog: Catalog,
                       timeout_ms: int) -> bool:
    """z3 proves @mutated's queue function decides as @original's, in the same state."""
    pair = paired_callbacks(original, mutated, catalog)
    if pair is None:
        return False
    try:
        record = pair[0].record("e")
        claim, _ = queue_claim(pair[0], pair[1], record)
        if claim is None:
            return False
        verdict = decide([record.valid()], [("the same decision", claim)], timeout_ms)
    except (Unsupported, NotModelled, z3.Z3Exception):
        return False
    return bool(verdict.status == PROVED)


def equivalent(original: Extraction, mutated: Extraction, catalog: Catalog, role: str,
               timeout_ms: int, edits_decision: bool = False) -> Tuple[bool, str]:
    """Is @mutated's hash, equality or queue decision (@role) @original's, for every valid
    event the code can meet? (True, why) when z3 proves it; else (False, a note).

    @edits_decision: the edit is in the call that decides (the lookup or the emit), so
    there is nothing to compare after it.
    """
    if role == "queue" and edits_decision:
        return False, ""
    pair = paired_callbacks(original, mutated, catalog)
    if pair is None or role not in ("queue", "hash", "equal"):
        return False, ""
    cb, mut = pair
    try:
        if role == "queue":
            record = cb.record("e")
            claim, note = queue_claim(cb, mut, record)
            if claim is None:
                return False, note
            claims = [("the same decision, in the same state", claim)]
            assumptions = [record.valid()]
            why = ("the queue function decides the same for every valid event, with the "
                   "same variables for the code after the decision (z3)")
        elif role == "hash":
            a, b = cb.record("a"), cb.record("b")
            o_def, m_def = (c.translation("hash", a).defined() for c in (cb, mut))
            claims = [("the same hash", z3.And(o_def == m_def,
                                               z3.Or(z3.Not(o_def), cb.hash(a) == mut.hash(a))))]
            both = z3.And(o_def, cb.translation("hash", b).defined(),
                          cb.translation("equal", a, b).defined())
            consistent = [("defined where the original is", o_def == m_def),
                          ("equal keys hash equally", z3.Or(z3.Not(both), inv.hash_consistent(
                              mut.hash, cb.equal, a, b)))]
            assumptions = [cb.reaches_table(a), cb.reaches_table(b), a.valid(), b.valid()]
            if decide(assumptions, claims, timeout_ms).status == PROVED:
                return True, ("the same hash as the original on every record the table can "
                              "hold (z3)")
            claims = consistent
            why = ("the hash differs from the original's but still agrees with the equality "
                   "on every record the table can hold (z3), so GLib's table finds the same keys")
        else:
            s, k = cb.record("s"), cb.record("k")
            o_def, m_def = (c.translation("equal", s, k).defined() for c in (cb, mut))
            claims = [("the same equality", z3.And(o_def == m_def, z3.Or(
                z3.Not(o_def), cb.equal(s, k) == mut.equal(s, k))))]
            assumptions = [cb.reaches_table(s), cb.reaches_table(k), s.valid(), k.valid()]
            why = "the same equality as the original on every pair of records in the table (z3)"
        verdict = decide(assumptions, claims, timeout_ms)
    except (Unsupported, NotModelled, z3.Z3Exception) as error:
        return False, f"z3 cannot translate the changed code ({error})"
    if verdict.status == PROVED:
        return True, why
    if verdict.status == UNKNOWN:
        return False, f"equivalence not decided: {verdict.reason}"
    return False, ""


# ------------------------------------------------------------------ proofs


def translated_nodes(extraction: Extraction, catalog: Catalog) -> Set[Tuple[Point, Point]]:
    """Spans of the queue function's nodes the translation executes (up to its decision):
    an edit elsewhere cannot change what the proofs see. Empty when it does not translate."""
    space = EventSpace(catalog, extraction)
    try:
        traced = Traced(Context(space, extraction))
        traced.translate(SymbolicRecord(space, "e"))
    except (Unsupported, NotModelled, z3.Z3Exception):
        return set()
    return traced.visited
