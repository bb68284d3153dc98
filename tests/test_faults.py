"""Fault injection (issue 13): a tool error is never a verdict, faults heal, and no process
outlives qthrottle.

One section per fault of the issue's list, each tried as a user meets it: the exit code,
the one `qthrottle: error:` line (never a traceback), that a later run heals where a
damaged cache was the fault, and that no process is left. Every test uses a cache
directory of its own, so that what it breaks is nobody else's.
"""
from __future__ import annotations

import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import strategies as st

from qthrottle import cli
from qthrottle.cases import SCHEMA_DIR
from qthrottle.core import Interrupted, check_interrupted, signals_stop_the_command
from qthrottle.engines import sampling, stateful
from qthrottle.engines.bounds import PROFILES, Profile
from qthrottle.engines.stateful import Subject, search
from qthrottle.harness import protocol
from qthrottle.harness.build import build
from qthrottle.harness.driver import Driver, DriverError
from qthrottle.harness.extract import extract
from qthrottle.harness.mutation import mutants
from qthrottle.harness.protocol import PROTOCOL_VERSION
from qthrottle.harness.target import resolve
from qthrottle.model import invariants as inv
from qthrottle.model.policy import Policy
from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, Operation, Queue
from qthrottle.review import mutate as mutate_module
from qthrottle.review import mutation_report as mr
from qthrottle.review.explain import NO_CONDITION
from qthrottle.review.target_policy import target_policy, verify_target

ROOT = Path(__file__).resolve().parent.parent
SECOND = 1_000_000_000
SEED = 20261125
SMALL = Profile("quick", runs=40, steps=8)  # in place of quick: these runs show a fault
RTC = Queue("RTC_CHANGE", {"offset": 1, "qom-path": "/machine/rtc"})
STOP_BYPASS = resolve("stop-bypass").monitor_c.read_text()
QUEUE_START = "    conf = &monitor_qapi_event_conf[event];\n"
HANDLER_FREE = "        g_free(rec);\n"
TIMER_FREE = "        timer_free(rec->timer);\n"
SIGNAL_GRACE_S = 2.0  # the bound: a signal stops any command within 2 s


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of the test's own (QTHROTTLE_CACHE_DIR), for in-process runs and
    the commands the test starts."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def small_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROFILES, "quick", SMALL)


def variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """stop-bypass with @old replaced by @new, as tmp_path/name/monitor.c."""
    assert STOP_BYPASS.count(old) == 1, old
    path = tmp_path / name / "monitor.c"
    path.parent.mkdir()
    path.write_text(STOP_BYPASS.replace(old, new))
    return path


