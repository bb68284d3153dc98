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
3. the z3 proofs on the mutant: the first FALSIFIED invariant *kills* it once its
   counterexample, replayed in the mutant's sanitized C, breaks the invariant there
   too. A counterexample the C does not confirm kills nothing: the mutant goes on to
   the stateful engine, and if that finds nothing either it is *unconfirmed*, listed
   apart and counted as not killed;
4. the build, then the stateful engine: the first invariant it breaks (fixed seed);
5. otherwise the mutant *survives*, with a reason: a differential run against the
   original C says whether any behaviour changed. A mutant that only a timed-out or
   untranslatable proof could still kill is *unknown*, never killed.

The oracle stays fixed, as a test suite does while the program is mutated: every
mutant is checked against the original target's policy (rates and key members,
from the original extraction), else a changed rate would redefine the
specification it is checked against. Mutation analysis needs a target that holds:
the original goes through the same engines, and one that breaks an invariant is an
input error.

Score: killed / (mutants - equivalent - stillborn). Exit 0 when it reaches
--min-score, 1 below, 2 input or tool error, 3 when it is below only because
some mutants ended unknown or unconfirmed (it would reach it were they killed).

The workers die with the command (review/workers.py), and a signal stops them at
once: the mutants analysed so far are printed first.
"""
from __future__ import annotations

import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from qthrottle.core import Interrupted
from qthrottle.engines import generate
from qthrottle.engines.bounds import Profile
from qthrottle.engines.divergence import Comparison
from qthrottle.engines.generate import events_under_test
from qthrottle.engines.stateful import SearchResult, Subject, search
from qthrottle.harness.build import Build, BuildError, build, compile_error
from qthrottle.harness.driver import Driver, HarnessFailure, StepResult
from qthrottle.harness.extract import LOOKUPS_AND_EMIT, ExtractionError, extract
from qthrottle.harness.mutation import Mutant, Point, mutants
from qthrottle.harness.target import Target
from qthrottle.proofs.engine import ProofReport, ProofResult, prove, replay_counterexamples
from qthrottle.proofs.equivalence import decision_unchanged, equivalent, translated_nodes
from qthrottle.proofs.policy import derive_policy
from qthrottle.proofs.solve import FALSIFIED, UNKNOWN
from qthrottle.review.mutation_report import (
    EQUIVALENT,
    KILLED,
    STILLBORN,
    SURVIVED,
    UNCONFIRMED,
    UNKNOWN_VERDICT,
    MutationReport,
    Outcome,
)
from qthrottle.review.workers import worker_pool

DEFAULT_SEED = 20261125

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


class _Original:
    """What every mutant of one target is compared with (built once per worker)."""

    def __init__(self, path: Path, qapi_dir: Path) -> None:
        self.catalog = Target(str(path), path, qapi_dir).catalog()
        self.extraction = extract(path)
        derived = derive_policy(self.extraction, self.catalog)
        self.policy, self.undecided = derived.policy, derived.unknown
        self.source = path.read_bytes()
        self.events = tuple(self.catalog.events)
        self._build: Optional[Build] = None
        self._queue_translated: Optional[Set[Tuple[Point, Point]]] = None

    def build(self) -> Build:
        if self._build is None:
            self._build = build(self.extraction, self.events)
        return self._build

    def queue_translated(self) -> Set[Tuple[Point, Point]]:
        if self._queue_translated is None:
            self._queue_translated = translated_nodes(self.extraction, self.catalog)
        return self._queue_translated

    def search(self, binary: Path, profile: Profile, seed_value: int) -> SearchResult:
        """The stateful engine on a build, against the original's policy, to the first
        broken invariant."""
        with Driver(binary) as driver:
            return search(Subject.create(driver, self.policy, self.catalog, self.undecided),
                          profile, seed_value, stop_at_first=True)


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
    path = mutant.write(original.source)
    try:
        extraction = extract(path)
    except ExtractionError as failure:
        return Outcome(mutant, STILLBORN, reason=f"does not extract: {_after_path(failure, path)}")

    def stillborn() -> Optional[Outcome]:
        said = compile_error(extraction, original.events)
        return None if said is None else Outcome(mutant, STILLBORN,
                                                 reason=_stillborn(said, path))

    translated = _translated(mutant, original, extraction, job.timeout_ms)
    notes: List[str] = []  # why z3 said nothing about the mutant, if it did not
    undecided: List[str] = []  # proofs that ended UNKNOWN
    falsified: Optional[ProofResult] = None
    if translated:
        same, note = equivalent(original.extraction, extraction, original.catalog,
                                mutant.role, job.timeout_ms,
                                edits_decision=bool(mutant.calls & LOOKUPS_AND_EMIT))
        if same:
            return stillborn() or Outcome(mutant, EQUIVALENT, reason=note)
        notes += [note] if note else []
        # The callback laws only: the run invariants' k-induction takes seconds per
        # mutant, and the stateful engine judges 3-6 on the mutant's runs below.
        report = prove(extraction, original.catalog, mutant.id, job.timeout_ms,
                       stop_at_first=True, first=(4, 7) if mutant.role in ("queue", "rates")
                       else (), runs=False)
        undecided = [f"proof of invariant {r.invariant} ({r.law}) UNKNOWN: {r.reason}"
                     for r in report.results if r.status == UNKNOWN]
        falsified = next((r for r in report.results if r.status == FALSIFIED), None)
    try:
        built = build(extraction, original.events)
    except BuildError as failure:
        return Outcome(mutant, STILLBORN, reason=_stillborn(failure, path))
    unconfirmed = ""  # z3's counterexample, if the mutant's C did not break it
    if falsified is not None:
        detail = f"{falsified.law}: {falsified.reason}"
        confirmed, replayed = _replayed(falsified, extraction, original)
        if confirmed:
            return Outcome(mutant, KILLED, "z3", falsified.invariant,
                           detail=f"{detail}; replayed in C: confirmed")
        unconfirmed = f"z3 falsifies invariant {falsified.invariant} ({detail}), {replayed}"
    found = original.search(built.binary, job.profile, job.seed)
    if found.unknown:
        return Outcome(mutant, UNKNOWN_VERDICT, reason="; ".join([found.unknown, *undecided]))
    for number, example in found.falsified.items():
        return Outcome(mutant, KILLED, "stateful", number, detail=example.message,
                       operations=[op.describe() for op in example.operations],
                       reason="; ".join([*([unconfirmed] if unconfirmed else []), *undecided]))
    nothing = f"the stateful engine found nothing ({job.profile.describe()})"
    if unconfirmed:
        return Outcome(mutant, UNCONFIRMED, "z3", falsified.invariant if falsified else None,
                       reason=f"{unconfirmed}; {nothing}")
    if undecided:
        return Outcome(mutant, UNKNOWN_VERDICT, reason="; ".join(undecided + [nothing]))
    difference = observed_difference(original, built.binary, job.profile, job.seed)
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


def _translated(mutant: Mutant, original: _Original, mutated: Any, timeout_ms: int) -> bool:
    """Does the edit change what the z3 proofs translate (hash, equality, the queue's
    decision)? Else the proofs would give the original's results, and are not rerun."""
    if mutant.role in ("hash", "equal"):
        return True
    if mutant.role == "rates":  # the rates reach the proofs only through the decision
        return not decision_unchanged(original.extraction, mutated, original.catalog,
                                      timeout_ms)
    return mutant.role == "queue" and mutant.span in original.queue_translated()


