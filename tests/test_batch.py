"""Batches of timelines (Driver.run_batch): the same results as one command at a time.

A batch runs many timelines per round trip, and starts a run over in the same
process instead of forking one when that is exactly a fresh process. These tests
hold it to what one command at a time on fresh forks gives: every case study, a
throttle that keeps state in a global or a static local, crashes, output, leaks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, FrozenSet, List, Optional, Sequence, Tuple

import pytest

from qthrottle.cases import EXPECTED, SCHEMA_DIR, case_path
from qthrottle.cases.seeded import SEEDED
from qthrottle.engines.bounds import quiet_interval
from qthrottle.engines.judge import CompareKeys, Judge, command, judge_run, judge_steps
from qthrottle.engines.sampling import Sampler
from qthrottle.engines.stateful import Subject
from qthrottle.harness.build import build
from qthrottle.harness.driver import Command, Driver, DriverError, KeysCheck, RunResult, StepResult
from qthrottle.harness.extract import extract
from qthrottle.harness.target import resolve
from qthrottle.model.timeline import Advance, Queue
from qthrottle.review.target_policy import open_subject

SECOND = 1_000_000_000
RTC = Queue("RTC_CHANGE", {"offset": 1, "qom-path": "/machine/rtc"})
STOP_BYPASS = case_path("stop-bypass").read_text()
QUEUE_START = "    conf = &monitor_qapi_event_conf[event];\n"


def one_at_a_time(driver: Driver, timelines: Sequence[Sequence[Command]],
                  settle: int) -> List[RunResult]:
    """What run_batch promises, one command at a time on fresh forks."""
    runs = []
    for timeline in timelines:
        driver.reset()
        run = RunResult()
        for item in timeline:
            step = driver.keys(item) if isinstance(item, KeysCheck) else driver.apply(item)
            run.steps.append(step)
            if step.crash:
                break
        last = next((s for s in reversed(run.steps) if s.keys is None), None)
        if settle and not run.crash and last is not None and (last.table or last.pending_timers):
            run.steps.append(driver.apply(Advance(settle)))
            run.settled = True
        runs.append(run)
    return runs


def seen(step: StepResult) -> Tuple[Any, ...]:
    """A step as the engine sees it: a crash by its kind (a batch's sanitizer reports are
    not symbolized, and name other addresses and process ids)."""
    return (step.operation, step.emitted, step.now, step.table, step.pending_timers,
            step.live_qobjects, step.next_deadline, [f.kind for f in step.findings],
            step.crash.kind if step.crash else step.output, step.keys)


def timelines_of(subject: Subject, count: int, seed: int) -> List[List[Command]]:
    sampler = Sampler(subject.events, subject.policy, 12, seed)
    return [[command(s) for s in sampler.timeline()] for _ in range(count)]


def assert_same(subject: Subject, timelines: List[List[Command]]) -> List[RunResult]:
    settle = quiet_interval(subject.policy.rates.values())
    batched = subject.driver.run_batch(timelines, settle)
    alone = one_at_a_time(subject.driver, timelines, settle)
    assert len(batched) == len(alone)
    for index, (a, b) in enumerate(zip(batched, alone)):
        assert ([seen(s) for s in a.steps], a.settled) == ([seen(s) for s in b.steps],
                                                            b.settled), timelines[index]
    return batched


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_batch_gives_what_each_timeline_gives_alone(name: str) -> None:
    with open_subject(resolve(name)) as subject:
        runs = assert_same(subject, timelines_of(subject, 150, seed=7))
    crashed = sum(1 for run in runs if run.crash)
    assert (crashed > 0) == (name in ("optional-key", "stop-irreflexive"))  # crashes cost one run


def variant(tmp_path: Path, name: str, *edits: Tuple[str, str]) -> Path:
    """stop-bypass with each (old, new) of @edits applied, as tmp_path/name/monitor.c."""
    text = STOP_BYPASS
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name / "monitor.c"
    path.parent.mkdir()
    path.write_text(text)
    return path


# The second RTC_CHANGE a process queues is sent twice: a run that started over in the
# process that ran the first would show it.
COUNT = QUEUE_START + ("    if (event == QAPI_EVENT_RTC_CHANGE && ++rtc_seen == 2) {\n"
                       "        monitor_qapi_event_emit(event, qdict);\n    }\n")
TABLE = "static GHashTable *monitor_qapi_event_state;\n"


@pytest.mark.parametrize("edits", [
    [(TABLE, TABLE + "static int rtc_seen;\n"), (QUEUE_START, COUNT)],
    [(QUEUE_START, "    static int rtc_seen;\n" + COUNT)]], ids=["global", "static-local"])
def test_state_a_throttle_keeps_is_never_carried_from_one_run_to_the_next(
        edits: List[Tuple[str, str]], tmp_path: Path) -> None:
    path = variant(tmp_path, "counting", *edits)
    with open_subject(resolve(str(path), SCHEMA_DIR)) as subject:
        runs = subject.driver.run_batch([[RTC]] * 5)
        assert [len(run.steps[0].emitted) for run in runs] == [1] * 5
        assert_same(subject, [[RTC, RTC, Advance(2 * SECOND)]] * 4)
        assert subject.driver.runs_in_place == 0  # each run in a fresh fork


def test_a_run_starts_over_in_place_when_that_is_a_fresh_process() -> None:
    with open_subject(resolve("stop-bypass")) as subject:
        runs = subject.driver.run_batch([[RTC, RTC, Advance(SECOND)]] * 10, settle=2 * SECOND)
        assert subject.driver.runs_in_place == 10
        assert all([s.emitted for s in run.steps] == [s.emitted for s in runs[0].steps]
                   for run in runs)
        assert all(run.settled and run.steps[-1].table == run.steps[-1].pending_timers == 0
                   for run in runs)  # ended quiet


def test_after_a_run_that_ends_in_a_fresh_process_the_rest_is_sent_a_few_at_a_time(
        ) -> None:
    """Every run left busy ends in a fresh process, and the rest of the batch is sent
    again: twice as many timelines as the last command ran, not the whole rest."""
    with open_subject(resolve("per-device")) as subject:
        process_sends: List[int] = []
        timelines = [[Queue("BLOCK_IO_ERROR", {"qom-path": "/machine/peripheral/disk0",
                                               "device": "disk0", "operation": "read",
                                               "action": "report"})]] * 10
        batch = subject.driver.start_batch([[command(s) for s in t] for t in timelines])
        send = batch.process.channel.send

        def counted(command: Any, marked: bool = False) -> Any:
            process_sends.append(len(command["timelines"]))
            return send(command, marked)

        batch.process.channel.send = counted  # type: ignore[method-assign]
        runs = subject.driver.finish_batch(batch)
        assert [len(run.steps) for run in runs] == [1] * 10
        assert subject.driver.runs_in_place == 0
        assert process_sends == [2] * 8 + [1]  # the first command (all 10) went before


def test_a_crash_in_a_batch_ends_its_run_only(tmp_path: Path) -> None:
    with open_subject(resolve("optional-key")) as subject:
        block = subject.catalog.events["BLOCK_IO_ERROR"]
        without = Queue(block.name, {"qom-path": "/q", "device": "d", "operation": "read",
                                     "action": "report", "reason": "r"})
        with_key = Queue(block.name, {**(without.data or {}), "node-name": "n0"})
        runs = subject.driver.run_batch([[with_key], [with_key, without, with_key], [with_key]])
    assert [len(r.steps) for r in runs] == [1, 2, 1]
    assert runs[1].crash is not None and runs[1].crash.kind == "missing-member"
    assert "node-name" in runs[1].steps[-1].output  # the shim's report, with its step
    assert runs[2].steps[0].emitted[0].t == 0 and runs[2].crash is None  # a fresh run


def test_what_the_c_prints_in_a_batch_stays_with_its_step(tmp_path: Path) -> None:
    path = variant(tmp_path, "chatty", (QUEUE_START, QUEUE_START + (
        "    if (event == QAPI_EVENT_RTC_CHANGE) {\n        printf(\"to stdout\\n\");\n"
        "        fprintf(stderr, \"to stderr\\n\");\n    }\n")))
    built = build(extract(path), resolve("stop-bypass").schema_events())
    with Driver(built.binary) as driver:
        runs = driver.run_batch([[RTC, Advance(SECOND), RTC]] * 3, settle=2 * SECOND)
    for run in runs:
        assert [s.output for s in run.steps] == ["to stdout\nto stderr\n", "",
                                                 "to stdout\nto stderr\n", ""]


def test_a_key_check_is_the_callbacks_called_directly() -> None:
    with open_subject(resolve("stop-irreflexive")) as subject:
        block = "BLOCK_IO_ERROR"
        data = {"qom-path": "/q", "device": "d", "operation": "read", "reason": "r"}
        stop, report = (block, {**data, "action": "stop"}), (block, {**data, "action": "report"})
        check = CompareKeys(stop, report).check()
        [run] = subject.driver.run_batch([[check]])
        keys = run.steps[0].keys
        assert keys is not None and keys == subject.driver.keys(check).keys
        assert keys.equal == ((subject.driver.equal(stop, stop), subject.driver.equal(stop, report)),
                              (subject.driver.equal(report, stop),
                               subject.driver.equal(report, report)))
        assert keys.hash == (subject.driver.hash(*stop), subject.driver.hash(*report))
        assert keys.equal[0][0] is False  # the irreflexive stop


def test_batches_in_flight_together_give_what_each_gives_alone() -> None:
    with open_subject(resolve("stop-irreflexive")) as subject:
        first, second = timelines_of(subject, 40, seed=1), timelines_of(subject, 40, seed=2)
        a = subject.driver.start_batch(first, 2 * SECOND)
        b = subject.driver.start_batch(second, 2 * SECOND)
        together = subject.driver.finish_batch(a), subject.driver.finish_batch(b)
        alone = subject.driver.run_batch(first, 2 * SECOND), subject.driver.run_batch(
            second, 2 * SECOND)
    for runs, expected in zip(together, alone):
        assert [[seen(s) for s in r.steps] for r in runs] == [[seen(s) for s in r.steps]
                                                            for r in expected]


def test_a_command_the_driver_refuses_in_a_batch_is_an_input_error_and_the_driver_goes_on(
        ) -> None:
    with open_subject(resolve("stop-bypass")) as subject:
        with pytest.raises(DriverError, match="unknown event"):
            subject.driver.run_batch([[RTC], [Queue("NO_SUCH_EVENT")], [RTC]])
        [run] = subject.driver.run_batch([[RTC]])
        assert run.steps[0].emitted[0].t == 0 and run.crash is None


def _judged_step_by_step(subject: Subject, ignored: FrozenSet[int], steps: List[Any],
                         run: RunResult) -> Tuple[Optional[int], int]:
    """A judge that asks every trace check after every step (judge_run asks only the
    checks the whole run breaks): the invariant broken and the steps judged."""
    judge = Judge(subject.policy, subject.catalog, ignored)
    violation = judge_steps(judge, steps, run)
    return (violation.invariant if violation else None), len(judge.records)


@pytest.mark.parametrize("name", [n for n, broken in EXPECTED.items() if broken] + list(SEEDED))
def test_judge_run_gives_the_verdict_of_every_check_after_every_step(name: str,
                                                                     tmp_path: Path) -> None:
    """On the bundled and seeded bugs' runs, each invariant set aside in turn as the
    engine sets aside what it found."""
    if name in SEEDED:
        path = tmp_path / f"{name}.c"
        path.write_text(SEEDED[name].source())
        target = resolve(str(path), SCHEMA_DIR)
    else:
        target = resolve(name)
    with open_subject(target) as subject:
        sampler = Sampler(subject.events, subject.policy, 12, 11)
        timelines = [sampler.timeline() for _ in range(150)]
        settle = quiet_interval(subject.policy.rates.values())
        runs = subject.driver.run_batch([[command(s) for s in t] for t in timelines], settle)
        broken = 0
        for timeline, run in zip(timelines, runs):
            steps = [*timeline, Advance(settle)] if run.settled else timeline
            ignored: FrozenSet[int] = frozenset()
            while True:
                violation, judge = judge_run(subject.policy, subject.catalog, ignored, steps,
                                             run)
                verdict = (violation.invariant if violation else None, len(judge.records))
                expected = _judged_step_by_step(subject, ignored, steps, run)
                assert verdict == expected or (violation is None and expected[0] is None), \
                    (timeline, ignored)
                if violation is None:
                    break
                broken += 1
                ignored |= {violation.invariant}
        assert broken > 0
