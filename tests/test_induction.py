"""Invariants 3-6 for every timeline (issue 17): k-induction over one key's throttle, built
from the extracted queue function and timer handler; each counterexample replayed on the C."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import z3
from run_checks import RUNS, assert_all_timelines, run  # tests/ is on the path

from qthrottle.cases import SCHEMA_DIR
from qthrottle.cases.seeded import SEEDED
from qthrottle.cli import main
from qthrottle.harness.target import Target, resolve
from qthrottle.model import invariants as inv
from qthrottle.model.timeline import Advance, Emission, Queue
from qthrottle.proofs import induction
from qthrottle.proofs.engine import (
    RUN_LAW,
    ProofReport,
    ProofResult,
    prove_target,
    replay_counterexamples,
)
from qthrottle.proofs.policy import derive_policy
from qthrottle.proofs.report import details, summary
from qthrottle.proofs.solve import FALSIFIED, PROVED, UNKNOWN
from qthrottle.proofs.space import EventSpace
from qthrottle.proofs.transition import CLOCK_LIMIT, STATE_LIBRARY

ROOT = Path(__file__).resolve().parent.parent
_reports: Dict[str, ProofReport] = {}


def proofs(target: Target) -> ProofReport:
    if target.name not in _reports:
        _reports[target.name] = prove_target(target)
    return _reports[target.name]


def assert_falsified_in_c(report: ProofReport, invariant: int) -> ProofResult:
    result = run(report, invariant)
    assert result.status == FALSIFIED, (invariant, result.status, result.reason)
    assert result.timeline and result.confirmed is True, result.replay
    assert any(line.startswith(f"  invariant {invariant}: ") for line in result.replay)
    return result


# ------------------------------------------------------- correct code: proved

@pytest.mark.parametrize("case", ["baseline", "stop-bypass"])
def test_correct_cases_hold_for_every_timeline(case: str) -> None:
    assert_all_timelines(proofs(resolve(case)))


def test_the_step_case_alone_fails_and_the_lemmas_it_needed_are_reported() -> None:
    report = proofs(resolve("stop-bypass"))
    assert report.runs is not None and report.runs.lemmas
    for number in RUNS:
        result = run(report, number)
        # A counterexample to induction from an unreachable state is no verdict.
        assert result.status == PROVED
        assert result.findings and result.findings[0].startswith(
            "the step case alone fails, from states no timeline reaches")
    text = "\n".join(summary(report) + details(report))
    assert "window lemmas, kept because they hold initially and every step keeps them" in text
    # One line per unreachable state, however many invariants it fails alone.
    said = re.findall(r"^    invariants? ([\d, ]+): the step case alone fails.*\((e\.g\. .*)\); "
                      r"with the lemmas (?:it holds|they hold)$", text, re.M)
    assert sorted(int(n) for names, _ in said for n in names.split(", ")) == list(RUNS)
    assert len({state for _, state in said}) == len(said)
    assert all(f"      - {lemma}" in text for lemma in report.runs.lemmas)


def test_without_lemmas_a_failing_step_case_is_unknown_never_falsified(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounded check finds nothing on stop-bypass; without the lemmas the step case
    keeps failing from unreachable states: UNKNOWN, with the state, never FALSIFIED."""
    monkeypatch.setattr(induction, "window_lemmas", lambda world, frame: [])
    target = resolve("stop-bypass")
    extraction, catalog = target.extract(), target.catalog()
    prover = induction.Prover(EventSpace(catalog, extraction), extraction,
                              derive_policy(extraction, catalog).policy, 10_000)
    results = prover.prove([5])
    assert results[5].status == UNKNOWN
    assert "the step case fails up to k=" in results[5].reason and not results[5].timeline


def test_prove_prints_all_timelines_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "baseline"]) == 0
    out = capsys.readouterr().out
    for number in RUNS:
        assert re.search(rf"^  {number} .* PROVED \(all timelines, k-induction k=\d\)$", out,
                         re.M)
    assert "decomposition theorem" in out and ": PROVED" in out
    # Vacuity: the base case's and the step case's assumptions, shown satisfiable.
    assert "not vacuous: each proof's assumptions shown satisfiable (z3):" in out
    assert re.search(r"^      k=1: a timeline of 1 step\(s\) of the key from the initial state; "
                     r"from the states the step case starts from \(the \d+ lemmas kept\), a "
                     r"queue, a timer and a clock step$", out, re.M)


def stop_bypass_prover() -> induction.Prover:
    target = resolve("stop-bypass")
    extraction, catalog = target.extract(), target.catalog()
    return induction.Prover(EventSpace(catalog, extraction), extraction,
                            derive_policy(extraction, catalog).policy, 10_000)


