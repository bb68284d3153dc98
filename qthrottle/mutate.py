"""qthrottle mutate TARGET: how many seeded faults in the throttle do the engines catch?

Each mutant (harness/mutation.py: one edit inside a throttle function or the
rate table) goes through, in order, stopping at the first verdict:

1. extraction: a mutant the extractor no longer recognises as a throttle is
   *stillborn*, listed apart and not counted; so is one that does not compile;
2. equivalence, when the edit is in code the z3 proofs translate (hash, equality,
   the queue function up to its decision): z3 shows the mutated function equal to
   the original on every valid event the code can meet. A hash that differs but
   still agrees with the equality counts too: GLib's table then finds the same
   keys. *Equivalent* mutants are listed apart, not counted;
3. the z3 proofs on the mutant: the first FALSIFIED invariant *kills* it. Its
   counterexample is replayed in the mutant's C (--no-replay: the mutant is only
   compile-checked, not built);
4. the build, then the stateful engine: the first invariant it breaks (fixed seed);
5. otherwise the mutant *survives*, with a reason: a differential run against the
   original C says whether any behaviour changed, and known blind spots of the
   harness (leak detection off) are named. A mutant that only a timed-out or
   untranslatable proof could still kill is *unknown*, never killed.

The oracle stays fixed, as a test suite does while the program is mutated: every
mutant is checked against the original target's policy (rates and key members,
from the original extraction), else a changed rate would redefine the
specification it is checked against. Mutation analysis needs a target that holds:
the original goes through the same engines, and one that breaks an invariant is an
input error.

Score: killed / (mutants - equivalent - stillborn). Exit 0 when it reaches
--min-score, 1 below, 2 input or tool error, 3 when it is below only because
some mutants ended UNKNOWN (it would reach it were they killed).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import z3
from hypothesis import HealthCheck, Phase, Verbosity, errors, given, seed, settings
from hypothesis import strategies as st

from qthrottle.common import (
    EXIT_ERROR,
    EXIT_FALSIFIED,
    EXIT_HOLDS,
    EXIT_UNKNOWN,
    TARGET_HELP,
    add_qapi_dir,
    target_from,
)
from qthrottle.generate import event_data
from qthrottle.harness.build import (
    CFLAGS,
    SHIM_DIR,
    UNIT_NAME,
    Build,
    BuildError,
    _compiler,
    _pkg_config,
    build,
    content_addressed,
    generated_files,
)
from qthrottle.harness.driver import Driver, RunResult, StepResult
from qthrottle.harness.extract import SHIMMED, Extraction, ExtractionError, extract, walk
from qthrottle.harness.mutation import MUTATED_ROLES, Mutant, Point, mutants
from qthrottle.harness.target import Target
from qthrottle.model import invariants as inv
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.timeline import Advance, AdvanceToNext, Operation, Queue
from qthrottle.proofs.callbacks import Callbacks
from qthrottle.proofs.engine import (
    DEFAULT_TIMEOUT_MS,
    ProofReport,
    ProofResult,
    prove,
    replay_counterexamples,
)
from qthrottle.proofs.execution import Unsupported, conj, text
from qthrottle.proofs.policy import derive_policy
from qthrottle.proofs.solve import FALSIFIED, PROVED, UNKNOWN, decide
from qthrottle.proofs.space import EventSpace, SymbolicRecord
from qthrottle.proofs.theorems import THEOREMS
from qthrottle.proofs.totality import check_totality
from qthrottle.proofs.translate import LOOKUPS, Context, Executor, Translation
from qthrottle.proofs.values import (
    CBool,
    CInt,
    ConfEntry,
    CStr,
    DataDict,
    EventQDict,
    NotModelled,
    NullPtr,
    Opaque,
    Ordering,
    RateTable,
    RecordPtr,
    StructValue,
    Unreachable,
    Value,
)
from qthrottle.stateful import (
    PROFILES,
    HarnessFailure,
    Profile,
    Subject,
    Violation,
    make_machine,
    minimize,
    replay,
    run_machine,
)

DEFAULT_SEED = 20261125
DEFAULT_MIN_SCORE = 95.0
KILLED, EQUIVALENT, SURVIVED, STILLBORN, UNKNOWN_VERDICT = (
    "killed", "equivalent", "survived", "stillborn", "unknown")
Term = Any

# Survivors whose dropped call only frees memory: blind spots of the harness, by design.
LEAK_BLIND_SPOTS = {
    "g_free": "the record is never freed: a memory leak, and the harness runs ASan with "
              "leak detection off (detect_leaks=0) and counts QObject references only",
    "timer_free": "the timer is never freed: a memory leak, and the harness's virtual "
                  "clock keeps every timer allocated (to report misuse), so nothing sees it",
}


@dataclass
class Outcome:
    """What the engines made of one mutant."""

    mutant: Mutant
    verdict: str  # killed, equivalent, survived, stillborn, unknown
    engine: str = ""  # killed: "z3" or "stateful"
    invariant: Optional[int] = None  # killed: the (first) invariant broken
    reason: str = ""  # equivalent, survived, stillborn, unknown: why
    detail: str = ""  # killed: the counterexample's message
    operations: List[str] = field(default_factory=list)  # stateful kill: its timeline
    seconds: float = 0.0

    def describe(self) -> str:
        if self.verdict == KILLED:
            return f"killed by {self.engine} invariant {self.invariant}"
        return self.verdict


@dataclass
class MutationReport:
    target: str
    monitor_c: Path
    profile: Profile
    seed: int
    timeout_ms: int
    jobs: int
    outcomes: List[Outcome]
    seconds: float

    def count(self, verdict: str) -> int:
        return sum(1 for o in self.outcomes if o.verdict == verdict)

    @property
    def scored(self) -> int:
        """Mutants the score counts: all but the equivalent and the stillborn."""
        return len(self.outcomes) - self.count(EQUIVALENT) - self.count(STILLBORN)

    @property
    def score(self) -> Optional[float]:
        return 100.0 * self.count(KILLED) / self.scored if self.scored else None

    @property
    def score_if_unknown_killed(self) -> Optional[float]:
        if not self.scored:
            return None
        return 100.0 * (self.count(KILLED) + self.count(UNKNOWN_VERDICT)) / self.scored


# --------------------------------------------------------------- the worker

@dataclass(frozen=True)
class Job:
    """One mutant's analysis, as sent to a worker process (picklable)."""

    original: Path
    qapi_dir: Path
    profile: Profile
    seed: int
    timeout_ms: int
    mutant: Optional[Mutant]  # None: check the original itself
    replay: bool = True  # build a z3-killed mutant and replay its counterexample in C


