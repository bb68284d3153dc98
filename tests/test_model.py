"""The reference model: logic layer, policy datatype, GLib table, throttle, invariants.

The throttle model is checked against the compiled C (baseline, stop-bypass and,
when their sources are available, QEMU 5.2, 7.2 and 10.0.x) step by step, and every
invariant is shown to fail on a case that breaks it.
"""
# Optional stays (not "X | None"): Python 3.9 compatibility, as in model/.

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from qthrottle.cases import SCHEMA_DIR
from qthrottle.engines import generate
from qthrottle.engines.bounds import quiet_interval
from qthrottle.engines.judge import trace_checks
from qthrottle.harness.driver import Driver, StepResult
from qthrottle.harness.target import Target, resolve
from qthrottle.model import invariants as inv
from qthrottle.model.ghash import GHashTableModel, Record, driver_callbacks, glib_hash, matches
from qthrottle.model.logic import And, Eq, Implies, Ite, Not, Or
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog, load_schema
from qthrottle.model.throttle import ThrottleModel, Window
from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, Operation, Queue, format_ns
from qthrottle.proofs.policy import derive_policy

SECOND = 1_000_000_000
CASES_QAPI = Path(__file__).resolve().parent.parent / "cases" / "qapi"

# The shared fixture of each real QEMU target (it skips with a reason, or fails under CI).
REAL_QEMU = {"qemu-5.2": "qemu_tree_52", "qemu-7.2": "qemu_tree_72",
             "qemu-10.0": "qemu_tree_100"}


def _target(name: str, request: pytest.FixtureRequest) -> Target:
    if name not in REAL_QEMU:
        return resolve(name)
    return resolve(str(request.getfixturevalue(REAL_QEMU[name])))


@pytest.fixture(scope="module")
def drivers() -> Iterator[dict[str, Driver]]:
    opened: dict[str, Driver] = {}
    yield opened
    for driver in opened.values():
        driver.close()


def _driver(name: str, request: pytest.FixtureRequest, drivers: dict[str, Driver]) -> Driver:
    if name not in drivers:
        drivers[name] = Driver(_target(name, request).build().binary)
    return drivers[name]


def _policy(name: str, request: pytest.FixtureRequest) -> Policy:
    """The policy the target's code implements (proofs/policy.py derives it)."""
    target = _target(name, request)
    return derive_policy(target.extract(), target.catalog()).policy


def _catalog(name: str, request: pytest.FixtureRequest) -> Catalog:
    qapi = _target(name, request).qapi_dir
    assert qapi is not None
    return load_schema(qapi)


def vserport(port: str, is_open: bool = True) -> Queue:
    return Queue("VSERPORT_CHANGE", {"id": port, "open": is_open})


def block_io_error(action: str, qom_path: str = "/machine/peripheral/disk0",
                   node_name: Optional[str] = "drive0") -> Queue:
    data: dict[str, Any] = {"qom-path": qom_path, "device": "disk0", "operation": "write",
                            "action": action, "reason": "No space left on device"}
    if node_name is not None:
        data["node-name"] = node_name
    return Queue("BLOCK_IO_ERROR", data)


def record(op: Queue) -> Record:
    return (op.event, op.data)


# ------------------------------------------------------------------- logic

def test_logic_on_plain_values() -> None:
    assert And() is True and And(True, 1, "x") is True and And(True, False) is False
    assert Or() is False and Or(False, 0, 1) is True
    assert Not(False) is True and Not(1) is False
    assert [Implies(a, b) for a in (False, True) for b in (False, True)] == [
        True, True, False, True]
    assert Ite(True, "a", "b") == "a" and Ite(0, "a", "b") == "b"
    assert Eq("stop", "stop") is True and Eq(1, 2) is False


def _valid(formula: Any) -> bool:
    solver = z3.Solver()
    solver.add(z3.Not(formula))
    return bool(solver.check() == z3.unsat)


def test_logic_builds_z3_terms() -> None:
    a, b = z3.Bools("a b")
    s = z3.String("s")
    x = z3.BitVec("x", 32)
    for term in (And(a, True), Or(False, b), Not(a), Implies(a, b), Eq(s, "stop"),
                 Eq("stop", s)):
        assert isinstance(term, z3.BoolRef)
    assert _valid(Implies(And(a, b), a))
    assert not _valid(Implies(Or(a, b), a))
    assert _valid(Eq(Ite(Eq(s, "stop"), 1, 2) == 1, Eq(s, "stop")))
    # GLib's stored hash on bit-vectors: 0 and 1 become 2, nothing else changes.
    assert _valid(Implies(And(x != 0, x != 1), Eq(glib_hash(x), x)))
    assert _valid(Eq(glib_hash(z3.BitVecVal(1, 32)), 2))


