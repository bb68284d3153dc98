"""Drive a compiled throttle from Python, one command at a time.

The child is a fork server (see shims/driver.c; harness/protocol.py carries the
commands and replies): each run is a fresh fork, and a crash (sanitizer report,
abort, signal, exit) ends only that run. Nothing the C code does makes this class
raise: a crash, a hang, a dead process or a reply that cannot be decoded becomes a
Crash in the StepResult, and what the C printed is kept with the step.
"""
from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qthrottle.core import QthrottleError, check_interrupted
from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, EventData, Operation, Queue

from .cache import built_from
from .protocol import PROTOCOL_ERROR, PROTOCOL_VERSION, Channel

# LeakSanitizer runs when the driver asks it to (a quiet throttle, shims/driver.c), not
# at exit: runs end with _exit, and the fork server never runs throttle code.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:leak_check_at_exit=0:halt_on_error=1:abort_on_error=0:"
                    "symbolize=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}
GREETING_TIMEOUT_S = 30.0  # the driver's first line: ASan's start-up on a loaded machine


def code_location(report: str) -> Optional[str]:
    """function at file:line of the innermost frame of a sanitizer report that is in the
    code under test (not a shim, GLib or the sanitizer runtime)."""
    for match in re.finditer(r"#\d+ 0x[0-9a-f]+ in (\w+) (\S+?):(\d+)", report):
        function, file, line = match.groups()
        if "/shims/" not in file and "glib" not in file and not file.startswith("../"):
            return f"{function} at {file}:{line}"
    return None


@dataclass(frozen=True)
class Finding:
    """Something wrong the driver saw without a crash: a dangling entry (invariant 3), a
    reference, timer or memory leak (8)."""

    kind: str
    detail: str


@dataclass(frozen=True)
class Crash:
    """The C side died: how, after which operations, and what the sanitizer said."""

    kind: str  # heap-use-after-free, missing-member, double-release, timeout, ...
    operations: Tuple[Operation, ...]
    report: str  # what the C printed during the step: the sanitizer or shim report
    status: str  # "signal 6", "exit 1", ...

    @property
    def location(self) -> Optional[str]:
        """function at file:line of the innermost frame in the code under test."""
        return code_location(self.report)

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
    output: str = ""  # what the C printed on stdout and stderr during the step (capped)


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


class DriverError(QthrottleError):
    """A request the driver refused (unknown event, malformed data), or a driver that
    cannot be used at all: an input or tool error."""


class HarnessFailure(BaseException):
    """The harness could not decide (the C hung, the driver died, its reply could not be
    decoded): UNKNOWN, never a verdict.

    Raised by the engines on a crash of a kind model/invariants.py lists as the
    harness's. A BaseException, so that hypothesis stops at once instead of shrinking
    it: each replay would wait for the same timeout again.
    """


def _event_json(event: str, data: EventData) -> Dict[str, Any]:
    """An event as the driver reads it: no "data" member when the event has none."""
    return {"event": event} if data is None else {"event": event, "data": data}


def _finding(kind: str, detail: str, output: str) -> Finding:
    """A finding of the driver; a leak LeakSanitizer found says where the memory was
    allocated (its report is in the step's output)."""
    where = code_location(output) if kind == "memory-leak" else None
    return Finding(kind, f"{detail}; allocated in {where}" if where else detail)