class _Original:
    """What every mutant of one target is compared with (built once per worker)."""

    def __init__(self, path: Path, qapi_dir: Path) -> None:
        self.catalog = Target(str(path), path, qapi_dir).catalog()
        self.extraction = extract(path)
        derived = derive_policy(self.extraction, self.catalog)
        self.policy, self.undecided = derived.policy, derived.unknown
        self.source = path.read_bytes()
        self._build: Optional[Build] = None
        self._queue_visited: Optional[Set[Tuple[Point, Point]]] = None

    def build(self) -> Build:
        if self._build is None:
            self._build = build(self.extraction, tuple(self.catalog.events))
        return self._build

    def queue_visited(self) -> Set[Tuple[Point, Point]]:
        """The queue function's nodes the z3 translation executes (up to its decision)."""
        if self._queue_visited is None:
            space = EventSpace(self.catalog, self.extraction)
            try:
                traced = _Traced(Context(space, self.extraction))
                traced.translate(SymbolicRecord(space, "e"))
                self._queue_visited = traced.visited
            except (Unsupported, NotModelled, z3.Z3Exception):
                self._queue_visited = set()
        return self._queue_visited


_originals: Dict[Tuple[Path, Path], _Original] = {}


def _original(job: Job) -> _Original:
    key = (job.original, job.qapi_dir)
    if key not in _originals:
        _originals[key] = _Original(job.original, job.qapi_dir)
    return _originals[key]


def analyse(job: Job) -> Outcome:
    """The verdict on one mutant (runs in a worker process)."""
    assert job.mutant is not None
    start = time.perf_counter()
    try:
        outcome = _analyse(job, job.mutant)
    except Exception as error:  # one mutant's failure is its verdict: UNKNOWN
        outcome = Outcome(job.mutant, UNKNOWN_VERDICT,
                          reason=f"the analysis failed: {type(error).__name__}: {error}")
    outcome.seconds = time.perf_counter() - start
    return outcome