# ------------------------------------------------------------------ policy

def test_policy_key() -> None:
    policy = Policy(rates={"VSERPORT_CHANGE": SECOND, "RTC_CHANGE": SECOND},
                    keys={"VSERPORT_CHANGE": ("id",)})
    assert policy.key("VSERPORT_CHANGE", {"id": "a", "open": True}) == ("VSERPORT_CHANGE", "a")
    assert policy.key("RTC_CHANGE", {"offset": 3}) == ("RTC_CHANGE",)
    assert policy.key("VSERPORT_CHANGE", {}) == ("VSERPORT_CHANGE", None)
    assert not policy.throttled("STOP") and policy.rate("STOP") == 0


# ------------------------------------------------------------ GLib table

def _qom_hash(r: Record) -> int:
    return sum(map(ord, str((r[1] or {}).get("qom-path", ""))))


def _per_device_equal(stored: Record, key: Record) -> bool:
    return stored[0] == key[0] and (stored[1] or {}).get("qom-path") == (key[1] or {}).get(
        "qom-path")


def _irreflexive_equal(stored: Record, key: Record) -> bool:
    """The withdrawn fix: FALSE whenever the first (stored) argument is a stop event."""
    return not inv.is_stop_event(*stored) and _per_device_equal(stored, key)


def test_ghash_add_lookup_remove() -> None:
    table: GHashTableModel[Record] = GHashTableModel(_qom_hash, _per_device_equal)
    first, second = record(block_io_error("report")), record(block_io_error("ignore"))
    other = record(block_io_error("report", qom_path="/other"))
    assert table.add(first) is None and table.add(other) is None
    assert table.lookup(second) is first
    assert table.add(second) is first  # replaced in place, the old record orphaned
    assert table.records == (second, other) and table.size == 2
    assert table.remove(first) is second and table.records == (other,)
    assert table.remove(first) is None


def test_ghash_stores_hash_0_and_1_as_2() -> None:
    hashes = {"a": 0, "b": 2}
    table: GHashTableModel[str] = GHashTableModel(hashes.__getitem__, lambda s, k: True)
    table.add("a")
    assert table.lookup("b") == "a"  # the probe compares 2 with 0 stored as 2


def test_ghash_irreflexive_equality_breaks_removal() -> None:
    stop, report = record(block_io_error("stop")), record(block_io_error("report"))
    table: GHashTableModel[Record] = GHashTableModel(_qom_hash, _irreflexive_equal)
    table.add(stop)
    assert table.lookup(stop) is None and table.remove(stop) is None  # the C frees it anyway
    assert table.size == 1
    assert inv.removal_exact(_qom_hash, _irreflexive_equal, stop, []) is False
    assert inv.removal_exact(_qom_hash, _irreflexive_equal, report, []) is True
    # Asymmetric: a report is stored next to a stop of the same device (its lookup
    # called equal(stop, report): FALSE), and then the stop's removal hits the report.
    assert table.add(report) is None
    assert inv.inserted_under_glib_discipline(_qom_hash, _irreflexive_equal, [stop, report])
    assert table.remove(stop) is report and table.records == (stop,)
    assert inv.removal_exact(_qom_hash, _irreflexive_equal, stop, [report]) is False
    # A report's removal is exact here: equal(stop, report) never holds.
    assert inv.removal_exact(_qom_hash, _irreflexive_equal, report, [stop]) is True
    # And a stop looked up while a report is stored matches it: delayed (invariant 4).
    is_stop = inv.is_stop_event(*stop)
    found = matches(_qom_hash, _irreflexive_equal, report, stop)
    assert inv.stop_exempt(is_stop, True, found) is False


