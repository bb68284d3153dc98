"""Drive a compiled throttle from Python, one command at a time.

The child is a fork server (see shims/driver.c): each run is a fresh fork, and
a crash (sanitizer report, abort, signal) ends only that run. Nothing the C
code does makes this class raise: a crash, a hang or a dead process becomes a
Crash in the StepResult.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, EventData, Operation, Queue

SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=0:symbolize=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}


@dataclass(frozen=True)
class Finding:
    """Something wrong the driver saw without a crash (dangling-entry, reference-leak)."""

    kind: str
    detail: str


@dataclass(frozen=True)
class Crash:
    """The C side died: how, after which operations, and what the sanitizer said."""

    kind: str  # heap-use-after-free, missing-member, double-release, timeout, ...
    operations: Tuple[Operation, ...]
    report: str  # the sanitizer or shim text, as printed
    status: str  # "signal 6", "exit 1", ...

    @property
    def location(self) -> Optional[str]:
        """function at file:line of the innermost frame in the code under test."""
        for match in re.finditer(r"#\d+ 0x[0-9a-f]+ in (\w+) (\S+?):(\d+)", self.report):
            function, file, line = match.groups()
            if "/shims/" not in file and "glib" not in file and not file.startswith("../"):
                return f"{function} at {file}:{line}"
        return None

    def summary(self) -> str:
        where = self.location
        return f"{self.kind}" + (f" in {where}" if where else "") + f" ({self.status})"


@dataclass(frozen=True)
class StepResult:
    """What one operation did on the C side."""

    operation: Optional[Operation]
    emitted: Tuple[Emission, ...] = ()
    now: int = 0
    table: int = 0
    pending_timers: int = 0
    live_qobjects: int = 0
    next_deadline: Optional[int] = None
    findings: Tuple[Finding, ...] = ()
    crash: Optional[Crash] = None


@dataclass
class RunResult:
    """A whole timeline replayed from a fresh start."""

    steps: List[StepResult] = field(default_factory=list)

    @property
    def crash(self) -> Optional[Crash]:
        return next((s.crash for s in self.steps if s.crash), None)

    @property
    def findings(self) -> List[Finding]:
        return [f for s in self.steps for f in s.findings]

    @property
    def emissions(self) -> List[Emission]:
        return [e for s in self.steps for e in s.emitted]


class DriverError(Exception):
    """A request the driver refused (unknown event, malformed data): a usage error."""


def _event_json(event: str, data: EventData) -> Dict[str, Any]:
    """An event as the driver reads it: no "data" member when the event has none."""
    return {"event": event} if data is None else {"event": event, "data": data}


def _classify(report: str, status: str) -> str:
    for pattern in (r"ERROR: AddressSanitizer: ([\w-]+)", r"qthrottle-shim: ([\w-]+):",
                    r"ERROR: LeakSanitizer: ([\w-]+)"):
        match = re.search(pattern, report)
        if match:
            return match.group(1)
    if "runtime error:" in report:
        return "undefined-behaviour"
    # glibc's assert, GLib's g_assert, g_assert_not_reached and g_error
    if re.search(r"Assertion .* failed|assertion failed|code should not be reached|"
                 r"\*\* ERROR \*\*", report):
        return "assertion-failure"
    if status == f"signal {signal.SIGABRT.value}":  # abort() with nothing printed
        return "abort"
    return status.replace(" ", "-")


class Driver:
    """A persistent driver process for one build.

    >>> with Driver(build.binary) as d:
    ...     d.queue("RTC_CHANGE", {"offset": 1, "qom-path": "/rtc"})
    """

    def __init__(self, binary: Path, timeout: float = 10.0) -> None:
        self.binary = Path(binary)
        self.timeout = timeout
        self.operations: List[Operation] = []
        # Lives as long as the driver: closed in close().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._start()

    def __repr__(self) -> str:
        return f"Driver({str(self.binary)!r})"

    def __enter__(self) -> Driver:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        env = dict(os.environ)
        env.update(SANITIZER_ENV)
        self._process = subprocess.Popen(
            [str(self.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=env, start_new_session=True)
        self.operations = []

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                if process.stdin:
                    process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._kill(process)
            if process.stdout:
                process.stdout.close()
        self._stderr.close()

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        process.wait()

    def _stderr_since(self, offset: int) -> str:
        self._stderr.seek(offset)
        text = self._stderr.read().decode("utf-8", "replace")
        self._stderr.seek(0, os.SEEK_END)
        return text

    def _request(self, command: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[Crash]]:
        """Send one command; return its reply, or a Crash if the run died."""
        self._stderr.seek(0, os.SEEK_END)
        offset = self._stderr.tell()
        process = self._process
        assert process is not None and process.stdin and process.stdout, "driver closed"
        try:
            process.stdin.write(json.dumps(command).encode() + b"\n")
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], self.timeout)
            line = process.stdout.readline() if ready else None
        except OSError:
            line = b""
        if line is None or not line:
            how = f"timeout after {self.timeout:g} s" if line is None else "driver exited"
            self._kill(process)
            crash = Crash("timeout" if line is None else "driver-died", tuple(self.operations),
                          self._stderr_since(offset), how)
            self._start()
            return {}, crash
        reply: Dict[str, Any] = json.loads(line)
        if "crash" in reply:
            detail = reply["crash"]
            status = (f"signal {detail['signal']}" if "signal" in detail
                      else f"exit {detail.get('exit')}")
            report = self._stderr_since(offset)
            crash = Crash(_classify(report, status), tuple(self.operations), report, status)
            self.operations = []  # the fork server starts a fresh run
            return reply, crash
        if "error" in reply:
            raise DriverError(reply["error"])
        return reply, None

    def apply(self, operation: Operation) -> StepResult:
        """Apply one timeline operation to the C throttle."""
        self.operations.append(operation)
        reply, crash = self._request(operation.to_json())
        if crash is not None:
            return StepResult(operation, crash=crash)
        return self._step(operation, reply)

    @staticmethod
    def _step(operation: Optional[Operation], reply: Dict[str, Any]) -> StepResult:
        return StepResult(
            operation,
            emitted=tuple(Emission(e["t"], e["event"], e["data"]) for e in reply["emitted"]),
            now=reply["now"], table=reply["table"], pending_timers=reply["pending_timers"],
            live_qobjects=reply["live_qobjects"], next_deadline=reply["next_deadline"],
            findings=tuple(Finding(f["kind"], f["detail"]) for f in reply["findings"]))

    def queue(self, event: str, data: EventData = None) -> StepResult:
        return self.apply(Queue(event, data))

    def advance(self, ns: int) -> StepResult:
        return self.apply(Advance(ns))

    def advance_to_next(self) -> StepResult:
        return self.apply(AdvanceToNext())

    def state(self) -> StepResult:
        reply, crash = self._request({"op": "state"})
        return StepResult(None, crash=crash) if crash else self._step(None, reply)

    def log(self) -> List[Emission]:
        reply, _ = self._request({"op": "log"})
        return [Emission(e["t"], e["event"], e["data"]) for e in reply.get("log", [])]

    def hash(self, event: str, data: EventData) -> int | Crash:
        """The hash callback's value for a record of this event, or how it crashed."""
        reply, crash = self._request({"op": "hash", **_event_json(event, data)})
        return crash if crash else int(reply["hash"])

    def equal(self, a: Tuple[str, EventData], b: Tuple[str, EventData]) -> bool | Crash:
        """equal(a, b) as GLib would call it (a is the stored key), or how it crashed."""
        reply, crash = self._request({"op": "equal", "a": _event_json(*a),
                                      "b": _event_json(*b)})
        return crash if crash else bool(reply["equal"])

    def reset(self) -> None:
        """Start a fresh run: empty table, clock at 0, no emissions."""
        self._request({"op": "reset"})
        self.operations = []

    def run(self, operations: Sequence[Operation]) -> RunResult:
        """Replay a timeline from a fresh start, stopping at a crash."""
        self.reset()
        result = RunResult()
        for operation in operations:
            step = self.apply(operation)
            result.steps.append(step)
            if step.crash:
                break
        return result