def _analyse(job: Job, mutant: Mutant) -> Outcome:
    original = _original(job)
    path = content_addressed(mutant.apply(original.source), "mutants")
    try:
        extraction = extract(path)
    except ExtractionError as failure:
        return Outcome(mutant, STILLBORN, reason=f"does not extract: {_after_path(failure, path)}")
    translated = _translated(mutant, original, extraction, job.timeout_ms)
    notes: List[str] = []  # why z3 said nothing about the mutant, if it did not
    undecided: List[str] = []  # proofs that ended UNKNOWN
    events = tuple(original.catalog.events)
    if translated:
        equivalent, note = equivalence(original.extraction, extraction, original.catalog,
                                       mutant, job.timeout_ms)
        if equivalent:
            compiler_says = compile_error(extraction, events)
            if compiler_says is not None:
                return Outcome(mutant, STILLBORN, reason=_stillborn(compiler_says, path))
            return Outcome(mutant, EQUIVALENT, reason=note)
        if note:
            notes.append(note)
        falsified, undecided = first_falsified(extraction, original.catalog, mutant.role,
                                               job.timeout_ms)
        if falsified is not None:
            detail = f"{falsified.law}: {falsified.reason}"
            if job.replay:
                try:
                    build(extraction, events)
                except BuildError as failure:
                    return Outcome(mutant, STILLBORN, reason=_stillborn(failure, path))
                detail += _replayed(falsified, extraction, original.catalog, job.timeout_ms)
            else:
                compiler_says = compile_error(extraction, events)
                if compiler_says is not None:
                    return Outcome(mutant, STILLBORN, reason=_stillborn(compiler_says, path))
            return Outcome(mutant, KILLED, "z3", falsified.invariant, detail=detail)
    try:
        built = build(extraction, events)
    except BuildError as failure:
        return Outcome(mutant, STILLBORN, reason=_stillborn(failure, path))

    with Driver(built.binary) as driver:
        subject = Subject.create(driver, original.policy, original.catalog, original.undecided)
        found = first_violation(subject, job.profile, job.seed)
        if isinstance(found, str):
            return Outcome(mutant, UNKNOWN_VERDICT, reason="; ".join([found, *undecided]))
        if found is not None:
            violation, operations = found
            return Outcome(mutant, KILLED, "stateful", violation.invariant,
                           detail=violation.message,
                           operations=[op.describe() for op in operations])
        if undecided:
            return Outcome(mutant, UNKNOWN_VERDICT, reason="; ".join(
                undecided + [f"the stateful engine found nothing ({job.profile.describe()})"]))
        with Driver(original.build().binary) as reference:
            difference = observed_difference(reference, driver, subject, job.profile, job.seed)
    return Outcome(mutant, SURVIVED, reason=_survival_reason(mutant, translated, difference,
                                                             job.profile, notes))


def _after_path(error: object, path: Path) -> str:
    """An error message about the mutant file, without its cache path."""
    message = re.sub(re.escape(str(path)) + r":(\d+):", r"line \1 of the mutant:", str(error))
    return re.sub(re.escape(str(path)) + r":?\s*", "", message)


def _stillborn(error: object, path: Path) -> str:
    lines = str(error).splitlines()
    first = next((line for line in lines if "error:" in line), lines[-1] if lines else "")
    return "does not compile: " + _after_path(first.strip(), path)