def on_rtc_change(code: str) -> str:
    """The start of the queue function, with @code run first for each RTC_CHANGE."""
    return QUEUE_START + f"    if (event == QAPI_EVENT_RTC_CHANGE) {{\n        {code}\n    }}\n"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, text: str) -> None:
    """The error is one `qthrottle: error:` line (details indented below it), no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("qthrottle: error: ")]
    assert len(errors) == 1 and text in errors[0], err
    assert "Traceback" not in err and "internal error" not in err


# ------------------------------------------------------------- processes

@dataclass(frozen=True)
class Process:
    pid: int
    start: str  # its start time (field 22 of /proc/PID/stat): tells a reused pid apart


def _stat(pid: int) -> Optional[List[str]]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the state on


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def descendants(root: int) -> List[Process]:
    """Every living process below @root."""
    children: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: List[Process] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z":
            found.append(Process(pid, fields[19]))
            todo += children.get(pid, [])
    return found


def alive(processes: List[Process], within_s: float = SIGNAL_GRACE_S) -> List[Process]:
    """Those of @processes still running after @within_s (a zombie has ended)."""
    deadline = time.monotonic() + within_s
    while True:
        left = [p for p in processes
                if (fields := _stat(p.pid)) is not None and fields[19] == p.start
                and fields[0] != "Z"]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def start_command(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qthrottle", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition: str, probe: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.1)


def busy_driver(command: subprocess.Popen[str]) -> bool:
    """A run of the driver below @command is on the CPU (stuck in the code under test)."""
    runs = [p for p in descendants(command.pid) if (fields := _stat(p.pid)) is not None
            and fields[0] == "R" and "driver" in cmdline(p.pid)]
    return bool(runs)


def stop(command: subprocess.Popen[str], signum: int) -> Tuple[int, str, str, float, List[Process]]:
    """Send @signum; the exit code, output, seconds it took, and what was left alive."""
    below = descendants(command.pid)
    started = time.monotonic()
    command.send_signal(signum)
    out, err = command.communicate(timeout=60)
    took = time.monotonic() - started
    return command.returncode, out, err, took, alive(below)


# ---------------------------------------------------------------------------------------
# 1. Tool failures exit 2 with one line, never 1 with a traceback: an unusable cache
#    directory, a damaged cached driver, /dev/zero as input, C that calls exit().

def test_a_cache_directory_that_is_a_file_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(blocker))
    code, _, err = run_cli(capsys, "extract", "stop-bypass", "--build")
    assert code == 2
    one_error_line(err, f"the cache directory {blocker} cannot be used")
    assert "QTHROTTLE_CACHE_DIR" in err
    blocker.unlink()  # heals once the directory can be made
    assert run_cli(capsys, "extract", "stop-bypass", "--build")[0] == 0


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write to, root included (chattr +i), else by its mode."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    immutable = os.geteuid() == 0
    if immutable:
        done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True,
                              check=False) if shutil.which("chattr") else None
        if done is None or done.returncode != 0:
            reason = f"root cannot make {directory} read-only (chattr +i failed)"
            if os.environ.get("CI") == "true":
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
    else:
        directory.chmod(0o555)
    yield directory
    if immutable:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o755)


def test_a_read_only_cache_directory_is_named(
        read_only: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(read_only))
    code, _, err = run_cli(capsys, "extract", "stop-bypass", "--build")
    assert code == 2
    one_error_line(err, f"the cache directory {read_only} cannot be used")


def cached_driver(capsys: pytest.CaptureFixture[str], case: str) -> Tuple[Path, str, str]:
    """`qthrottle extract CASE --build --json`: the driver's path, and stdout/stderr."""
    code, out, err = run_cli(capsys, "extract", case, "--build", "--json")
    assert code == 0, err
    report = json.loads(out)
    return Path(report["driver"]), "cached" if report["driver_cached"] else "built", err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "manifest-lost"])