def _classify(report: str, status: str) -> str:
    """A crash's kind, from what the C printed as it died."""
    if "LeakSanitizer has encountered a fatal error" in report:
        return "leak-check-failed"  # the scan itself failed (ptrace refused, ...)
    for pattern in (r"ERROR: AddressSanitizer: ([\w-]+)", r"qthrottle-shim: ([\w-]+):",
                    r"ERROR: LeakSanitizer: ([\w-]+)"):
        match = re.search(pattern, report)
        if match:
            return match.group(1)
    if "runtime error:" in report:
        return "undefined-behaviour"
    # assert() (glibc), g_assert() (GLib prints "Bail out!" or "assertion failed"),
    # g_assert_not_reached() and g_error()
    if re.search(r"Assertion .* failed|assertion failed|^Bail out!|code should not be reached|"
                 r"\*\* ERROR \*\*", report, re.MULTILINE):
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
        self._channel: Optional[Channel] = None
        self._start()

    def __repr__(self) -> str:
        return f"Driver({str(self.binary)!r})"

    def __enter__(self) -> Driver:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        """A fresh driver process, checked to be a qthrottle driver of the expected build."""
        env = dict(os.environ)
        env.update(SANITIZER_ENV)
        try:
            channel = Channel(self.binary, env)
        except OSError as error:
            raise DriverError(f"cannot run the driver {self.binary}: "
                              f"{error.strerror or error}") from None
        try:
            hello = channel.greeting(GREETING_TIMEOUT_S)
        except BaseException:  # a signal while it starts: no driver left behind
            channel.close()
            raise
        reply = hello.reply or {}
        expected = built_from(self.binary)
        problem = (
            f"it did not greet ({hello.how})" if hello.reply is None
            else "it is not a qthrottle driver" if reply.get("driver") != "qthrottle"
            else f"it speaks protocol {reply.get('protocol')}, not {PROTOCOL_VERSION}"
            if reply.get("protocol") != PROTOCOL_VERSION
            else f"it was built from {reply.get('build')}, but its cache entry is {expected}"
            if expected is not None and reply.get("build") != expected else None)
        if problem is not None:
            channel.close()
            output = hello.output.strip()
            raise DriverError(f"cannot use the driver {self.binary}: {problem}"
                              + (f"\n{output}" if output else ""))
        self._channel = channel
        self.operations = []

    def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def _request(self, command: Dict[str, Any]) -> Tuple[Dict[str, Any], str, Optional[Crash]]:
        """Send one command; its reply and what the C printed meanwhile, or a Crash if the
        run died (the harness's own failures too: timeout, dead driver, garbled reply)."""
        check_interrupted()
        channel = self._channel
        assert channel is not None, "driver closed"
        exchange = channel.request(command, self.timeout)
        if exchange.reply is None:
            assert exchange.failure is not None
            crash = Crash(exchange.failure, tuple(self.operations), exchange.output,
                          exchange.how)
            self.close()  # its state is unknown: a fresh process for the next run
            self._start()
            return {}, exchange.output, crash
        reply = exchange.reply
        if "crash" in reply:
            detail = reply["crash"]
            status = (f"signal {detail.get('signal')}" if "signal" in detail
                      else f"exit {detail.get('exit')}")
            crash = Crash(_classify(exchange.output, status), tuple(self.operations),
                          exchange.output, status)
            self.operations = []  # the fork server starts a fresh run
            return reply, exchange.output, crash
        if "error" in reply:
            raise DriverError(str(reply["error"]))
        return reply, exchange.output, None

    def apply(self, operation: Operation) -> StepResult:
        """Apply one timeline operation to the C throttle."""
        self.operations.append(operation)
        reply, output, crash = self._request(operation.to_json())
        if crash is not None:
            return StepResult(operation, crash=crash, output=output)
        return self._step(operation, reply, output)

    def _step(self, operation: Optional[Operation], reply: Dict[str, Any],
              output: str) -> StepResult:
        """A state reply as a StepResult; a reply without its fields is a harness failure."""
        try:
            return StepResult(
                operation,
                emitted=tuple(Emission(e["t"], e["event"], e["data"])
                              for e in reply["emitted"]),
                now=reply["now"], table=reply["table"], pending_timers=reply["pending_timers"],
                live_qobjects=reply["live_qobjects"], next_deadline=reply["next_deadline"],
                findings=tuple(_finding(f["kind"], f["detail"], output)
                               for f in reply["findings"]),
                output=output)
        except (KeyError, TypeError):
            return StepResult(operation, output=output, crash=self._garbled(reply, output))

    def _garbled(self, reply: Dict[str, Any], output: str) -> Crash:
        """A reply that decodes but is not what the command answers: the protocol broke."""
        shown = json.dumps(reply)[:200]
        self.close()
        self._start()
        return Crash(PROTOCOL_ERROR, tuple(self.operations), output,
                     f"unexpected reply from the driver: {shown}")

    def queue(self, event: str, data: EventData = None) -> StepResult:
        return self.apply(Queue(event, data))

    def advance(self, ns: int) -> StepResult:
        return self.apply(Advance(ns))

    def advance_to_next(self) -> StepResult:
        return self.apply(AdvanceToNext())

    def state(self) -> StepResult:
        reply, output, crash = self._request({"op": "state"})
        return (StepResult(None, crash=crash, output=output) if crash
                else self._step(None, reply, output))

    def log(self) -> List[Emission]:
        reply, _, _ = self._request({"op": "log"})
        return [Emission(e["t"], e["event"], e["data"]) for e in reply.get("log", [])]

    def hash(self, event: str, data: EventData) -> int | Crash:
        """The hash callback's value for a record of this event, or how it crashed."""
        reply, output, crash = self._request({"op": "hash", **_event_json(event, data)})
        if crash:
            return crash
        value = reply.get("hash")
        return value if isinstance(value, int) else self._garbled(reply, output)

    def equal(self, a: Tuple[str, EventData], b: Tuple[str, EventData]) -> bool | Crash:
        """equal(a, b) as GLib would call it (a is the stored key), or how it crashed."""
        reply, output, crash = self._request({"op": "equal", "a": _event_json(*a),
                                              "b": _event_json(*b)})
        if crash:
            return crash
        value = reply.get("equal")
        return value if isinstance(value, bool) else self._garbled(reply, output)

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