def compile_error(extraction: Extraction, schema_events: Sequence[str]) -> Optional[str]:
    """The first error the compiler finds in the unit build() would compile, or None.

    Syntax and types only (gcc -fsyntax-only, a tenth of a build): for the mutants z3
    decides, which need no driver.
    """
    events = list(schema_events) + [e for e in extraction.events_named
                                    if e not in schema_events]
    cflags, _ = _pkg_config()
    with tempfile.TemporaryDirectory(prefix="qthrottle-mutant-") as work:
        for name, content in generated_files(extraction, events).items():
            Path(work, name).write_text(content, encoding="utf-8")
        result = subprocess.run([_compiler(), *CFLAGS, "-fsyntax-only", f"-I{work}",
                                 f"-I{SHIM_DIR}", *cflags, str(Path(work, UNIT_NAME))],
                                capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return None
    return result.stderr.strip() or f"{_compiler()} exited with {result.returncode}"


def _translated(mutant: Mutant, original: _Original, mutated: Extraction,
                timeout_ms: int) -> bool:
    """Does the edit change what the z3 proofs translate (hash, equality, the queue's
    decision)? Else the proofs would give the original's results, and are not rerun."""
    if mutant.role in ("hash", "equal"):
        return True
    if mutant.role == "rates":  # the rates reach the proofs only through the decision
        return not decision_unchanged(original.extraction, mutated, original.catalog,
                                      timeout_ms)
    return mutant.role == "queue" and mutant.span in original.queue_visited()


def _survival_reason(mutant: Mutant, translated: bool, difference: Optional[str],
                     profile: Profile, notes: Sequence[str]) -> str:
    parts = []
    if difference is not None:
        parts.append(f"the C behaves differently from the original ({difference}) but "
                     "breaks no invariant the engines check")
    else:
        blind = [LEAK_BLIND_SPOTS[c] for c in sorted(mutant.calls) if c in LEAK_BLIND_SPOTS]
        parts += blind or ["no reason established"]
        parts.append(f"no difference from the original C in {profile.runs} random timelines "
                     f"of up to {profile.steps} steps")
    if mutant.role == "queue" and not translated:
        parts.append("the edit is after the queue's decision, outside what the proofs translate")
    return "; ".join([*parts, *notes])


# ------------------------------------------------------------ equivalence

def _span(node: Any) -> Tuple[Point, Point]:
    return (tuple(node.start_point), tuple(node.end_point))


class _Traced(Executor):  # type: ignore[misc]
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


def _same_value(a: Value, b: Value) -> Optional[Term]:
    """A z3 term saying two C values are equal; None when they cannot be compared."""
    if isinstance(a, CInt) and isinstance(b, CInt):
        return a.term == b.term if (a.width, a.signed) == (b.width, b.signed) else None
    if isinstance(a, CBool) and isinstance(b, CBool):
        return a.term == b.term
    if isinstance(a, CStr) and isinstance(b, CStr):
        return z3.And(a.null == b.null, z3.Or(a.null, a.text == b.text))
    if isinstance(a, Ordering) and isinstance(b, Ordering):
        return z3.And(a.less == b.less, a.equal == b.equal, a.magnitude == b.magnitude)
    if isinstance(a, ConfEntry) and isinstance(b, ConfEntry):
        return _same_value(a.event, b.event)
    if isinstance(a, StructValue) and isinstance(b, StructValue):
        if [k for k, _ in a.fields] != [k for k, _ in b.fields]:
            return None
        parts = [_same_value(x, y) for (_, x), (_, y) in zip(a.fields, b.fields)]
        return None if any(p is None for p in parts) else z3.And(True, *parts)
    if isinstance(a, (RecordPtr, DataDict, EventQDict)) and type(a) is type(b):
        return z3.BoolVal(a.record is b.record)
    if isinstance(a, (NullPtr, RateTable, Unreachable)) and type(a) is type(b):
        return z3.BoolVal(True)
    if isinstance(a, Opaque) and isinstance(b, Opaque) and a.what == b.what \
            and "different kinds of value" not in a.what:
        return z3.BoolVal(True)
    return None


def _queue_claim(original: Callbacks, mutated: Callbacks, record: SymbolicRecord
                 ) -> Tuple[Optional[Term], str]:
    """Same decisions, same aborts, same variables wherever the decision is taken."""
    o_run, m_run = _Traced(original.ctx), _Traced(mutated.ctx)
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
            same = _same_value(value, m_vars[name])
            if same is None:
                return None, f"z3 cannot compare the variable '{name}' at the decision"
            parts.append(z3.Or(z3.Not(o_pc), same))
    return z3.And(*parts), ""


def _callbacks(original: Extraction, mutated: Extraction, catalog: Catalog
               ) -> Optional[Tuple[Callbacks, Callbacks]]:
    """The original's and the mutant's functions, over the same symbolic records (each
    reads its own rate table); None when the two do not number the events alike."""
    spaces = EventSpace(catalog, original), EventSpace(catalog, mutated)
    if spaces[0].names != spaces[1].names:
        return None
    return Callbacks(spaces[0], original), Callbacks(spaces[1], mutated)


def decision_unchanged(original: Extraction, mutated: Extraction, catalog: Catalog,
                       timeout_ms: int) -> bool:
    """z3 proves the mutant's queue function decides as the original's, in the same state."""
    pair = _callbacks(original, mutated, catalog)
    if pair is None:
        return False
    try:
        record = pair[0].record("e")
        claim, _ = _queue_claim(pair[0], pair[1], record)
        if claim is None:
            return False
        verdict = decide([record.valid()], [("the same decision", claim)], timeout_ms)
    except (Unsupported, NotModelled, z3.Z3Exception):
        return False
    return bool(verdict.status == PROVED)


def equivalence(original: Extraction, mutated: Extraction, catalog: Catalog, mutant: Mutant,
                timeout_ms: int) -> Tuple[bool, str]:
    """Is the mutated hash, equality or queue decision the original's, for every valid
    event the code can meet? (True, why) when z3 proves it; else (False, a note)."""
    if mutant.role == "queue" and mutant.calls & (LOOKUPS | SHIMMED):
        return False, ""  # the edit holds the decision itself: nothing to compare after it
    pair = _callbacks(original, mutated, catalog)
    if pair is None or mutant.role not in ("queue", "hash", "equal"):
        return False, ""
    cb, mut = pair
    try:
        if mutant.role == "queue":
            record = cb.record("e")
            claim, note = _queue_claim(cb, mut, record)
            if claim is None:
                return False, note
            claims = [("the same decision, in the same state", claim)]
            assumptions = [record.valid()]
            why = ("the queue function decides the same for every valid event, with the "
                   "same variables for the code after the decision (z3)")
        elif mutant.role == "hash":
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
        return False, f"z3 cannot translate the mutant ({error})"
    if verdict.status == PROVED:
        return True, why
    if verdict.status == UNKNOWN:
        return False, f"equivalence not decided: {verdict.reason}"
    return False, ""


# ------------------------------------------------------------------ proofs

def first_falsified(extraction: Extraction, catalog: Catalog, role: str, timeout_ms: int
                    ) -> Tuple[Optional[ProofResult], List[str]]:
    """The first invariant the z3 proofs falsify on a mutant, and why the proofs tried
    before it were UNKNOWN, if some were. A kill needs one counterexample: the others are
    not searched, nor made readable. The laws about the mutated function come first:
    for a queue function (or rate) mutant, invariants 4 and 7 (the decision and its reads)."""
    space = EventSpace(catalog, extraction)
    laws: List[Tuple[int, str, Optional[Callable[[Callbacks], Any]]]] = [
        *THEOREMS, (7, "totality", None)]
    if role in ("queue", "rates"):
        laws.sort(key=lambda law: law[0] not in (4, 7))
    unknown: List[str] = []
    for invariant, law, theorem in laws:
        events: Dict[str, Any] = {}
        try:
            if theorem is None:
                total = check_totality(space, extraction, timeout_ms)
                status, reason, events = total.status, total.reason, total.events
                replay_kind = f"totality:{total.role}"
            else:
                obligation = theorem(Callbacks(space, extraction))
                verdict = decide(obligation.assumptions, obligation.claims, timeout_ms)
                status, reason, replay_kind = verdict.status, verdict.reason, law
                if status == FALSIFIED:
                    reason = f"counterexample to '{reason}'"
                    events = {n: r.concrete(verdict.model)
                              for n, r in obligation.records.items()}
        except (Unsupported, NotModelled, z3.Z3Exception) as error:
            status, reason = UNKNOWN, str(error)
        if status == FALSIFIED:
            return ProofResult(invariant, law, FALSIFIED, reason, events,
                               replay_kind=replay_kind), unknown
        if status == UNKNOWN:
            unknown.append(f"proof of invariant {invariant} ({law}) UNKNOWN: {reason}")
    return None, unknown


def _replayed(result: ProofResult, extraction: Extraction, catalog: Catalog,
              timeout_ms: int) -> str:
    """The z3 counterexample run through the mutant's sanitized C, as a note."""
    replay_counterexamples(ProofReport(result.law, timeout_ms, [result], 0.0), extraction,
                           catalog)
    if result.confirmed is None:
        return ""
    return ("; replayed in C: confirmed" if result.confirmed
            else "; replayed in C: the C did not do what z3 predicts")


# --------------------------------------------------------------- stateful

def _settings(profile: Profile) -> settings:
    # Generation only: a mutant needs the first broken invariant, not the shortest
    # example (minimize() below still makes its timeline 1-minimal).
    return settings(max_examples=profile.runs, stateful_step_count=profile.steps,
                    deadline=None, database=None, verbosity=Verbosity.quiet,
                    phases=[Phase.generate], print_blob=False, report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck))