def _replayed(result: ProofResult, extraction: Any, original: _Original) -> Tuple[bool, str]:
    """Does the mutant's sanitized C break the invariant on z3's counterexample? And what
    the replay said, when it did not."""
    replay_counterexamples(ProofReport(result.law, 0, [result], 0.0), extraction,
                           original.catalog)
    if result.confirmed:
        return True, ""
    if result.confirmed is None:
        said = result.replay[0] if result.replay else "no concrete events to replay"
        return False, f"not replayed in C ({said})"
    return False, "but the C, replaying its counterexample, does not break it"


def _survival_reason(mutant: Mutant, translated: bool, difference: Optional[str],
                     profile: Profile, notes: Sequence[str]) -> str:
    if difference is not None:
        parts = [f"the C behaves differently from the original ({difference}) but breaks "
                 "no invariant the engines check"]
    else:
        parts = [f"no difference from the original C in {profile.runs} random timelines of "
                 f"up to {profile.steps} steps"]
    if mutant.role == "queue" and not translated:
        parts.append("the edit is after the queue's decision, outside what the proofs translate")
    return "; ".join([*parts, *notes])


# Everything a step shows from outside: a survivor differs in none of these.
OBSERVED = ("emissions", "clock", "table size", "pending timers", "live QObjects", "findings",
            "crash")