def test_ghash_with_the_c_callbacks(request: pytest.FixtureRequest,
                                    drivers: dict[str, Driver]) -> None:
    stop, report = record(block_io_error("stop")), record(block_io_error("report"))
    h, eq = driver_callbacks(_driver("stop-irreflexive", request, drivers))
    assert inv.reflexive(eq, report) is True and inv.reflexive(eq, stop) is False
    assert inv.symmetric(eq, report, stop) is False  # equal(report, stop) but not back
    assert inv.hash_consistent(h, eq, report, stop) is True
    assert inv.removal_exact(h, eq, stop, []) is False
    h, eq = driver_callbacks(_driver("stop-bypass", request, drivers))
    other = record(block_io_error("report", qom_path="/other"))
    assert inv.equality_laws(eq, stop, report, other) is True
    assert inv.removal_exact(h, eq, stop, [other]) is True


def test_invariants_on_z3_terms() -> None:
    def bio(tag: str) -> tuple[Any, dict[str, Any]]:
        return (z3.String(f"event_{tag}"),
                {"qom-path": z3.String(f"qom_{tag}"), "action": z3.String(f"action_{tag}")})

    def per_device(a: Any, b: Any) -> Any:
        return And(Eq(a[0], b[0]), Eq(a[1]["qom-path"], b[1]["qom-path"]))

    def irreflexive(a: Any, b: Any) -> Any:
        return And(Not(inv.is_stop_event(*a)), per_device(a, b))

    def qom_length(r: Any) -> Any:
        return z3.Length(r[1]["qom-path"])

    a, b, c = bio("a"), bio("b"), bio("c")
    assert _valid(inv.equality_laws(per_device, a, b, c))
    assert _valid(inv.hash_consistent(qom_length, per_device, a, b))
    solver = z3.Solver()
    solver.add(Not(inv.reflexive(irreflexive, a)))
    assert solver.check() == z3.sat
    witness = solver.model()
    assert witness.eval(a[1]["action"]).as_string() == "stop"
    assert witness.eval(a[0]).as_string() == "BLOCK_IO_ERROR"
    assert not _valid(inv.removal_exact(qom_length, irreflexive, a, [b]))
    is_stop, throttled, found = z3.Bools("is_stop throttled found")
    assert not _valid(inv.stop_exempt(is_stop, throttled, found))
    assert _valid(inv.stop_exempt(is_stop, And(throttled, Not(is_stop)), found))


# ------------------------------------------------------------ model vs C

def _assert_same(steps: list[StepResult], model: ThrottleModel, ops: list[Operation]) -> None:
    for index, (op, c_step) in enumerate(zip(ops, steps)):
        assert c_step.crash is None, c_step.crash.summary()
        emitted = model.apply(op)
        expected = (emitted, model.now, model.table_size, model.next_deadline)
        actual = (list(c_step.emitted), c_step.now, c_step.table, c_step.next_deadline)
        assert actual == expected, f"step {index + 1}: {op.describe()}"
    assert len(steps) == len(ops)


