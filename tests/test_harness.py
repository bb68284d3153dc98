"""The harness against the real C: every case study and Debian's QEMU 5.2, 7.2 and 10.0.x."""
from __future__ import annotations

import os
import re
import select
import signal
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from qthrottle.cases import EXPECTED
from qthrottle.cli import main
from qthrottle.harness.build import Build, BuildError, build
from qthrottle.harness.driver import Driver, DriverError
from qthrottle.harness.extract import extract
from qthrottle.harness.target import Target, resolve
from qthrottle.model.timeline import Advance, Emission, Queue

SECOND = 1_000_000_000
TARGETS = [*EXPECTED, "qemu-5.2", "qemu-7.2", "qemu-10.0"]


def _target(name: str, request: pytest.FixtureRequest) -> Target:
    if name == "qemu-5.2":
        return resolve(str(request.getfixturevalue("qemu_tree_52")))
    if name == "qemu-7.2":
        return resolve(str(request.getfixturevalue("qemu_tree_72")))
    if name == "qemu-10.0":
        return resolve(str(request.getfixturevalue("qemu_tree_100")))
    return resolve(name)


@pytest.fixture(scope="module")
def drivers() -> Iterator[Dict[str, Driver]]:
    opened: Dict[str, Driver] = {}
    yield opened
    for driver in opened.values():
        driver.close()


@pytest.fixture(params=TARGETS)
def driver(request: pytest.FixtureRequest, drivers: Dict[str, Driver]) -> Driver:
    name = request.param
    if name not in drivers:
        drivers[name] = Driver(_target(name, request).build().binary)
    return drivers[name]


def vserport(port: str, is_open: bool = True) -> Queue:
    return Queue("VSERPORT_CHANGE", {"id": port, "open": is_open})


def block_io_error(action: str, qom_path: str = "/machine/peripheral/disk0") -> Queue:
    return Queue("BLOCK_IO_ERROR", {"qom-path": qom_path, "device": "disk0",
                                    "operation": "write", "action": action,
                                    "reason": "No space left on device"})


def test_first_event_is_emitted_at_once(driver: Driver) -> None:
    step = driver.run([vserport("vs0")]).steps[0]
    assert step.emitted == (Emission(0, "VSERPORT_CHANGE", {"id": "vs0", "open": True}),)
    assert step.table == 1 and step.next_deadline == SECOND