Found = Union[None, str, Tuple[Violation, List[Operation]]]


def first_violation(subject: Subject, profile: Profile, seed_value: int) -> Found:
    """(Violation, timeline) of the first invariant the stateful engine breaks, None if
    none, or a string saying why the search could not decide."""
    machine = make_machine(subject, frozenset())
    try:
        run_machine(seed(seed_value)(machine), settings=_settings(profile))
    except Violation as violation:
        latest = getattr(machine, "latest", None)
        found = [r.operation for r in latest.records] if latest is not None else []
        shortest = minimize(subject, frozenset(), violation.invariant, found)
        final, _ = replay(subject, frozenset(), shortest)
        if final is None:
            return f"invariant {violation.invariant}: the failure did not replay"
        return final, shortest
    except HarnessFailure as failure:
        return f"the harness could not decide: {failure}"
    except errors.Flaky as flaky:
        return f"flaky (the C did not behave the same on replay): {flaky}"
    return None


class _Differs(Exception):
    pass


OBSERVED = ("emissions", "clock", "table size", "pending timers", "live QObjects", "findings",
            "crash")


def _observable(step: StepResult) -> Tuple[Any, ...]:
    """What a step shows from outside, in the order of OBSERVED."""
    crash = step.crash.kind if step.crash is not None else None
    return (step.emitted, step.now, step.table, step.pending_timers, step.live_qobjects,
            tuple(f.kind for f in step.findings), crash)