def test_a_base_case_without_timelines_is_vacuous_never_proved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No clock value is allowed: no timeline exists, so nothing could break an invariant."""
    monkeypatch.setattr(induction, "CLOCK_LIMIT", 0)
    results = stop_bypass_prover().prove(RUNS)
    for number in RUNS:
        assert results[number].status == UNKNOWN
        assert results[number].reason.startswith("vacuous: no timeline of 1 step(s)")


def test_a_step_case_that_admits_no_step_is_vacuous_never_proved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The step case's assumptions made contradictory: it would hold for no state."""
    facts = induction.Prover._facts

    def contradictory(self: induction.Prover, unrolling: induction.Unrolling,
                      depth: int) -> List[object]:
        extra = [z3.BoolVal(False)] if unrolling is self.inductive else []
        return [*facts(self, unrolling, depth), *extra]
    monkeypatch.setattr(induction.Prover, "_facts", contradictory)
    prover = stop_bypass_prover()
    results = prover.prove(RUNS)
    for number in RUNS:
        assert results[number].status == UNKNOWN
        assert results[number].reason == \
            "vacuous: the step case's assumptions admit no queue step"
    assert not prover.satisfiable


def test_no_throttled_event_leaves_3_to_6_unknown(tmp_path: Path) -> None:
    """The decomposition theorem is vacuous (no record reaches the table): the per-key
    proofs rest on it, so 3-6 are UNKNOWN, neither PROVED nor left out."""
    path = tmp_path / "monitor.c"
    path.write_text(resolve("stop-bypass").monitor_c.read_text().replace(
        "{ 1000 * SCALE_MS }", "{ 0 }"))
    report = prove_target(Target("no-rates", path, SCHEMA_DIR), replay_in_c=False)
    assert report.runs is not None and report.runs.decomposition.status == UNKNOWN
    for number in RUNS:
        result = run(report, number)
        assert result.status == UNKNOWN and "rests on the decomposition theorem" in \
            result.reason
    assert not report.not_applicable


# ---------------------------------------------- the case studies that break them

def test_per_device_delays_a_stop_in_two_steps_and_keeps_the_rest() -> None:
    report = proofs(resolve("per-device"))
    result = assert_falsified_in_c(report, 4)
    first, second = result.timeline
    assert isinstance(first, Queue) and isinstance(second, Queue)
    assert inv.is_stop_event(second.event, second.data)
    assert first.data and second.data and first.data["qom-path"] == second.data["qom-path"]
    for number in (3, 5, 6):
        assert run(report, number).status == PROVED


def test_without_replay_the_run_laws_are_still_replayed() -> None:
    """diff and explore prove without replay; a run law's counterexample rests on the
    per-key model, so it is replayed on the C all the same (a callback law's is not)."""
    report = prove_target(resolve("per-device"), replay_in_c=False)
    assert assert_falsified_in_c(report, 4).confirmed is True
    decision = next(r for r in report.results if r.invariant == 4 and r.law != RUN_LAW)
    assert decision.status == FALSIFIED and decision.confirmed is None


def test_stop_irreflexive_dangles_and_delays_a_stop() -> None:
    report = proofs(resolve("stop-irreflexive"))
    dangling = assert_falsified_in_c(report, 3)
    assert [type(op) for op in dangling.timeline] == [Queue, Advance]
    stop = dangling.timeline[0]
    assert isinstance(stop, Queue) and inv.is_stop_event(stop.event, stop.data)
    assert any("dangling-entry" in line for line in dangling.replay)
    delayed = assert_falsified_in_c(report, 4)
    assert len(delayed.timeline) == 2
    # Its equality is no equivalence: the per-key proof rests on nothing for 5 and 6.
    assert report.runs is not None and report.runs.decomposition.status == FALSIFIED
    assert set(report.runs.decomposition.events) == {"stored", "probe"}
    for number in (5, 6):
        assert number in report.not_applicable
        assert not [r for r in report.results if r.invariant == number]
        assert re.search(rf"^  {number} .* -  \(the per-key proof does not apply",
                         "\n".join(summary(report)), re.M)


# ------------------------------------------------- seeded bugs, one per obligation

# The seeded bugs (cases/seeded.py) the run proofs must falsify: the invariant the
# shortest violating timeline breaks first, and that timeline's length.
RUN_BUGS = {"no-rearm": (3, 4), "oldest-wins": (5, 4), "half-interval": (5, 5),
            "everything-throttled": (6, 2), "freed-in-table": (3, 2)}