def test_second_event_inside_the_interval_waits_for_the_deadline(driver: Driver) -> None:
    run = driver.run([vserport("vs0"), Advance(SECOND // 4), vserport("vs0", False),
                      Advance(SECOND)])
    assert [s.emitted for s in run.steps[1:3]] == [(), ()]
    assert run.steps[3].emitted == (Emission(SECOND, "VSERPORT_CHANGE",
                                             {"id": "vs0", "open": False}),)


def test_third_event_replaces_the_second(driver: Driver) -> None:
    run = driver.run([vserport("vs0"), vserport("vs0", False), Queue(
        "VSERPORT_CHANGE", {"id": "vs0", "open": True}), Advance(SECOND)])
    assert run.emissions == [Emission(0, "VSERPORT_CHANGE", {"id": "vs0", "open": True}),
                             Emission(SECOND, "VSERPORT_CHANGE", {"id": "vs0", "open": True})]
    # The replaced pending event was released: the second and third hold as much.
    assert run.steps[1].live_qobjects == run.steps[2].live_qobjects


def test_table_empties_after_two_quiet_intervals(driver: Driver) -> None:
    run = driver.run([vserport("vs0"), vserport("vs0", False), Advance(SECOND),
                      Advance(SECOND - 1), Advance(1)])
    assert [s.table for s in run.steps] == [1, 1, 1, 1, 0]
    last = run.steps[-1]
    assert (last.pending_timers, last.live_qobjects, last.findings) == (0, 0, ())


def test_ports_with_different_ids_are_independent(driver: Driver) -> None:
    run = driver.run([vserport("vs0"), vserport("vs1"), vserport("vs0", False)])
    assert [len(s.emitted) for s in run.steps] == [1, 1, 0]
    assert run.steps[1].table == 2


STOP_TWICE = [block_io_error("stop"), Advance(SECOND), block_io_error("stop")]


def test_rejected_2026_patch_leaves_a_dangling_entry_and_a_use_after_free() -> None:
    target = resolve("stop-irreflexive")
    extraction = target.extract()
    with Driver(target.build().binary) as driver:
        run = driver.run(STOP_TWICE)
    assert [f.kind for f in run.steps[1].findings] == ["dangling-entry"]
    crash = run.crash
    assert crash is not None and crash.kind == "heap-use-after-free"
    assert crash.operations == tuple(STOP_TWICE)
    # The report points into the case's equality callback.
    equal = extraction.roles["equal"]
    match = re.search(rf"in {equal} (\S+):(\d+)", crash.report)
    assert match and Path(match.group(1)) == extraction.path
    start = extraction.locations[equal]
    assert start < int(match.group(2)) < start + 40


@pytest.mark.parametrize("name", ["stop-bypass", "qemu-10.0"])
def test_fixed_versions_are_clean_on_the_same_trace(name: str,
                                                    request: pytest.FixtureRequest) -> None:
    with Driver(_target(name, request).build().binary) as driver:
        run = driver.run(STOP_TWICE)
    assert run.crash is None and run.findings == []
    assert [e.t for e in run.emissions] == [0, SECOND]


def test_crash_ends_one_run_only() -> None:
    with Driver(resolve("optional-key").build().binary) as driver:
        step = driver.run([block_io_error("report")]).steps[0]
        assert step.crash is not None and step.crash.kind == "missing-member"
        assert "no member 'node-name'" in step.crash.report
        after = driver.run([vserport("vs0")])
        assert after.crash is None and len(after.emissions) == 1


def test_a_reset_sent_ahead_starts_the_next_run_while_the_harness_works_on() -> None:
    """reset_ahead sends the reset at once (its reply is waiting before anyone asks for
    it); the next run, by reset() or by any command, is a fresh one. A run that served
    no command yet is not reset again."""
    with Driver(resolve("stop-bypass").build().binary) as driver:
        process = driver._steps
        assert process is not None
        driver.run([vserport("vs0")])
        driver.reset_ahead()
        ready, _, _ = select.select([process.channel._replies], [], [], 10)
        assert ready, "the reset was not sent ahead"
        driver.reset()
        assert driver.state().table == 0 and driver.state().now == 0
        first = driver.run([vserport("vs0"), Advance(SECOND // 2), vserport("vs0")])
        driver.reset_ahead()
        step = driver.apply(vserport("vs0"))  # collects the reset's reply first
        assert step.emitted == first.steps[0].emitted and step.table == 1
        sent = []
        send = process.channel.send
        process.channel.send = lambda *a, **k: sent.append(a) or send(*a, **k)  # type: ignore
        driver.reset_ahead()
        driver.reset()
        driver.reset()
        driver.reset_ahead()
        assert [command["op"] for command, *_ in sent] == ["reset"]


def test_a_driver_that_dies_after_a_reset_sent_ahead_is_replaced() -> None:
    with Driver(resolve("stop-bypass").build().binary) as driver:
        process = driver._steps
        assert process is not None
        driver.run([vserport("vs0")])
        driver.reset_ahead()
        os.killpg(process.channel.process.pid, signal.SIGKILL)
        process.channel.process.wait()
        driver.reset()
        after = driver.run([vserport("vs0")])
        assert after.crash is None and len(after.emissions) == 1


def _children(pid: int) -> List[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if stat.rsplit(")", 1)[1].split()[1] == str(pid):  # field 4, after the name
            found.append(int(entry.name))
    return sorted(found)


def _state(pid: int) -> Optional[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_the_fork_server_keeps_a_spare_child_and_replaces_one_that_died() -> None:
    """While a run is served, the next child is already forked and waits (a fork costs
    ~1 ms under the sanitizers); a spare killed meanwhile is replaced at the next run."""
    with Driver(resolve("stop-bypass").build().binary) as driver:
        process = driver._steps
        assert process is not None
        server = process.channel.process.pid
        driver.run([vserport("vs0")])
        serving, spare = _children(server)  # the spare was forked after the serving one
        os.kill(spare, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _state(spare) not in ("Z", None):
            time.sleep(0.01)  # dead (its socket closed), not yet reaped by the server
        for _ in range(3):
            after = driver.run([vserport("vs0")])
            assert after.crash is None and len(after.emissions) == 1
        # The server forks the next spare after it started the child that answered: wait
        # for it, as for the kill above.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                len(_children(server)) == 2 and spare not in _children(server)):
            time.sleep(0.01)
        assert len(_children(server)) == 2 and spare not in _children(server)


def test_unknown_event_is_a_usage_error() -> None:
    with Driver(resolve("baseline").build().binary) as driver, \
            pytest.raises(DriverError, match="unknown event"):
        driver.queue("NO_SUCH_EVENT", {})


def _mutated(tmp_path: Path, old: str, new: str, case: str = "stop-bypass") -> Build:
    source = resolve(case).monitor_c.read_text()
    assert old in source
    path = tmp_path / "monitor.c"
    path.write_text(source.replace(old, new, 1))
    return build(extract(path), resolve(case).schema_events())


def test_double_release_is_reported(tmp_path: Path) -> None:
    built = _mutated(tmp_path, "qobject_unref(rec->data);",
                     "qobject_unref(rec->data); qobject_unref(rec->data);")
    with Driver(built.binary) as driver:
        crash = driver.run([vserport("vs0"), Advance(SECOND)]).crash
    assert crash is not None and crash.kind == "double-release"


def test_reference_leak_is_reported(tmp_path: Path) -> None:
    built = _mutated(tmp_path, "qobject_unref(rec->data);", "")
    with Driver(built.binary) as driver:
        run = driver.run([vserport("vs0"), Advance(SECOND)])
    assert [f.kind for f in run.findings] == ["reference-leak"]


def test_hang_is_a_timeout_not_a_hang(tmp_path: Path) -> None:
    built = _mutated(tmp_path, "unsigned int hash = evstate->event * 255;",
                     "unsigned int hash = evstate->event * 255; for (;;) {}")
    with Driver(built.binary, timeout=1.0) as driver:
        crash = driver.run([vserport("vs0")]).crash
        assert crash is not None and crash.kind == "timeout"
        assert driver.run([Queue("STOP")]).crash is None


def test_build_failure_shows_the_offending_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    source = resolve("stop-bypass").monitor_c.read_text().replace(
        "qobject_unref(rec->data);", "qobject_unref(rec->no_such_member);", 1)
    (tmp_path / "monitor.c").write_text(source)
    with pytest.raises(BuildError, match="no_such_member"):
        build(extract(tmp_path / "monitor.c"))
    assert main(["extract", "--build", str(tmp_path / "monitor.c")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"monitor\.c:\d+: error: .*no_such_member", err)
    assert "| " in err and "rec->no_such_member" in err


def test_builds_are_cached() -> None:
    target = resolve("per-device")
    first = target.build()
    again = target.build()
    assert again.cached and again.binary == first.binary


BAD_INPUTS = {
    "empty": (b"", "file is empty"),
    "no-throttle": (b"int main(void) { return 0; }\n", "no QAPI event throttle found"),
    "binary": (bytes(range(256)) * 4, "not a C source file"),
}


@pytest.mark.parametrize("kind", [*BAD_INPUTS, "truncated", "missing"])
def test_bad_input_gives_one_clear_line_and_exit_2(kind: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "monitor.c"
    if kind == "truncated":
        text = resolve("stop-bypass").monitor_c.read_text()
        path.write_text(text[: text.index("qapi_event_throttle_equal(const") + 200])
        expected = "truncated"
    elif kind == "missing":
        path = tmp_path / "nowhere" / "monitor.c"
        expected = "no such file or directory"
    else:
        data, expected = BAD_INPUTS[kind]
        path.write_bytes(data)
    assert main(["extract", "--build", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("qthrottle: error: ") and expected in err
    assert "Traceback" not in err


def test_extract_prints_the_compiled_rates_and_the_derived_keys(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", "stop-irreflexive"]) == 0
    out = capsys.readouterr().out
    assert "as the compiler evaluates it), and each event's key, derived from the C:" in out
    assert re.search(r"\n  BLOCK_IO_ERROR +1 s +per qom-path\n", out)
    assert re.search(r"\n  WATCHDOG +1 s +per event name\n", out)
    assert "  assumed: BLOCK_IO_ERROR: the key is derived on the records equal to themselves" \
        in out


def test_signed_arithmetic_wraps_as_in_qemu(tmp_path: Path) -> None:
    """QEMU compiles with -fwrapv; so does the harness: signed overflow is no UB crash."""
    source = resolve("stop-bypass").monitor_c.read_text()
    seed = "unsigned int hash = evstate->event * 255;"
    assert seed in source
    (tmp_path / "monitor.c").write_text(source.replace(
        seed, "int hash = 2147483647;\n    hash += evstate->event + 1;"))
    built = build(extract(tmp_path / "monitor.c"), resolve("stop-bypass").schema_events())
    with Driver(built.binary) as driver:
        # INT_MAX + (event + 1) wraps to INT_MIN + event, returned as an unsigned int
        assert driver.hash("WATCHDOG", {"action": "reset"}) == \
            2**31 + built.events.index("WATCHDOG")