def test_a_damaged_cached_driver_is_rebuilt_once_never_run(
        damage: str, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary, how, _ = cached_driver(capsys, "stop-bypass")
    assert how == "built"
    if damage == "truncated":
        with open(binary, "r+b") as stream:
            stream.truncate(1000)
    elif damage == "garbage":
        binary.write_bytes(b"garbage\n")
    else:  # an entry cut short before its manifest was written
        (binary.parent / "manifest.json").unlink()
    again, how, err = cached_driver(capsys, "stop-bypass")
    assert (again, how) == (binary, "built")
    assert err.count("qthrottle: warning: cache entry") == 1 and "made again" in err
    healed, how, err = cached_driver(capsys, "stop-bypass")
    assert (healed, how, err) == (binary, "cached", "")
    with Driver(healed) as driver:
        assert driver.run([RTC]).steps[0].emitted == (Emission(0, RTC.event, RTC.data),)


# 2. A cached driver swapped for another target's is told apart before it runs.

def test_another_targets_driver_in_the_cache_is_rebuilt(
        cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine, _, _ = cached_driver(capsys, "stop-bypass")
    theirs, _, _ = cached_driver(capsys, "stop-irreflexive")
    shutil.copy(theirs, mine)  # the driver alone
    _, how, err = cached_driver(capsys, "stop-bypass")
    assert how == "built" and f"cache entry {mine.parent} is damaged" in err
    shutil.rmtree(mine.parent)  # the whole entry, manifest included
    shutil.copytree(theirs.parent, mine.parent)
    _, how, err = cached_driver(capsys, "stop-bypass")
    assert how == "built" and "is foreign" in err
    # The verdicts are stop-bypass's again: it keeps invariant 1, stop-irreflexive breaks it.
    with Driver(mine) as driver:
        assert driver.equal(("BLOCK_IO_ERROR", STOP_EVENT), ("BLOCK_IO_ERROR", STOP_EVENT))


STOP_EVENT = {"qom-path": "/machine/peripheral/disk0", "device": "disk0", "operation": "write",
              "action": "stop", "reason": "No space left on device"}


def test_a_driver_says_what_it_was_built_from(cache: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    mine, _, _ = cached_driver(capsys, "stop-bypass")
    theirs, _, _ = cached_driver(capsys, "stop-irreflexive")
    shutil.copy(theirs, mine)  # swapped after the cache's check: the greeting tells
    with pytest.raises(DriverError, match="it was built from .*, but its cache entry is"):
        Driver(mine)
    assert not [p for p in descendants(os.getpid())
                if str(mine) in cmdline(p.pid)]


def test_dev_zero_and_a_fifo_are_refused_at_once(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "extract", "/dev/zero")
    assert code == 2
    one_error_line(err, "/dev/zero: a device, not a monitor.c")
    fifo = tmp_path / "monitor.c"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "extract", str(fifo))
    assert code == 2
    one_error_line(err, "a FIFO, not a monitor.c")
    huge = tmp_path / "huge.c"
    with open(huge, "wb") as stream:
        stream.truncate(17 << 20)
    code, _, err = run_cli(capsys, "extract", str(huge))
    assert code == 2
    one_error_line(err, "larger than 16 MiB")


def explore_8(capsys: pytest.CaptureFixture[str], path: Path,
              tmp_path: Path) -> Tuple[int, str, str]:
    """`qthrottle explore PATH --invariant 8`: the stateful engine to the first memory
    finding (one search, where verify goes on looking for the other invariants)."""
    return run_cli(capsys, "explore", str(path), "--qapi-dir", str(SCHEMA_DIR), "--invariant",
                   "8", "--profile", "smoke", "--seed", str(SEED), "--output",
                   str(tmp_path / "repro"))


def test_c_that_calls_exit_17_is_a_crash_not_a_reset(
        tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = variant(tmp_path, "exit17", QUEUE_START, on_rtc_change("exit(17);"))
    built = build(extract(path), resolve("stop-bypass").schema_events())
    with Driver(built.binary) as driver:
        crash = driver.run([RTC]).crash
        assert crash is not None and (crash.kind, crash.status) == ("exit-17", "exit 17")
        # the next run starts afresh, in the same driver
        assert driver.run([Queue("STOP")]).steps[0].emitted == (Emission(0, "STOP", None),)
    code, out, err = explore_8(capsys, path, tmp_path)
    assert code == 1 and "Traceback" not in err and "internal error" not in err
    assert "invariant 8 FALSIFIED by stateful: exit-17 (exit 17)" in out


# ---------------------------------------------------------------------------------------
# 3. No driver outlives qthrottle, killed by SIGKILL or SIGTERM while the C hangs.

@pytest.fixture
def hanging(tmp_path: Path, cache: Path) -> Path:
    """A monitor.c whose queue function never returns for RTC_CHANGE, its driver built."""
    path = variant(tmp_path, "hang", QUEUE_START, on_rtc_change("for (;;) {\n        }"))
    build(extract(path), resolve("stop-bypass").schema_events())
    return path


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_process_outlives_qthrottle_stopped_while_the_c_hangs(
        signum: int, hanging: Path) -> None:
    command = start_command("verify", str(hanging), "--qapi-dir", str(SCHEMA_DIR),
                            "--seed", str(SEED))
    wait_for("the driver to hang in the C", lambda: busy_driver(command))
    code, _, err, took, left = stop(command, signum)
    assert left == [], f"still running: {left}"
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        return
    assert code == 128 + signum and took < SIGNAL_GRACE_S
    assert err.strip().splitlines()[-1] == f"qthrottle: interrupted by {signal.Signals(signum).name}"


BUILD_STEP = """
import sys
from pathlib import Path
from qthrottle.harness.qemu_build import _run_logged
# A build step as ninja runs one: a process whose own children do the work.
_run_logged(["sh", "-c", "sleep 300 & sleep 300 & wait"], Path(sys.argv[1]),
            Path(sys.argv[1]) / "build.log")
"""


def test_no_build_process_outlives_qthrottle_killed_by_sigkill(tmp_path: Path) -> None:
    """fetch-qemu --build's ninja and compilers die with qthrottle, SIGKILL included."""
    command = subprocess.Popen([sys.executable, "-c", BUILD_STEP, str(tmp_path)])
    try:
        wait_for("the build's children", lambda: sum(
            cmdline(p.pid).split() == ["sleep", "300"]
            for p in descendants(command.pid)) == 2, timeout_s=30)
        below = descendants(command.pid)
    finally:
        command.kill()
        command.wait()
    left = alive(below)
    for process in left:  # not to leave them to the next test
        os.kill(process.pid, signal.SIGKILL)
    assert left == []


# 4. SIGINT stops any command within 2 s with exit 130 (SIGTERM 143), after what it found.

@pytest.mark.parametrize(("signum", "after_s"), [(signal.SIGINT, 0.5), (signal.SIGINT, 3.0),
                                                 (signal.SIGTERM, 2.0),
                                                 (signal.SIGINT, 6.0)])
def test_a_signal_stops_verify_within_two_seconds(signum: int, after_s: float,
                                                  cache: Path) -> None:
    # At different moments: the build, the search, its minimiser (the ci profile keeps
    # the search going past the last one).
    command = start_command("verify", "stop-irreflexive", "--seed", str(SEED),
                            "--profile", "ci")
    wait_for("the search to start", lambda: bool(descendants(command.pid)))
    time.sleep(after_s)
    code, _, err, took, left = stop(command, signum)
    assert (code, left) == (128 + signum, [])
    assert took < SIGNAL_GRACE_S and "Exception ignored" not in err
    assert err.strip().splitlines()[-1] == f"qthrottle: interrupted by {signal.Signals(signum).name}"


def test_a_signal_dropped_in_a_gc_callback_is_raised_again(
        capsys: pytest.CaptureFixture[str]) -> None:
    """hypothesis's gc callback swallowed Ctrl-C: an exception raised in a garbage
    collector callback is printed and dropped. The signal is delivered again."""
    def callback(phase: str, info: Dict[str, int]) -> None:
        if phase == "start":
            gc.callbacks.remove(callback)
            os.kill(os.getpid(), signal.SIGINT)  # its handler raises here, into the void

    with signals_stop_the_command():
        gc.callbacks.append(callback)
        started = time.monotonic()
        with pytest.raises(Interrupted) as stop:
            gc.collect()  # returns normally: the Interrupted raised inside was dropped
            for _ in range(50):  # the signal, delivered again, stops this loop
                time.sleep(0.1)
        assert time.monotonic() - started < 1
        with pytest.raises(Interrupted):  # and the loops' check raises it too
            check_interrupted()
    assert stop.value.exit_code == 130
    check_interrupted()  # the command is over: nothing pending
    assert "Exception ignored" not in capsys.readouterr().err  # dropped quietly


def test_a_signal_stops_a_z3_check_at_once() -> None:
    """z3 used to take SIGINT for itself during a check (an UNKNOWN, and the run went on)
    and to hold SIGTERM's handler back until the check ended: now both stop the check."""
    import z3

    import qthrottle.proofs  # noqa: F401  (hands the signals to qthrottle)

    x, y, z = z3.Ints("x y z")
    solver = z3.Solver()
    solver.set("timeout", 60_000)
    solver.add(x > 0, y > 0, z > 0, x * x * x + y * y * y == z * z * z)  # z3 cannot decide
    for signum in (signal.SIGINT, signal.SIGTERM):
        with signals_stop_the_command():
            timer = threading.Timer(0.5, os.kill, (os.getpid(), signum))
            started = time.monotonic()
            timer.start()
            with pytest.raises(Interrupted) as stop:
                solver.check()
            timer.join()
        assert stop.value.signum == signum and time.monotonic() - started < SIGNAL_GRACE_S
    # The command that a signal stopped leaves z3's context usable: a later one pushes.
    with signals_stop_the_command(), pytest.raises(Interrupted):
        os.kill(os.getpid(), signal.SIGINT)  # between checks: z3 is cancelled all the same
        time.sleep(SIGNAL_GRACE_S)
    z3.Solver().push()


def test_hypothesis_does_not_turn_an_interruption_into_a_flaky_result(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An Interrupted raised inside a hypothesis run came back as errors.Flaky, which
    the search reported as UNKNOWN and went on: the signal is the cause, not the C.
    The search's hypothesis run is the one that draws its values."""
    draws = iter(range(1000))
    member_value = sampling.member_value

    def interrupting(member: Any) -> Any:
        if next(draws) == 5:  # while the strategy is built, inside the hypothesis run
            os.kill(os.getpid(), signal.SIGINT)
        return member_value(member)

    sampling.member_pools.cache_clear()
    monkeypatch.setattr(sampling, "member_value", lambda m: st.builds(interrupting, st.just(m))
                        .flatmap(lambda strategy: strategy))
    with signals_stop_the_command(), pytest.raises(Interrupted) as stop:
        verify_target(resolve("stop-irreflexive"), SMALL, SEED)
    sampling.member_pools.cache_clear()
    assert isinstance(stop.value.partial, stateful.SearchResult)
    assert stop.value.partial.unknown == "interrupted by SIGINT"


def test_an_interrupted_verify_prints_what_it_found_first(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    record = stateful._record

    def then_interrupted(*args: Any) -> Optional[int]:
        found = record(*args)
        os.kill(os.getpid(), signal.SIGINT)  # before the second search
        return found

    monkeypatch.setattr(stateful, "_record", then_interrupted)
    code, out, err = run_cli(capsys, "verify", "stop-irreflexive", "--seed", str(SEED))
    assert code == 130 and err.strip() == "qthrottle: interrupted by SIGINT"
    assert "interrupted: 1 search(es)" in out and "FALSIFIED (" in out


def test_an_interrupted_mutate_stops_its_workers(cache: Path) -> None:
    command = start_command("mutate", "stop-bypass", "--jobs", "2", "--profile", "smoke")
    wait_for("the workers", lambda: sum(
        "multiprocessing" in cmdline(p.pid)
        for p in descendants(command.pid)) >= 2)
    time.sleep(3.0)
    code, out, err, took, left = stop(command, signal.SIGINT)
    assert (code, left) == (130, [])
    assert took < SIGNAL_GRACE_S and "mutant(s) analysed so far" in out
    assert err.strip().splitlines()[-1] == "qthrottle: interrupted by SIGINT"


def test_an_interrupted_selfcheck_stops_crosshair() -> None:
    command = start_command("selfcheck")
    wait_for("CrossHair", lambda: any("crosshair" in cmdline(p.pid)
                                      for p in descendants(command.pid)))
    code, _, err, took, left = stop(command, signal.SIGTERM)
    assert (code, left) == (143, []) and took < SIGNAL_GRACE_S
    assert err.strip().splitlines()[-1] == "qthrottle: interrupted by SIGTERM"


# ---------------------------------------------------------------------------------------
# 5. What the C prints never reaches the protocol; undecodable replies are the harness's.

def test_what_the_c_prints_is_captured_and_shown_with_its_step(
        tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The timer handler prints, and forgets to free the timer: invariant 8.
    path = variant(tmp_path, "chatty", TIMER_FREE,
                   '        printf("{\\"ok\\":false} handler of %p\\n", (void *)rec);\n'
                   '        fprintf(stderr, "Bail out! not a reply\\n");\n')
    built = build(extract(path), resolve("stop-bypass").schema_events())
    with Driver(built.binary) as driver:
        step = driver.run([RTC, Advance(2 * SECOND)]).steps[1]
    assert step.crash is None and '{"ok":false} handler of' in step.output
    assert "Bail out! not a reply" in step.output
    assert [f.kind for f in step.findings] == ["timer-leak"]
    code, out, _ = explore_8(capsys, path, tmp_path)
    assert code == 1 and "invariant 8 FALSIFIED by stateful: timer leak" in out
    assert "C output: {\"ok\":false} handler of" in out and "flaky" not in out


def test_a_failing_g_assert_is_a_crash_of_the_c(tmp_path: Path, cache: Path) -> None:
    path = variant(tmp_path, "assert", QUEUE_START,
                   QUEUE_START + "    g_assert(event != QAPI_EVENT_RTC_CHANGE);\n")
    built = build(extract(path), resolve("stop-bypass").schema_events())
    with Driver(built.binary) as driver:
        crash = driver.run([RTC]).crash
    assert crash is not None and crash.kind == "assertion-failure"
    assert "assertion failed: (event != QAPI_EVENT_RTC_CHANGE)" in crash.report
    assert inv.crash_invariant(crash.kind) == 7  # an abort reached: totality (issue 11)


FAKE_DRIVER = """#!{python}
# Greets like a qthrottle driver, then answers every command with bytes that are no JSON.
import os, sys
commands, replies = int(sys.argv[1]), int(sys.argv[2])
os.write(replies, b'{{"ok":true,"driver":"qthrottle","protocol":{protocol},"build":"fake"}}\\n')
for line in os.fdopen(commands, "rb"):
    os.write(replies, b"\\xff\\xfe not json\\n")
"""


def test_an_undecodable_reply_is_a_harness_failure_with_its_bytes(tmp_path: Path) -> None:
    fake = tmp_path / "driver"
    fake.write_text(FAKE_DRIVER.format(python=sys.executable, protocol=PROTOCOL_VERSION))
    fake.chmod(0o755)
    with Driver(fake) as driver:
        crash = driver.run([RTC]).crash
        assert crash is not None and crash.kind == "protocol-error"
        assert "b'\\xff\\xfe not json'" in crash.status
        assert inv.crash_invariant(crash.kind) is None  # UNKNOWN, never a verdict
        target = resolve("stop-bypass")
        subject = Subject.create(driver, target_policy(target).policy, target.catalog())
        result = search(subject, SMALL, SEED)
    assert result.falsified == {}
    assert result.unknown is not None and "the harness could not decide: protocol-error" \
        in result.unknown and "\\xff\\xfe not json" in result.unknown
    assert "flaky" not in result.unknown


@pytest.mark.parametrize("line", [b'{"ok":true}', b' {"ok":true}\r', b'\t[1, 2] ', b'"text"',
                                  b'{"ok":true} {"ok":true}', b'{"ok":true} x', b'{"ok":',
                                  b'', b'\xff\xfe not json', b'\x0c{"ok":true}'])
def test_a_reply_line_decodes_as_json_loads_decodes_it(line: bytes) -> None:
    """The harness's reply decoder (the fast path of every step) accepts and refuses
    exactly what json.loads does: JSON whitespace around one value, nothing after it."""
    try:
        expected: object = json.loads(line)
    except ValueError:
        expected = ValueError
    try:
        decoded: object = protocol._decode_reply(line)
    except ValueError:
        decoded = ValueError
    assert decoded == expected


# ---------------------------------------------------------------------------------------
# 6. Inputs: symbolic links out of the tree, patch-created links, devices through them.

def qemu_like_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "qemu"
    (tree / "monitor").mkdir(parents=True)
    (tree / "monitor" / "monitor.c").write_text(STOP_BYPASS)
    shutil.copytree(SCHEMA_DIR, tree / "qapi")
    return tree


def symlink_patch(tree: Path, link_target: str) -> str:
    """A git patch that adds qapi/evil.json as a link to @link_target and includes it."""
    schema = (tree / "qapi" / "qapi-schema.json").read_text().splitlines(keepends=True)
    context = "".join(" " + line for line in schema[:3])
    return (f"diff --git a/qapi/evil.json b/qapi/evil.json\nnew file mode 120000\n"
            f"index 0000000..1111111\n--- /dev/null\n+++ b/qapi/evil.json\n@@ -0,0 +1 @@\n"
            f"+{link_target}\n\\ No newline at end of file\n"
            f"diff --git a/qapi/qapi-schema.json b/qapi/qapi-schema.json\n"
            f"--- a/qapi/qapi-schema.json\n+++ b/qapi/qapi-schema.json\n@@ -1,3 +1,4 @@\n"
            f"+{{ 'include': 'evil.json' }}\n{context}")


@pytest.mark.parametrize("link_target", ["/etc/passwd", "/dev/zero"])
def test_a_patch_that_creates_a_symbolic_link_is_refused(
        link_target: str, tmp_path: Path, cache: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    tree = qemu_like_tree(tmp_path)
    patch = tmp_path / "evil.patch"
    patch.write_text(symlink_patch(tree, link_target))
    code, out, err = run_cli(capsys, "diff", str(tree), str(patch))
    assert code == 2 and out == ""
    one_error_line(err, "creates the symbolic link(s) qapi/evil.json: refused")
    assert "root:" not in err


def test_a_schema_include_that_leaves_the_tree_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = qemu_like_tree(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text("{ 'event': 'SECRET', 'data': { 'password': 'str' } }\n")
    (tree / "qapi" / "evil.json").symlink_to(secret)
    schema = tree / "qapi" / "qapi-schema.json"
    schema.write_text("{ 'include': 'evil.json' }\n" + schema.read_text())
    code, out, err = run_cli(capsys, "extract", str(tree))
    assert code == 2
    one_error_line(err, f"outside the schema's directory {(tree / 'qapi').resolve()}: refused")
    assert "password" not in out + err


# 7. Output paths are checked before the run; findings are printed before a write fails.

def test_explore_output_onto_a_file_still_prints_its_findings(
        tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    code, out, err = run_cli(capsys, "explore", "stop-irreflexive", "--invariant", "1",
                             "--seed", str(SEED), "--output", str(taken))
    assert code == 2 and taken.read_text() == "mine\n"
    assert err.splitlines()[0].startswith(f"qthrottle: warning: --output {taken}")
    one_error_line(err, f"--output {taken}: {taken} is not a directory: no reproducer written")
    assert "invariant 1 FALSIFIED by z3" in out and "reproducer: not written" in out


@pytest.mark.parametrize("command", [["verify", "stop-bypass", "--json"],
                                     ["verify", "stop-bypass", "--junit"],
                                     ["mutate", "stop-bypass", "--json"]])
def test_a_report_file_that_cannot_be_written_is_refused_before_the_run(
        command: List[str], capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, out, err = run_cli(capsys, *command, "/proc/qthrottle-report")
    assert code == 2 and out == "" and time.monotonic() - started < 10
    one_error_line(err, "/proc/qthrottle-report: cannot be written")
    assert not Path("/proc/qthrottle-report").exists()


def test_a_z3_timeout_that_does_not_fit_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["prove", "stop-bypass", "--timeout-ms", "4294967297"])
    assert exit_.value.code == 2
    assert "must be a number of milliseconds at least 1 and at most 4294967295" \
        in capsys.readouterr().err


# 8. hypothesis's files go to the tool's cache, never into the user's directory.

HYPOTHESIS_RUN = """
from hypothesis import given, settings, strategies as st
from qthrottle.engines.bounds import search_settings
config = {config}
@config
@given(st.integers())
def test(value):
    assert value != 12345
test()
# Whether hypothesis writes its caches during a run is chance (it draws local constants
# 5% of the time, then caches them): ask it to write one where it would.
from hypothesis.configuration import storage_directory
storage_directory("constants").create_if_missing()
"""


@pytest.mark.parametrize("config", ["search_settings(50)", "settings(database=None)"])
def test_hypothesis_writes_nothing_into_the_working_directory(
        config: str, tmp_path: Path, cache: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    subprocess.run([sys.executable, "-c", HYPOTHESIS_RUN.format(config=config)], cwd=user,
                   check=True, env={**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": ""})
    if config.startswith("settings("):  # what qthrottle did before: the fault itself
        assert (user / ".hypothesis").is_dir()
    else:
        assert list(user.iterdir()) == [] and (cache / "hypothesis").is_dir()


# 9. Leaks are invariant 8: the two survivors of mutate (record and timer never freed).

@pytest.mark.parametrize(("dropped", "finding"), [(HANDLER_FREE, "record-leak"),
                                                  (TIMER_FREE, "timer-leak")])
def test_a_leak_is_a_finding_of_invariant_8(
        dropped: str, finding: str, tmp_path: Path, cache: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = variant(tmp_path, finding, dropped, "")
    built = build(extract(path), resolve("stop-bypass").schema_events())
    with Driver(built.binary) as driver:
        run = driver.run([RTC, Advance(2 * SECOND)])
    kinds = [f.kind for f in run.findings]
    assert finding in kinds
    if finding == "record-leak":  # LeakSanitizer sees the record nothing points to
        assert "memory-leak" in kinds
        assert "ERROR: LeakSanitizer: detected memory leaks" in run.steps[-1].output
    code, out, _ = explore_8(capsys, path, tmp_path)
    assert code == 1 and "invariant 8 FALSIFIED by stateful: " + finding.replace("-", " ") in out


def test_the_cases_that_hold_leak_nothing(cache: Path) -> None:
    # No false alarm: the harness's own allocations are not leaks.
    built = resolve("stop-bypass").build()
    with Driver(built.binary) as driver:
        run = driver.run([RTC, RTC, Advance(SECOND), Advance(SECOND), RTC, Advance(3 * SECOND)])
    assert run.findings == [] and run.crash is None
    assert all(step.output == "" for step in run.steps)


# ---------------------------------------------------------------------------------------
# 10. Every claim holds: CrossHair's column, z3 kills, mismatches, bounds, cited docs.

def test_crosshair_claims_no_check_for_the_key_laws() -> None:
    from qthrottle.engines.selfcheck import conditions_of, model_targets

    checked = {n for t in model_targets() for c in conditions_of(t) for n in c.invariants}
    assert checked.isdisjoint({1, 2}) and {3, 4, 5, 6} <= checked
    assert "tuples" in NO_CONDITION[1] and "tuples" in NO_CONDITION[2]
    readme = (ROOT / "README.md").read_text()
    assert "key function's three laws" not in readme


def test_a_z3_kill_the_c_does_not_confirm_is_not_a_kill(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = resolve("stop-bypass")
    job = mutate_module.Job(target.monitor_c, SCHEMA_DIR, SMALL, SEED, 10_000, None)
    original = mutate_module._original(job)
    mutant = next(m for m in mutants(original.extraction, original.catalog)
                  if m.role == "hash" and m.operator == "hash a different member")
    monkeypatch.setattr(mutate_module, "_replayed",
                        lambda *_: (False, "but the C, replaying it, does not break it"))
    monkeypatch.setattr(mutate_module._Original, "search",
                        lambda *_: stateful.SearchResult(SMALL, SEED))
    outcome = mutate_module.analyse(mutate_module.Job(job.original, job.qapi_dir, SMALL, SEED,
                                                      10_000, mutant))
    assert outcome.verdict == mr.UNCONFIRMED and outcome.invariant == 2
    report = mr.MutationReport("t", target.monitor_c, SMALL, SEED, 10_000, 1, [outcome], 0.0)
    assert report.score == 0.0 and mr.exit_code(report, 95.0) == 3
    assert "z3 kills the C does not confirm (counted as not killed): 1" in \
        mr.format_report(report, 95.0)


POLICY = Policy(rates={"RTC_CHANGE": SECOND, "BLOCK_IO_ERROR": SECOND},
                keys={"BLOCK_IO_ERROR": ("qom-path",)})


BIO_REPORT = {**STOP_EVENT, "action": "report"}


@pytest.mark.parametrize(("op", "c_side", "model_side", "charged"), [
    # (emissions, clock after, table after) of the C and of the model
    (Queue("BLOCK_IO_ERROR", STOP_EVENT), ([], 0, 1),
     ([Emission(0, "BLOCK_IO_ERROR", STOP_EVENT)], 0, 1), 4),
    (Queue("STOP"), ([Emission(0, "STOP", None)], 0, 0), ([], 0, 0), 6),
    (Queue(RTC.event, RTC.data), ([], 0, 1), ([Emission(0, "RTC_CHANGE", RTC.data)], 0, 1), 5),
    (Advance(SECOND), ([Emission(0, "STOP", None), Emission(0, "RTC_CHANGE", RTC.data)], 0, 1),
     ([Emission(0, "RTC_CHANGE", RTC.data), Emission(0, "STOP", None)], 0, 1), 6),
    # the held-back event at another time: the C's window is not one interval long
    (Advance(SECOND), ([Emission(2 * SECOND, "RTC_CHANGE", RTC.data)], 2 * SECOND, 1),
     ([Emission(SECOND, "RTC_CHANGE", RTC.data)], SECOND, 1), 5),
    # the same emissions, but the C opened no window (an unthrottled queue used to be 6)
    (Queue("BLOCK_IO_ERROR", BIO_REPORT), ([Emission(0, "BLOCK_IO_ERROR", BIO_REPORT)], 0, 0),
     ([Emission(0, "BLOCK_IO_ERROR", BIO_REPORT)], 0, 1), 5),
    (AdvanceToNext(), ([], 2 * SECOND, 0), ([], SECOND, 0), 5),  # another deadline
    (Queue("STOP"), ([Emission(0, "STOP", None)], 0, 0), ([Emission(0, "STOP", None)], 0, 0),
     None),
])
def test_a_mismatch_is_charged_to_the_invariant_it_breaks(
        op: Operation, c_side: Tuple[List[Emission], int, int],
        model_side: Tuple[List[Emission], int, int], charged: Optional[int]) -> None:
    def step(side: Tuple[List[Emission], int, int]) -> inv.TraceStep:
        emitted, after, table = side
        return inv.TraceStep(op, 0, after, tuple(emitted), table)

    assert inv.mismatch_invariant(step(c_side), step(model_side), POLICY) == charged


def test_the_events_a_search_queues_are_printed_with_its_result(
        cache: Path, small_profile: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "verify", "stop-bypass", "--seed", str(SEED))
    assert code == 0
    assert "events: 9 throttled or required, all 3 unthrottled ones of the schema" in out


def test_the_docs_the_code_cites_are_in_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    this = str(Path(__file__).resolve().relative_to(ROOT))
    for name in tracked:
        if name == this or not name.endswith((".py", ".md", ".c", ".h", ".json", ".toml")):
            continue
        text = (ROOT / name).read_text(errors="replace")
        assert "DESIGN.md" not in text and "shared/seed" not in text, name
        for cited in set(re.findall(r"\bdocs/[\w.-]+\.md\b", text)):
            assert (ROOT / cited).is_file(), f"{name} cites {cited}"


def test_debug_adds_the_traceback_to_a_tool_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--debug", "extract", "/dev/zero")
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("qthrottle: error: /dev/zero: a device")