@pytest.fixture(scope="module")
def bugs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Target]:
    folder = tmp_path_factory.mktemp("seeded")
    planted = {}
    for name in RUN_BUGS:
        path = folder / f"{name}.c"
        path.write_text(SEEDED[name].source())
        planted[name] = Target(name, path, SCHEMA_DIR)
    return planted


@pytest.mark.parametrize("name", list(RUN_BUGS))
def test_a_seeded_bug_is_falsified_and_replayed_on_the_c(name: str,
                                                         bugs: Dict[str, Target]) -> None:
    invariant, shortest = RUN_BUGS[name]
    assert invariant in SEEDED[name].breaks  # the stateful engine's expectation too
    result = assert_falsified_in_c(proofs(bugs[name]), invariant)
    assert len(result.timeline) == shortest, result.timeline


def test_after_a_dangling_entry_4_to_6_are_unknown(bugs: Dict[str, Target]) -> None:
    report = proofs(bugs["freed-in-table"])
    for number in (4, 5, 6):
        result = run(report, number)
        assert result.status == UNKNOWN and "a use-after-free follows" in result.reason


def test_the_newest_wins_counterexample_queues_three_different_events(
        bugs: Dict[str, Target]) -> None:
    result = run(proofs(bugs["oldest-wins"]), 5)
    queued = [op for op in result.timeline if isinstance(op, Queue)]
    assert len(queued) == 3 and len({repr(op.data) for op in queued}) == 3
    assert "newer event" in result.reason


def test_a_violation_the_c_does_not_show_is_unknown() -> None:
    """Never a false alarm: a run counterexample the C does not reproduce is UNKNOWN."""
    target = resolve("baseline")
    report = prove_target(target, replay_in_c=False)
    fake = ProofResult(5, RUN_LAW, FALSIFIED, "made up", replay_kind=RUN_LAW,
                       timeline=[Queue("STOP")], bound="a timeline of 1 step(s)")
    report.results.append(fake)
    replay_counterexamples(report, target.extract(), target.catalog())
    assert fake.status == UNKNOWN and "the C does not" in fake.reason


def test_a_handler_that_aborts_ends_the_model_unknown_with_its_timeline(tmp_path: Path) -> None:
    """README: a timer handler that aborts QEMU gives UNKNOWN, with the timeline there."""
    source = resolve("stop-bypass").monitor_c.read_text()
    expire = "    trace_qthrottle_event_expire(rec->event, rec->qdict);\n"
    assert expire in source
    path = tmp_path / "monitor.c"
    path.write_text(source.replace(expire, expire + "    g_assert(!rec->qdict);\n"))
    report = prove_target(Target("asserting-handler", path, SCHEMA_DIR), replay_in_c=False)
    for number in RUNS:
        result = run(report, number)
        assert result.status == UNKNOWN and "aborts QEMU" in result.reason
        assert [type(op) for op in result.timeline] == [Queue, Queue, Advance]


def test_the_bounds_the_readme_states() -> None:
    text = (ROOT / "README.md").read_text()
    assert "the clock stays below 2^62 ns" in text and CLOCK_LIMIT == 2**62
    assert f"bounded check\ngoes up to {induction.MAX_K} steps" in text


def test_a_callback_that_aborts_ends_the_timeline_there() -> None:
    """optional-key's hash aborts on an event without node-name (invariant 7): the runs
    it ends there keep 3-6."""
    report = proofs(resolve("optional-key"))
    assert report.status(7) == FALSIFIED
    for number in RUNS:
        assert run(report, number).status == PROVED


def test_the_trace_checkers_judge_by_key_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """One statement of each run invariant: the stateful engine's trace checkers call
    key_step, whatever it says."""
    policy = inv.Policy(rates={"RTC_CHANGE": 10}, keys={})
    trace = [inv.TraceStep(Queue("RTC_CHANGE", {"offset": 1}), 0, 0,
                           (Emission(0, "RTC_CHANGE", {"offset": 1}),), 1)]
    assert inv.rate_respected(trace, policy) == []

    def stricter(memory: inv.KeyMemory, step: inv.KeyStep, rate: object, quiet: object
                 ) -> Tuple[List[inv.KeyObligation], inv.KeyMemory]:
        return [inv.KeyObligation(5, "stricter", False)], memory
    monkeypatch.setattr(inv, "key_step", stricter)
    assert inv.rate_respected(trace, policy) == ["step 1 (t=0 ns, queue RTC_CHANGE): stricter"]


