"""Replay a proof's counterexample against the compiled C (harness Driver).

Each replay says what it ran, in a form that can be pasted into a test, what
the C did, and whether that confirms the proof's finding.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

from qthrottle.harness.driver import Crash, Driver, RunResult
from qthrottle.model import invariants as inv
from qthrottle.model.ghash import CallbackCrashed, EqualFn, HashFn, Record, driver_callbacks
from qthrottle.model.logic import Bool
from qthrottle.model.policy import Policy
from qthrottle.model.timeline import Advance, AdvanceToNext, Operation, Queue

Outcome = Tuple[Optional[bool], List[str]]  # confirmed?, lines


def _show(value: Union[bool, int, Crash]) -> str:
    if isinstance(value, Crash):
        return f"crash: {value.summary()}"
    return str(value)


def _law(driver: Driver, law: Callable[[HashFn[Record], EqualFn[Record]], Bool],
         calls: List[Tuple[str, Callable[[], Union[bool, int, Crash]]]]) -> Outcome:
    """Confirmed when the C's callbacks, run through the driver, break @law (the
    invariant as model/invariants.py states it). A crash confirms nothing here:
    aborts are invariant 7's and 8's subject."""
    hash_fn, equal_fn = driver_callbacks(driver)
    try:
        confirmed: Optional[bool] = not law(hash_fn, equal_fn)
    except CallbackCrashed:
        confirmed = False
    return confirmed, [f"{call} -> {_show(value())}" for call, value in calls]


def reflexive(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a = events["a"]
    return _law(driver, lambda h, eq: inv.reflexive(eq, a),
                [("Driver.equal(a, a)", lambda: driver.equal(a, a))])


def symmetric(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a, b = events["a"], events["b"]
    return _law(driver, lambda h, eq: inv.symmetric(eq, a, b),
                [("Driver.equal(a, b)", lambda: driver.equal(a, b)),
                 ("Driver.equal(b, a)", lambda: driver.equal(b, a))])


def transitive(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a, b, c = events["a"], events["b"], events["c"]
    return _law(driver, lambda h, eq: inv.transitive(eq, a, b, c),
                [("Driver.equal(a, b)", lambda: driver.equal(a, b)),
                 ("Driver.equal(b, c)", lambda: driver.equal(b, c)),
                 ("Driver.equal(a, c)", lambda: driver.equal(a, c))])


def hash_consistent(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a, b = events["a"], events["b"]
    return _law(driver, lambda h, eq: inv.hash_consistent(h, eq, a, b),
                [("Driver.equal(a, b)", lambda: driver.equal(a, b)),
                 ("Driver.hash(a)", lambda: driver.hash(*a)),
                 ("Driver.hash(b)", lambda: driver.hash(*b))])


def _timeline(driver: Driver, operations: List[Operation]) -> Tuple[RunResult, List[str]]:
    run = driver.run(operations)
    lines = [f"Driver.run({operations!r}):"]
    for number, step in enumerate(run.steps, 1):
        what = step.operation.describe() if step.operation else "?"
        if step.crash is not None:
            lines.append(f"  #{number} {what}: C crashed: {step.crash.summary()}")
            continue
        emitted = ", ".join(e.event for e in step.emitted) or "nothing"
        lines.append(f"  #{number} {what}: emitted {emitted} (table {step.table})")
        lines += [f"     {f.kind}: {f.detail}" for f in step.findings]
    return run, lines


def removal_timeline(events: Dict[str, Record]) -> List[Operation]:
    """Insert both records as the queue function does, 1 ns apart, then let each timer
    fire on its own: r1's removal, then r2's."""
    return [Queue(*events["r1"]), Advance(1), Queue(*events["r2"]), AdvanceToNext(),
            AdvanceToNext()]


def removal(driver: Driver, events: Dict[str, Record]) -> Outcome:
    run, lines = _timeline(driver, removal_timeline(events))
    dangling = inv.no_dangling_entry(run)
    return bool(dangling) or run.crash is not None, lines


def stop_timeline(events: Dict[str, Record]) -> List[Operation]:
    """The table's record first, then the stop event; then the window's end."""
    return [Queue(*events["s"]), Queue(*events["e"]), AdvanceToNext()]


def stop_never_throttled(driver: Driver, events: Dict[str, Record]) -> Outcome:
    run, lines = _timeline(driver, stop_timeline(events))
    violations = inv.stop_not_delayed(inv.trace_from_steps(run.steps))
    return bool(violations), lines + [f"  invariant 4 (stop_not_delayed): {v}"
                                      for v in violations]


def replay_run(driver: Driver, invariant: int, operations: List[Operation],
               policy: Policy) -> Outcome:
    """A run invariant's counterexample (a timeline from the initial state), replayed:
    confirmed when the C breaks the invariant as model/invariants.py states it."""
    run, lines = _timeline(driver, operations)
    trace = inv.trace_from_steps(run.steps)
    violations = {
        3: lambda: inv.no_dangling_entry(run) + inv.table_empties_when_quiet(trace, policy),
        4: lambda: inv.stop_not_delayed(trace),
        5: lambda: inv.rate_respected(trace, policy),
        6: lambda: inv.unthrottled_immediate(trace, policy),
    }[invariant]()
    return bool(violations), lines + [f"  invariant {invariant}: {v}" for v in violations]


def totality(role: str) -> Callable[[Driver, Dict[str, Record]], Outcome]:
    def replay(driver: Driver, events: Dict[str, Record]) -> Outcome:
        result: Union[bool, int, Crash, None]
        if role == "hash":
            result, call = driver.hash(*events["a"]), "Driver.hash(a)"
        elif role == "equal":
            result = driver.equal(events["stored"], events["key"])
            call = "Driver.equal(stored, key)"
        else:
            result = driver.run([Queue(*events["event"])]).crash
            call = "Driver.run([Queue(event)])"
        # missing-member is the shim's abort; a NULL from qdict_get_try_str crashes later
        confirmed = isinstance(result, Crash) and inv.crash_invariant(result.kind) is not None
        shown = "no crash" if result is None else _show(result)
        return confirmed, [f"{call} -> {shown}"]
    return replay


REPLAYS: Dict[str, Callable[[Driver, Dict[str, Record]], Outcome]] = {
    "reflexive": reflexive, "symmetric": symmetric, "transitive": transitive,
    "hash consistent": hash_consistent, "removal": removal,
    "stop never throttled": stop_never_throttled,
    **{f"totality:{role}": totality(role) for role in ("hash", "equal", "queue")},
}


def replay(kind: str, driver: Driver, events: Dict[str, Record]) -> Outcome:
    return REPLAYS[kind](driver, events)