def observed_difference(original: Driver, mutated: Driver, subject: Subject, profile: Profile,
                        seed_value: int) -> Optional[str]:
    """The first step of a random timeline where the two C builds differ, if any."""
    rates = sorted({r for r in subject.policy.rates.values() if r}) or [1_000_000_000]
    gaps = sorted({1, *(r // 2 for r in rates), *rates, *(r + 1 for r in rates)})
    operation = st.one_of(
        *(st.builds(Queue, st.just(e.name), event_data(e)) for e in subject.events),
        st.builds(Advance, st.sampled_from(gaps)), st.just(AdvanceToNext()))

    @seed(seed_value)
    @settings(_settings(profile))
    @given(st.lists(operation, max_size=profile.steps))
    def compare(operations: List[Operation]) -> None:
        a: RunResult = original.run(operations)
        b: RunResult = mutated.run(operations)
        for number, (x, y) in enumerate(zip(a.steps, b.steps), 1):
            if _observable(x) != _observable(y):
                raise _Differs(_difference(number, operations[number - 1], x, y))

    try:
        compare()
    except _Differs as found:
        return str(found)
    return None


def _difference(number: int, operation: Operation, x: StepResult, y: StepResult) -> str:
    differ = [name for name, a, b in zip(OBSERVED, _observable(x), _observable(y)) if a != b]
    return f"step {number}, {operation.describe()}: {', '.join(differ)} differ"


# ------------------------------------------------------------ the original

def check_original(job: Job) -> Optional[str]:
    """Why the original cannot be mutated (it breaks or cannot decide an invariant), or None."""
    original = _original(job)
    report = prove(original.extraction, original.catalog, "original", job.timeout_ms)
    if report.falsified:
        return f"the z3 proofs falsify invariant(s) {sorted(report.falsified)}"
    if report.unknown:
        return "a z3 proof is UNKNOWN: " + str(next(r.reason for r in report.results
                                                    if r.status == UNKNOWN))
    with Driver(original.build().binary) as driver:
        subject = Subject.create(driver, original.policy, original.catalog, original.undecided)
        found = first_violation(subject, job.profile, job.seed)
    if isinstance(found, str):
        return f"the stateful engine could not decide: {found}"
    if found is not None:
        return f"the stateful engine falsifies invariant {found[0].invariant}: {found[0].message}"
    return None


# ------------------------------------------------------------------ driver

def run(target: Target, profile: Profile, seed_value: int, timeout_ms: int, jobs: int,
        operators: Optional[Sequence[str]] = None, replay: bool = True,
        progress: Callable[[Outcome, int, int], None] = lambda *_: None) -> MutationReport:
    """Generate the mutants of @target and analyse them on @jobs processes.

    replay=False: a mutant z3 kills is compile-checked instead of built, and its
    counterexample is not replayed in C (faster: most of a mutant's cost is its build).
    """
    start = time.perf_counter()
    if target.qapi_dir is None:
        raise ExtractionError(f"{target.name}: no QAPI schema found: pass --qapi-dir")
    original = Job(target.monitor_c.resolve(), target.qapi_dir.resolve(), profile, seed_value,
                   timeout_ms, None)
    reference = _original(original)
    reference.build()  # a target that does not compile is an input error, said at once
    every = mutants(reference.extraction, reference.catalog)
    chosen = [m for m in every if operators is None or m.operator in operators]
    context = multiprocessing.get_context("spawn")  # z3 and hypothesis state stay per process
    with ProcessPoolExecutor(max(1, jobs), mp_context=context) as pool:
        baseline = pool.submit(check_original, original)
        futures: List[Future[Outcome]] = [
            pool.submit(analyse, Job(original.original, original.qapi_dir, profile, seed_value,
                                     timeout_ms, m, replay)) for m in chosen]
        pending: Set[Future[Any]] = {baseline, *futures}
        done_count = 0
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            problem = baseline.result() if baseline in done else None
            if problem is not None:
                for future in pending:
                    future.cancel()
                raise ExtractionError(f"{target.name}: mutation analysis needs a target that "
                                      f"holds, but {problem} (see qthrottle verify)")
            for future in done - {baseline}:
                done_count += 1
                progress(future.result(), done_count, len(futures))
        outcomes = [future.result() for future in futures]
    return MutationReport(target.name, target.monitor_c, profile, seed_value, timeout_ms,
                          jobs, outcomes, time.perf_counter() - start)


# ------------------------------------------------------------------ output

def format_report(report: MutationReport, min_score: float) -> List[str]:
    name = report.monitor_c.name
    lines = [f"{'id':<5} {'verdict':<30} {'operator':<34} {'location':<18} edit"]
    for o in report.outcomes:
        m = o.mutant
        lines.append(f"{m.id:<5} {o.describe():<30} {m.operator:<34} "
                     f"{name + ':' + str(m.line):<18} {m.edit}")
    for verdict, title in ((EQUIVALENT, "equivalent (not counted)"),
                           (STILLBORN, "stillborn (not counted)"),
                           (UNKNOWN_VERDICT, "unknown (counted as not killed)"),
                           (SURVIVED, "survivors")):
        chosen = [o for o in report.outcomes if o.verdict == verdict]
        if chosen:
            lines += ["", f"{title}: {len(chosen)}"]
            for o in chosen:
                lines.append(f"  {o.mutant.id} {o.mutant.operator} at {name}:{o.mutant.line}: "
                             f"{o.mutant.edit}")
                lines.append(f"       {o.reason}")
    lines.append("")
    lines.append(score_line(report, min_score))
    return lines


def score_line(report: MutationReport, min_score: float) -> str:
    score = report.score
    if score is None:
        return "score: no mutant to score (every mutant is equivalent or stillborn)"
    unknown = report.count(UNKNOWN_VERDICT)
    return (f"score: {report.count(KILLED)}/{report.scored} killed = {score:.1f}% of "
            f"non-equivalent mutants (minimum {min_score:g}%; {len(report.outcomes)} mutants, "
            f"{report.count(EQUIVALENT)} equivalent, {report.count(STILLBORN)} stillborn, "
            f"{report.count(SURVIVED)} survived, {unknown} unknown)")


def exit_code(report: MutationReport, min_score: float) -> int:
    score = report.score
    if score is None:
        return EXIT_ERROR
    if score >= min_score:
        return EXIT_HOLDS
    reachable = report.score_if_unknown_killed
    return EXIT_UNKNOWN if reachable is not None and reachable >= min_score else EXIT_FALSIFIED


def to_json(report: MutationReport, min_score: float) -> Dict[str, Any]:
    def outcome(o: Outcome) -> Dict[str, Any]:
        record = asdict(o)
        mutant = record.pop("mutant")
        mutant.pop("span")
        mutant["calls"] = sorted(mutant["calls"])
        mutant["edit"] = o.mutant.edit
        mutant["file"] = str(report.monitor_c)
        return {**mutant, **record, "summary": o.describe()}

    return {"target": report.target, "monitor_c": str(report.monitor_c),
            "profile": asdict(report.profile), "seed": report.seed,
            "timeout_ms": report.timeout_ms, "jobs": report.jobs,
            "seconds": round(report.seconds, 1),
            "score": report.score, "min_score": min_score,
            "counts": {v: report.count(v) for v in (KILLED, EQUIVALENT, SURVIVED, STILLBORN,
                                                    UNKNOWN_VERDICT)},
            "exit": exit_code(report, min_score),
            "mutants": [outcome(o) for o in report.outcomes]}


# --------------------------------------------------------------------- CLI

def cmd_mutate(args: argparse.Namespace) -> int:
    target = target_from(args.target, args.qapi_dir)
    profile = PROFILES[args.profile]
    from qthrottle.harness.mutation import OPERATORS
    from qthrottle.proofs.report import bounds

    unknown_operators = [o for o in args.operator or () if o not in OPERATORS]
    if unknown_operators:
        raise ExtractionError(f"no mutation operator {unknown_operators[0]!r} "
                              f"(one of: {', '.join(OPERATORS)})")
    print(f"qthrottle mutate: {target.name} ({target.monitor_c})")
    print(f"  seed {args.seed}; stateful engine, {profile.describe()}; z3 proofs, "
          f"{bounds(args.timeout_ms)}; {args.jobs} job(s)")
    print(f"  functions mutated: {', '.join(MUTATED_ROLES)} and the rate table", flush=True)

    def progress(outcome: Outcome, done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {done}/{total} mutants analysed", end="", file=sys.stderr, flush=True)

    report = run(target, profile, args.seed, args.timeout_ms, args.jobs, args.operator,
                 not args.no_replay, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print()
    print("\n".join(format_report(report, args.min_score)))
    print(f"time: {report.seconds:.1f} s on {report.jobs} job(s) "
          f"(rerun with --seed {args.seed} to reproduce)")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(to_json(report, args.min_score), indent=2)
                                       + "\n")
        except OSError as error:
            print(f"qthrottle: error: cannot write {args.json}: {error.strerror}",
                  file=sys.stderr)
            return EXIT_ERROR
    return exit_code(report, args.min_score)


def _positive(text_value: str) -> int:
    value = int(text_value)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _percent(text_value: str) -> float:
    value = float(text_value)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be a percentage between 0 and 100")
    return value


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "mutate", help="mutation analysis: seed faults in the throttle, count those the "
        "engines catch",
        description=f"TARGET is {TARGET_HELP}. Each mutant of the throttle functions and the "
        "rate table goes through the z3 proofs, then the stateful engine; equivalent and "
        "stillborn mutants are listed apart. Exit: 0 score >= --min-score, 1 below, "
        "2 input or tool error, 3 below only because some mutants ended UNKNOWN.")
    command.add_argument("target", metavar="TARGET")
    add_qapi_dir(command)
    command.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                         help="stateful engine bounds per mutant (default quick)")
    command.add_argument("--seed", type=int, default=DEFAULT_SEED,
                         help=f"seed of every stateful search (default {DEFAULT_SEED})")
    command.add_argument("--timeout-ms", type=_positive, default=DEFAULT_TIMEOUT_MS,
                         metavar="N",
                         help=f"z3 timeout per solver query (default {DEFAULT_TIMEOUT_MS})")
    command.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, metavar="N",
                         help="mutants analysed in parallel (default: the number of cores)")
    command.add_argument("--min-score", type=_percent, default=DEFAULT_MIN_SCORE, metavar="P",
                         help=f"score to reach, in %% (default {DEFAULT_MIN_SCORE:g})")
    command.add_argument("--operator", action="append", metavar="NAME",
                         help="only this mutation operator (repeatable), e.g. "
                         "'change a rate'")
    command.add_argument("--no-replay", action="store_true",
                         help="do not build the mutants z3 kills to replay their "
                         "counterexamples in C; compile-check them only (faster)")
    command.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    command.set_defaults(func=cmd_mutate)