ALWAYS_INSERTS = """
static void monitor_qapi_event_queue_no_reenter(QAPIEvent event, QDict *qdict)
{
    MonitorQAPIEventConf *conf = &monitor_qapi_event_conf[event];
    QDict *data = qobject_to(QDict, qdict_get(qdict, "data"));
    MonitorQAPIEventState probe = { .event = event, .data = data };
    MonitorQAPIEventState *rec;

    QEMU_LOCK_GUARD(&monitor_lock);
    if (!conf->rate) {
        monitor_qapi_event_emit(event, qdict);
        return;
    }
    /* Looked up for a trace point only: every event gets a record of its own. */
    rec = g_hash_table_lookup(monitor_qapi_event_state, &probe);
    trace_qthrottle_event_delay(event, rec);
    monitor_qapi_event_emit(event, qdict);
    int64_t now = qemu_clock_get_ns(monitor_get_event_clock());
    rec = g_new(MonitorQAPIEventState, 1);
    rec->event = event;
    rec->data = qobject_ref(data);
    rec->qdict = NULL;
    rec->timer = timer_new_ns(monitor_get_event_clock(), monitor_qapi_event_handler, rec);
    g_hash_table_add(monitor_qapi_event_state, rec);
    timer_mod_ns(rec->timer, now + conf->rate);
}
"""

FORGETTING_HANDLER = """
static void forget_held(MonitorQAPIEventState *rec)
{
    rec->qdict = NULL;
}

static void monitor_qapi_event_handler(void *opaque)
{
    MonitorQAPIEventState *rec = opaque;

    QEMU_LOCK_GUARD(&monitor_lock);
    forget_held(rec);
    g_hash_table_remove(monitor_qapi_event_state, rec);
    timer_free(rec->timer);
    g_free(rec);
}
"""


def replaced(tmp_path: Path, function: str, text: str) -> Target:
    """stop-bypass with @function replaced by @text, as a monitor.c of its own."""
    source = resolve("stop-bypass").monitor_c.read_text()
    found = re.search(r"^static void " + function + r"\([^;{]*\)\n\{.*?^\}\n", source,
                      re.S | re.M)
    assert found is not None, function
    path = tmp_path / f"{function}.c"
    path.write_text(source[:found.start()] + text.strip() + "\n" + source[found.end():])
    return Target(path.name, path, SCHEMA_DIR)


def test_a_second_record_of_a_key_ends_the_model(tmp_path: Path) -> None:
    report = prove_target(replaced(tmp_path, "monitor_qapi_event_queue_no_reenter",
                                   ALWAYS_INSERTS), replay_in_c=False)
    assert run(report, 5).status == FALSIFIED  # the second event goes out at once
    result = run(report, 3)
    assert result.status == UNKNOWN and "a second record of the key" in result.reason
    assert [type(op) for op in result.timeline] == [Queue, Queue]


def test_a_helper_that_touches_a_record_is_unknown(tmp_path: Path) -> None:
    report = prove_target(replaced(tmp_path, "monitor_qapi_event_handler", FORGETTING_HANDLER),
                          replay_in_c=False)
    for number in RUNS:
        result = run(report, number)
        assert result.status == UNKNOWN
        assert "a throttle record used inside a helper function" in result.reason


# ------------------------------------------------ what the translation supports

LOOPING_HANDLER = """
static void monitor_qapi_event_handler(void *opaque)
{
    MonitorQAPIEventState *rec = opaque;
    int i;

    for (i = 0; i < 1; i++) {
        g_hash_table_remove(monitor_qapi_event_state, rec);
    }
    timer_free(rec->timer);
    g_free(rec);
}
"""


def test_a_loop_in_the_handler_is_unknown_at_its_line(tmp_path: Path) -> None:
    source = resolve("stop-bypass").monitor_c.read_text()
    found = re.search(r"^static void monitor_qapi_event_handler\(void \*opaque\)\n\{.*?^\}\n",
                      source, re.S | re.M)
    assert found is not None
    path = tmp_path / "monitor.c"
    path.write_text(source[:found.start()] + LOOPING_HANDLER.strip() + "\n"
                    + source[found.end():])
    line = path.read_text().splitlines().index("    for (i = 0; i < 1; i++) {") + 1
    report = prove_target(Target("looping-handler", path, SCHEMA_DIR), replay_in_c=False)
    for number in RUNS:
        result = run(report, number)
        assert result.status == UNKNOWN
        assert f"{path}:{line}: unsupported C construct: a for loop" in result.reason


def test_readme_shows_the_state_library_table() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("In the queue function and the timer handler"):]
    section = section[:section.index("\n\n", section.index("|"))]
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, re.M)
    assert dict(rows) == {name: model.meaning for name, model in STATE_LIBRARY.items()}