def _observable(step: StepResult) -> Tuple[Any, ...]:
    crash = step.crash.kind if step.crash is not None else None
    return (step.emitted, step.now, step.table, step.pending_timers, step.live_qobjects,
            tuple(f.kind for f in step.findings), crash)


def observed_difference(original: _Original, mutated: Path, profile: Profile,
                        seed_value: int) -> Optional[str]:
    """The first step of a generated timeline where the two C builds differ, if any."""
    events = events_under_test(original.catalog, list(original.policy.rates))
    timelines = generate.timelines(list(events.focus), original.policy.rates.values(),
                                   profile.steps, unthrottled=events.unthrottled)
    with Driver(original.build().binary) as reference, Driver(mutated) as driver:
        comparison = Comparison(reference, driver, _observable)
        try:
            found = comparison.first_divergence(timelines, profile.runs, seed_value)
        except HarnessFailure as failure:
            return f"the harness could not decide: {failure}"
        if found is None:
            return None
        operations = found[0]
        a, b, index = comparison.run(operations)
    assert index is not None
    x, y = a.steps[index], b.steps[index]
    differ = [name for name, p, q in zip(OBSERVED, _observable(x), _observable(y)) if p != q]
    return f"step {index + 1}, {operations[index].describe()}: {', '.join(differ)} differ"


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
    if original.undecided:  # invariants 5 and 6 would not be judged on any mutant
        return "the throttle policy's key is UNKNOWN: " + "; ".join(
            f"{event}: {why}" for event, why in original.undecided.items())
    found = original.search(original.build().binary, job.profile, job.seed)
    if found.unknown:
        return f"the stateful engine could not decide: {found.unknown}"
    for number, example in found.falsified.items():
        return f"the stateful engine falsifies invariant {number}: {example.message}"
    return None


# ------------------------------------------------------------------ driver

def run(target: Target, profile: Profile, seed_value: int, timeout_ms: int, jobs: int,
        operators: Optional[Sequence[str]] = None,
        progress: Callable[[Outcome, int, int], None] = lambda *_: None) -> MutationReport:
    """Generate the mutants of @target and analyse them on @jobs processes.

    On SIGINT or SIGTERM (core.Interrupted) the workers are killed at once and the
    interruption carries the report of the mutants analysed so far (``partial``).
    """
    start = time.perf_counter()
    target.catalog()  # no schema is an input error, said now
    assert target.qapi_dir is not None
    original = Job(target.monitor_c.resolve(), target.qapi_dir.resolve(), profile, seed_value,
                   timeout_ms, None)
    reference = _original(original)
    reference.build()  # a target that does not compile is an input error, said at once
    every = mutants(reference.extraction, reference.catalog)
    chosen = [m for m in every if operators is None or m.operator in operators]

    def report(outcomes: List[Outcome]) -> MutationReport:
        return MutationReport(target.name, target.monitor_c, profile, seed_value, timeout_ms,
                              jobs, outcomes, time.perf_counter() - start)

    futures: List[Future[Outcome]] = []
    finished: List[Future[Outcome]] = []
    # Interrupted, or an error: the workers stop now, not after their mutants.
    with worker_pool(jobs) as pool:
        try:
            baseline = pool.submit(check_original, original)
            futures = [
                pool.submit(analyse, Job(original.original, original.qapi_dir, profile,
                                         seed_value, timeout_ms, m)) for m in chosen]
            pending: Set[Future[Any]] = {baseline, *futures}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                problem = baseline.result() if baseline in done else None
                if problem is not None:
                    raise ExtractionError(f"{target.name}: mutation analysis needs a target "
                                          f"that holds, but {problem} (see qthrottle verify)")
                for future in done - {baseline}:
                    finished.append(future)
                    progress(future.result(), len(finished), len(futures))
        except Interrupted as stop:
            finished.sort(key=futures.index)
            stop.partial = report([future.result() for future in finished])
            raise
    return report([future.result() for future in futures])