BURST = [vserport("vs0", True),              # quiet: at once, window until 1 s
         Advance(SECOND // 4), vserport("vs0", False),  # held back
         Advance(SECOND // 4), vserport("vs0", True),   # replaces it
         Advance(SECOND // 2),               # 1 s: the newest goes out, window until 2 s
         Advance(SECOND)]                    # 2 s: quiet again, window closed
INDEPENDENT = [vserport("vs0"), vserport("vs1"), vserport("vs0", False),
               vserport("vs1", False), AdvanceToNext(), AdvanceToNext(), AdvanceToNext()]
STOP_AMID_REPORTS = [block_io_error("report"), Advance(SECOND // 2),
                     block_io_error("report", node_name="drive1"), block_io_error("stop"),
                     Queue("STOP"), Advance(SECOND // 2), Advance(SECOND // 2),
                     block_io_error("report"), Advance(3 * SECOND)]
TIMELINES = {"burst": BURST, "independent": INDEPENDENT, "stop-amid-reports": STOP_AMID_REPORTS}
MATCHING = ["baseline", "stop-bypass", "qemu-5.2", "qemu-7.2", "qemu-10.0"]


@pytest.mark.parametrize("timeline", list(TIMELINES))
@pytest.mark.parametrize("name", MATCHING)
def test_model_predicts_the_c(name: str, timeline: str, request: pytest.FixtureRequest,
                              drivers: dict[str, Driver]) -> None:
    ops = TIMELINES[timeline]
    run = _driver(name, request, drivers).run(ops)
    policy = _policy(name, request)
    model = ThrottleModel(policy, _catalog(name, request))
    _assert_same(run.steps, model, ops)
    c_trace = inv.trace_from_steps(run.steps)
    model_trace = ThrottleModel(policy).run(ops)
    assert c_trace == model_trace
    for trace in (c_trace, model_trace):
        assert inv.stop_not_delayed(trace) == []
        assert inv.rate_respected(trace, policy) == []
        assert inv.unthrottled_immediate(trace, policy) == []
        assert inv.table_empties_when_quiet(trace, policy) == []
    assert inv.no_dangling_entry(run) == [] and inv.no_memory_error(run) == []


@settings(max_examples=200, derandomize=True)
@given(st.data())
def test_every_trace_check_holds_on_the_reference_models_traces(data: st.DataObject) -> None:
    """The stateful engine passes a run whose every step is the model's at once
    (engines/judge.py: clean): the trace checks would find nothing on it. Policies:
    any rate (0 to 2 s) and key members of the bundled schema's events."""
    catalog = load_schema(SCHEMA_DIR)
    events = list(catalog.events.values())
    rates = {e.name: data.draw(st.sampled_from([0, 1, SECOND // 2, SECOND, 2 * SECOND]))
             for e in events}
    keys = {e.name: tuple(data.draw(st.lists(st.sampled_from([m.name for m in e.members]),
                                             unique=True, max_size=2)) if e.members else [])
            for e in events}
    policy = Policy(rates, keys)
    timeline = data.draw(generate.timelines(events, rates.values(), 16))
    settle = quiet_interval(rates.values())
    trace = ThrottleModel(policy, catalog).run([*timeline, Advance(settle)])
    for number, check in trace_checks(policy):
        assert check(trace) == [], number


def test_burst_semantics() -> None:
    policy = Policy(rates={"VSERPORT_CHANGE": SECOND}, keys={"VSERPORT_CHANGE": ("id",)})
    trace = ThrottleModel(policy).run(BURST)
    assert [s.emitted for s in trace] == [
        (Emission(0, "VSERPORT_CHANGE", {"id": "vs0", "open": True}),), (), (), (), (),
        (Emission(SECOND, "VSERPORT_CHANGE", {"id": "vs0", "open": True}),), ()]
    assert [s.table for s in trace] == [1, 1, 1, 1, 1, 1, 0]
    trace = ThrottleModel(policy).run(INDEPENDENT)
    assert [len(s.emitted) for s in trace] == [1, 1, 0, 0, 2, 0, 0]
    assert [e.data for e in trace[4].emitted] == [{"id": "vs0", "open": False},
                                                  {"id": "vs1", "open": False}]
    assert [s.after for s in trace[4:]] == [SECOND, 2 * SECOND, 2 * SECOND]


UNIT_NS = {"s": SECOND, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _parse_time(text: str) -> int:
    """format_ns's output read back: terms such as '1.5 s', joined by ' + ' or ' - '."""
    words = text.split(" ")
    total, sign = 0, 1
    for index in range(0, len(words), 3):
        value, unit = words[index], words[index + 1]
        whole, _, decimals = value.partition(".")
        scale = UNIT_NS[unit]
        total += sign * (int(whole) * scale + int(decimals.ljust(3, "0")) * scale // 1000)
        sign = -1 if index + 2 < len(words) and words[index + 2] == "-" else 1
    return total


def test_format_ns_is_readable_and_exact_at_a_windows_end() -> None:
    assert [format_ns(n) for n in (0, 12, 1_500, 250_000_000, 1_500_000_000)] == [
        "0 ns", "12 ns", "1.5 us", "250 ms", "1.5 s"]
    assert [format_ns(SECOND + d) for d in (-1, 0, 1)] == ["1 s - 1 ns", "1 s", "1 s + 1 ns"]


@given(st.integers(min_value=0, max_value=10**13))
def test_format_ns_reads_back_as_the_same_time(ns: int) -> None:
    assert _parse_time(format_ns(ns)) == ns


def test_model_repr_is_python() -> None:
    policy = Policy(rates={"VSERPORT_CHANGE": SECOND}, keys={"VSERPORT_CHANGE": ("id",)})
    model = ThrottleModel(policy)
    model.run(BURST[:3])
    copy = eval(repr(model), {"ThrottleModel": ThrottleModel, "Policy": Policy,
                              "Window": Window, "Queue": Queue})
    assert repr(copy) == repr(model)
    assert copy.run(BURST[3:]) == model.run(BURST[3:])


def test_model_rejects_events_outside_the_schema() -> None:
    model = ThrottleModel(Policy(rates={}, keys={}), load_schema(CASES_QAPI))
    with pytest.raises(KeyError, match="VSERPORT_CHANGE"):
        model.apply(Queue("VSERPORT_CHANGES"))


# --------------------------------------------- each invariant can fail

def test_per_device_delays_a_stop_event(request: pytest.FixtureRequest,
                                        drivers: dict[str, Driver]) -> None:
    stop = block_io_error("stop")
    ops: list[Operation] = [block_io_error("report"), stop, Advance(SECOND)]
    run = _driver("per-device", request, drivers).run(ops)
    violations = inv.stop_not_delayed(inv.trace_from_steps(run.steps))
    assert len(violations) == 1 and violations[0].startswith("step 2 ")
    assert "delayed to t=1 s" in violations[0]
    model_trace = ThrottleModel(_policy("per-device", request)).run(ops)
    assert inv.stop_not_delayed(model_trace) == []
    assert model_trace[1].emitted == (_emit(stop, 0),)


def test_stop_irreflexive_dangles_then_crashes(request: pytest.FixtureRequest,
                                               drivers: dict[str, Driver]) -> None:
    driver = _driver("stop-irreflexive", request, drivers)
    run = driver.run([block_io_error("stop"), Advance(SECOND)])
    assert run.crash is None
    assert inv.no_dangling_entry(run) and "dangling entry" in inv.no_dangling_entry(run)[0]
    policy = _policy("stop-irreflexive", request)
    quiet = inv.table_empties_when_quiet(inv.trace_from_steps(
        driver.run([block_io_error("stop"), Advance(2 * SECOND)]).steps), policy)
    assert quiet and quiet[0].startswith("step 2 ")
    run = driver.run([block_io_error("stop"), Advance(SECOND), block_io_error("report")])
    assert run.crash is not None and inv.crash_invariant(run.crash.kind) == 8
    assert "use-after-free" in inv.no_memory_error(run)[0]


def test_optional_key_aborts_in_the_c_on_an_event_without_it(
        request: pytest.FixtureRequest, drivers: dict[str, Driver]) -> None:
    run = _driver("optional-key", request, drivers).run([block_io_error("report", node_name=None)])
    assert run.crash is not None and inv.crash_invariant(run.crash.kind) == 7
    assert inv.no_memory_error(run) == []


def failure(event: str, kind: str, member: Optional[str] = "node-name",
            getter: Optional[str] = "str") -> inv.Failure:
    return inv.Failure(event, kind, member, getter, "call(...)")


def test_totality_judges_each_failure_against_the_schema() -> None:
    catalog = load_schema(CASES_QAPI)
    # A read whose presence the code does not establish: fine for a mandatory member,
    # a violation for an optional one.
    assert inv.total([failure("QUORUM_REPORT_BAD", "missing")], catalog) == []
    optional = inv.total([failure("BLOCK_IO_ERROR", "missing")], catalog)
    assert [str(v) for v in optional] == [
        f"BLOCK_IO_ERROR: reads 'node-name', which is optional ('*node-name' at "
        f"{catalog.event('BLOCK_IO_ERROR').source}), without testing its presence on that "
        "path: an event without it makes the callback abort"]
    # Read as the type the schema gives it, or not.
    assert inv.total([failure("QUORUM_REPORT_BAD", "mistyped")], catalog) == []
    wrong = inv.total([failure("QUORUM_REPORT_BAD", "mistyped", getter="int")], catalog)
    assert "reads 'node-name' as int" in str(wrong[0]) and "types it str" in str(wrong[0])
    # An abort reached is a violation, whatever the event.
    reached = inv.total([failure("WATCHDOG", "abort", None, None)], catalog)
    assert str(reached[0]) == "WATCHDOG: reaches `call(...)`, which aborts"
    unknown = inv.total([failure("NO_SUCH_EVENT", "missing", "x"),
                         failure("VSERPORT_CHANGE", "missing", "idd")], catalog)
    assert [(v.event, v.failure.member) for v in unknown] == [("NO_SUCH_EVENT", "x"),
                                                              ("VSERPORT_CHANGE", "idd")]
    assert "no such event" in str(unknown[0]) and "not a member" in str(unknown[1])


def test_callback_laws_can_fail() -> None:
    def same_parity(a: int, b: int) -> bool:
        return a % 2 == b % 2

    def close(a: int, b: int) -> bool:
        return abs(a - b) <= 1

    assert inv.hash_consistent(lambda x: x, same_parity, 1, 3) is False
    assert inv.hash_consistent(lambda x: x % 2, same_parity, 1, 3) is True
    assert inv.transitive(close, 0, 1, 2) is False
    assert inv.equality_laws(close, 0, 1, 2) is False
    assert inv.equality_laws(same_parity, 0, 2, 4) is True


VSERPORT_POLICY = Policy(rates={"VSERPORT_CHANGE": SECOND}, keys={"VSERPORT_CHANGE": ("id",)})


def _emit(op: Queue, t: int) -> Emission:
    return Emission(t, op.event, op.data)


def test_rate_respected_can_fail() -> None:
    first, second, third = vserport("vs0"), vserport("vs0", False), vserport("vs0", True)
    half = SECOND // 2
    too_soon = [inv.TraceStep(first, 0, 0, (_emit(first, 0),)),
                inv.TraceStep(Advance(half), 0, half),
                inv.TraceStep(second, half, half, (_emit(second, half),))]
    assert [v.split(":")[0] for v in inv.rate_respected(too_soon, VSERPORT_POLICY)] == [
        "step 3 (t=500 ms, queue VSERPORT_CHANGE)"]
    not_at_once = [inv.TraceStep(first, 0, 0), inv.TraceStep(Advance(half), 0, half,
                                                             (_emit(first, half),))]
    assert "quiet" in inv.rate_respected(not_at_once, VSERPORT_POLICY)[0]
    oldest_wins = [inv.TraceStep(first, 0, 0, (_emit(first, 0),)),
                   inv.TraceStep(second, 0, 0), inv.TraceStep(third, 0, 0),
                   inv.TraceStep(Advance(SECOND), 0, SECOND, (_emit(second, SECOND),))]
    assert any("newer event" in v for v in inv.rate_respected(oldest_wins, VSERPORT_POLICY))
    dropped = [inv.TraceStep(first, 0, 0, (_emit(first, 0),)), inv.TraceStep(second, 0, 0),
               inv.TraceStep(Advance(2 * SECOND), 0, 2 * SECOND)]
    assert "never emitted" in inv.rate_respected(dropped, VSERPORT_POLICY)[0]
    late = dropped[:2] + [inv.TraceStep(Advance(2 * SECOND), 0, 2 * SECOND,
                                        (_emit(second, 2 * SECOND),))]
    assert "more than 1 s" in inv.rate_respected(late, VSERPORT_POLICY)[0]


def test_unthrottled_immediate_can_fail() -> None:
    stop, resume = Queue("STOP"), Queue("RESUME")
    swallowed = [inv.TraceStep(stop, 0, 0)]
    assert inv.unthrottled_immediate(swallowed, VSERPORT_POLICY)[0].startswith("step 1 ")
    reordered = [inv.TraceStep(stop, 0, 0, (_emit(resume, 0),)),
                 inv.TraceStep(resume, 0, 0, (_emit(stop, 0),))]
    assert inv.unthrottled_immediate(reordered, VSERPORT_POLICY)
    in_order = [inv.TraceStep(stop, 0, 0, (_emit(stop, 0),)),
                inv.TraceStep(resume, 0, 0, (_emit(resume, 0),))]
    assert inv.unthrottled_immediate(in_order, VSERPORT_POLICY) == []


def test_stop_not_delayed_counts_duplicates() -> None:
    stop = block_io_error("stop")
    twice = [inv.TraceStep(stop, 0, 0, (_emit(stop, 0),)),
             inv.TraceStep(Advance(SECOND), 0, SECOND, (_emit(stop, SECOND),))]
    assert "emitted 2 times" in inv.stop_not_delayed(twice)[0]
    dropped = [inv.TraceStep(stop, 0, 0)]
    assert "not emitted by the end of the timeline" in inv.stop_not_delayed(dropped)[0]


def test_every_invariant_has_a_name() -> None:
    assert sorted(inv.INVARIANTS) == list(range(1, 9))
