"""Replay a proof's counterexample against the compiled C (harness Driver).

Each replay says what it ran, in a form that can be pasted into a test, what
the C did, and whether that confirms the proof's finding.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

from qthrottle.harness.driver import Crash, Driver, RunResult
from qthrottle.model import invariants as inv
from qthrottle.model.ghash import Record
from qthrottle.model.timeline import Advance, AdvanceToNext, Operation, Queue

Outcome = Tuple[Optional[bool], List[str]]  # confirmed?, lines


def _show(value: Union[bool, int, Crash]) -> str:
    if isinstance(value, Crash):
        return f"crash: {value.summary()}"
    return str(value)


def reflexive(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a = events["a"]
    same = driver.equal(a, a)
    return same is False, [f"Driver.equal(a, a) -> {_show(same)}"]


def symmetric(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a, b = events["a"], events["b"]
    ab, ba = driver.equal(a, b), driver.equal(b, a)
    confirmed = isinstance(ab, bool) and isinstance(ba, bool) and ab != ba
    return confirmed, [f"Driver.equal(a, b) -> {_show(ab)}", f"Driver.equal(b, a) -> {_show(ba)}"]


def transitive(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a, b, c = events["a"], events["b"], events["c"]
    ab, bc, ac = driver.equal(a, b), driver.equal(b, c), driver.equal(a, c)
    return ab is True and bc is True and ac is False, [
        f"Driver.equal(a, b) -> {_show(ab)}", f"Driver.equal(b, c) -> {_show(bc)}",
        f"Driver.equal(a, c) -> {_show(ac)}"]


def hash_consistent(driver: Driver, events: Dict[str, Record]) -> Outcome:
    a, b = events["a"], events["b"]
    same, ha, hb = driver.equal(a, b), driver.hash(*a), driver.hash(*b)
    confirmed = same is True and isinstance(ha, int) and isinstance(hb, int) and ha != hb
    return confirmed, [f"Driver.equal(a, b) -> {_show(same)}", f"Driver.hash(a) -> {_show(ha)}",
                       f"Driver.hash(b) -> {_show(hb)}"]


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


def removal(driver: Driver, events: Dict[str, Record]) -> Outcome:
    """Insert both records as the queue function does, 1 ns apart, then let each timer
    fire on its own: r1's removal, then r2's."""
    run, lines = _timeline(driver, [Queue(*events["r1"]), Advance(1), Queue(*events["r2"]),
                                    AdvanceToNext(), AdvanceToNext()])
    dangling = inv.no_dangling_entry(run)
    return bool(dangling) or run.crash is not None, lines


def stop_never_throttled(driver: Driver, events: Dict[str, Record]) -> Outcome:
    """The table's record first, then the stop event; then the window's end."""
    run, lines = _timeline(driver, [Queue(*events["s"]), Queue(*events["e"]), AdvanceToNext()])
    violations = inv.stop_not_delayed(inv.trace_from_steps(run.steps))
    return bool(violations), lines + [f"  invariant 4 (stop_not_delayed): {v}"
                                      for v in violations]


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
