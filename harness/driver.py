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
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from qthrottle.core import QthrottleError, check_interrupted
from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, EventData, Operation, Queue

from .cache import built_from
from .protocol import CHANNEL_FAILURES, PROTOCOL_ERROR, PROTOCOL_VERSION, Channel, Exchange

# LeakSanitizer runs when the driver asks it to (a quiet throttle, shims/driver.c), not
# at exit: runs end with _exit, and the fork server never runs throttle code. It counts
# references from global memory and the heap only: at a quiet point the throttle is not
# running, so what only a dead stack slot or a register points to has leaked.
# color=never: the output is a pipe, so reports have no colours anyway, and a report no
# longer asks whether stderr is a terminal for every line it prints (~170 ioctls).
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:leak_check_at_exit=0:halt_on_error=1:abort_on_error=0:"
                    "color=never:symbolize=1",
    "LSAN_OPTIONS": "use_stacks=0:use_registers=0",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}
# The process that runs batches (Driver.run_batch): the same, reports not symbolized.
UNSYMBOLIZED_ENV = {name: value.replace("symbolize=1", "symbolize=0") if name == "ASAN_OPTIONS"
                    else value + ":symbolize=0" if name == "UBSAN_OPTIONS" else value
                    for name, value in SANITIZER_ENV.items()}
# Timelines per batch command, at most: after a run that ends in a fresh process (a
# crash, a run that cannot start over in place) the rest of a batch is sent again, each
# time twice as many as the last command ran (a case where most runs end so sends few).
BATCH_TIMELINES = 32
# Batch processes of a Driver: two batches in flight, and one for whoever waits for one.
BATCH_PROCESSES = 3
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
class KeysCheck:
    """The hash and equality callbacks called directly on one to three records, as GLib
    calls them: every equal(stored = a, lookup = b), row by row, then every hash."""

    records: Tuple[Tuple[str, EventData], ...]

    def to_json(self) -> Dict[str, Any]:
        return {"op": "keys", "records": [_event_json(*r) for r in self.records]}


@dataclass(frozen=True)
class Keys:
    """What the callbacks said: equal[i][j] = equal(records[i], records[j]), hash[i]."""

    equal: Tuple[Tuple[bool, ...], ...]
    hash: Tuple[int, ...]


Command = Union[Operation, KeysCheck]  # one step of a batch


@dataclass(frozen=True)
class StepResult:
    """What one operation (or key check: keys) did on the C side."""

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
    keys: Optional[Keys] = None  # a KeysCheck's answer (then operation is None)


@dataclass
class RunResult:
    """A whole timeline replayed from a fresh start."""

    steps: List[StepResult] = field(default_factory=list)
    settled: bool = False  # the last step is the clock run on to a quiet throttle (run_batch)

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


class _Process:
    """One driver process of a Driver: its channel, whether its run is fresh (no command
    served since the run began), whether it has a batch whose results are not read."""

    def __init__(self, channel: Channel, symbolized: bool) -> None:
        self.channel = channel
        self.symbolized = symbolized
        self.fresh = True
        self.busy = False
        # A reset sent ahead (Driver.reset_ahead) whose reply is not read yet: None, or
        # what its sending gave (an Exchange when it failed, else "sent").
        self.reset_ahead: Optional[Union[Exchange, str]] = None


@dataclass
class Batch:
    """Timelines on their way through a batch process (Driver.start_batch), read back
    by Driver.finish_batch."""

    process: _Process
    timelines: Sequence[Sequence[Command]]
    settle: int
    failed: Optional[Exchange]  # the first command could not be sent
    sent: int = BATCH_TIMELINES  # timelines in the last batch command


class Driver:
    """A persistent driver process for one build.

    Commands one at a time (apply, run, hash, ...) go to a process whose sanitizer
    reports are symbolized (function, file and line of each frame); batches
    (run_batch) go to other ones, started when first needed, whose reports are not:
    symbolizing takes a fifth of a second per report, and a search that crashes the C
    in many runs only needs to know how (the kind of report). Up to BATCH_PROCESSES
    batches run at once (start_batch, finish_batch): the C runs one while Python reads
    another.

    >>> with Driver(build.binary) as d:
    ...     d.queue("RTC_CHANGE", {"offset": 1, "qom-path": "/rtc"})
    """

    def __init__(self, binary: Path, timeout: float = 10.0) -> None:
        self.binary = Path(binary)
        self.timeout = timeout
        self.operations: List[Operation] = []
        self._steps: Optional[_Process] = None
        self._batches: List[_Process] = []
        self.runs_in_place = 0  # batch runs that started over in the process of the last
        self._steps = self._open(symbolize=True)

    def __repr__(self) -> str:
        return f"Driver({str(self.binary)!r})"

    def __enter__(self) -> Driver:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, symbolize: bool) -> _Process:
        """A fresh driver process, checked to be a qthrottle driver of the expected build."""
        env = dict(os.environ)
        env.update(SANITIZER_ENV if symbolize else UNSYMBOLIZED_ENV)
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
        self.operations = []
        return _Process(channel, symbolize)

    def _restart(self, process: _Process) -> None:
        """A fresh process in place of @process, whose state is unknown."""
        process.channel.close()
        process.channel = self._open(process.symbolized).channel
        process.fresh, process.busy = True, False

    def close(self) -> None:
        for process in [*([self._steps] if self._steps else []), *self._batches]:
            process.channel.close()
        self._steps, self._batches = None, []

    def _request(self, command: Dict[str, Any]) -> Tuple[Dict[str, Any], str, Optional[Crash]]:
        """Send one command; its reply and what the C printed meanwhile, or a Crash if the
        run died (the harness's own failures too: timeout, dead driver, garbled reply)."""
        check_interrupted()
        process = self._steps
        assert process is not None, "driver closed"
        self._collect_reset(process)
        process.fresh = command.get("op") == "reset"
        return self._interpret(process, process.channel.request(command, self.timeout))

    def _collect_reset(self, process: _Process) -> None:
        """The reply of a reset sent ahead, read (a failure restarts the process)."""
        sent, process.reset_ahead = process.reset_ahead, None
        if sent is not None:
            self._interpret(process, sent if isinstance(sent, Exchange)
                            else process.channel.receive(self.timeout))

    def _interpret(self, process: _Process, exchange: Exchange
                   ) -> Tuple[Dict[str, Any], str, Optional[Crash]]:
        """A reply, or the Crash that ended the run (then the next run is a fresh one)."""
        if exchange.reply is None:
            assert exchange.failure is not None
            crash = Crash(exchange.failure, tuple(self.operations), exchange.output,
                          exchange.how)
            self._restart(process)  # its state is unknown: a fresh process for the next run
            return {}, exchange.output, crash
        reply = exchange.reply
        if "crash" in reply:
            detail = reply["crash"]
            status = (f"signal {detail.get('signal')}" if "signal" in detail
                      else f"exit {detail.get('exit')}")
            crash = Crash(_classify(exchange.output, status), tuple(self.operations),
                          exchange.output, status)
            self.operations = []  # the fork server starts a fresh run
            process.fresh = True
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

    def _step(self, operation: Optional[Operation], reply: Dict[str, Any], output: str,
              process: Optional[_Process] = None) -> StepResult:
        """A state (or keys) reply as a StepResult; a reply without its fields is a harness
        failure."""
        try:
            if "equal" in reply and isinstance(reply["hash"], list):
                return StepResult(None, output=output, keys=Keys(
                    tuple(tuple(bool(e) for e in row) for row in reply["equal"]),
                    tuple(int(h) for h in reply["hash"])))
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
            return StepResult(operation, output=output,
                              crash=self._garbled(reply, output, process))

    def _garbled(self, reply: Dict[str, Any], output: str,
                 process: Optional[_Process] = None) -> Crash:
        """A reply that decodes but is not what the command answers: the protocol broke."""
        shown = json.dumps(reply)[:200]
        broken = process or self._steps
        assert broken is not None, "driver closed"
        self._restart(broken)
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

    def keys(self, check: KeysCheck) -> StepResult:
        """The callbacks on @check's records; a crash ends the run."""
        reply, output, crash = self._request(check.to_json())
        return (StepResult(None, crash=crash, output=output) if crash
                else self._step(None, reply, output))

    def reset(self) -> None:
        """Start a fresh run: empty table, clock at 0, no emissions. A run that served no
        command yet is one already; a reset sent ahead only has its reply read."""
        process = self._steps
        assert process is not None, "driver closed"
        if process.reset_ahead is not None:
            check_interrupted()
            self._collect_reset(process)
        elif not process.fresh:
            self._request({"op": "reset"})
        self.operations = []

    def reset_ahead(self) -> None:
        """Send the next run's reset now and read its reply at the next command: the fork
        server ends the run and starts a fresh one (an exit and a fork, ~1-2 ms under
        the sanitizers) while the harness works on. For a caller done with the run."""
        process = self._steps
        if process is None or process.fresh or process.reset_ahead is not None:
            return
        process.fresh = True
        failed = process.channel.send({"op": "reset"})
        process.reset_ahead = failed if failed is not None else "sent"
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

    def run_batch(self, timelines: Sequence[Sequence[Command]], settle: int = 0
                  ) -> List[RunResult]:
        """Each timeline from a fresh start, as run() replays it (a KeysCheck as keys()
        does), stopping at a crash; then, if @settle > 0 and the throttle is not quiet,
        the clock advanced by @settle (a last step Advance(settle): RunResult.settled).
        A whole batch per round trip. A run the harness could not finish (a hang, a dead
        driver, a garbled reply) is the last: the timelines after it are not run."""
        return self.finish_batch(self.start_batch(timelines, settle))

    def start_batch(self, timelines: Sequence[Sequence[Command]], settle: int = 0) -> Batch:
        """run_batch's timelines sent to a batch process of their own; finish_batch reads
        their results. Until then the process runs them while the caller does other work."""
        check_interrupted()
        process = next((p for p in self._batches if not p.busy), None)
        if process is None:
            assert len(self._batches) < BATCH_PROCESSES, "every batch process is busy"
            process = self._open(symbolize=False)
            self._batches.append(process)
        process.busy = True
        return Batch(process, timelines, settle,
                     self._send(process, timelines[:BATCH_TIMELINES], settle),
                     min(len(timelines), BATCH_TIMELINES))

    def finish_batch(self, batch: Batch) -> List[RunResult]:
        """The results of a batch start_batch sent (see run_batch)."""
        results: List[RunResult] = []
        failed = batch.failed
        try:
            while True:
                done = len(results)
                results += self._read(batch, done, failed)
                crash = results[-1].crash if results else None
                if len(results) == len(batch.timelines) or (
                        crash is not None and crash.kind in CHANNEL_FAILURES):
                    return results
                check_interrupted()
                batch.sent = min(len(batch.timelines) - len(results),
                                 max(1, 2 * (len(results) - done)), BATCH_TIMELINES)
                failed = self._send(batch.process,
                                    batch.timelines[len(results):len(results) + batch.sent],
                                    batch.settle)
        except DriverError:
            self._restart(batch.process)  # replies of the batch may still be coming
            raise
        finally:
            batch.process.busy = False

    def cancel_batch(self, batch: Batch) -> None:
        """A batch whose results nobody will read: its process starts afresh."""
        if batch.process.busy:
            self._restart(batch.process)

    def _send(self, process: _Process, timelines: Sequence[Sequence[Command]],
              settle: int) -> Optional[Exchange]:
        """@timelines as one batch command, from a fresh run."""
        if not process.fresh:
            self._restart(process)
            process.busy = True
        process.fresh = False
        return process.channel.send(
            {"op": "batch", "timelines": [[op.to_json() for op in t]
                                          for t in timelines],
             "settle": settle, "mark": process.channel.mark}, marked=True)

    def _read(self, batch: Batch, done: int, failed: Optional[Exchange]) -> List[RunResult]:
        """The results of the batch command sent for @batch's timelines from @done on, up
        to the first that ends in a fresh process (a crash, or a run that could not start
        over in place), which is included."""
        process, settle = batch.process, batch.settle
        results: List[RunResult] = []
        for timeline in batch.timelines[done:done + batch.sent]:
            result = RunResult()
            results.append(result)
            self.operations = []
            for operation in timeline:
                if not self._batch_step(process, result, operation, failed):
                    return results
            last = next((s for s in reversed(result.steps) if s.keys is None), None)
            if settle and last is not None and (last.table or last.pending_timers):
                result.settled = True
                if not self._batch_step(process, result, Advance(settle), None):
                    return results
            reply, output, crash = self._interpret(process, process.channel.receive(
                self.timeout))
            self.runs_in_place += bool(reply.get("fresh"))
            if crash is not None or not reply.get("fresh"):
                # A fresh process serves what follows ({"reset": true}), or the crash of
                # the next run's start, which that fresh process will show again.
                if crash is None and not reply.get("reset"):
                    self._garbled(reply, output, process)  # neither: the protocol broke
                process.fresh = True
                return results
        process.fresh = True
        return results

    def _batch_step(self, process: _Process, result: RunResult, command: Command,
                    failed: Optional[Exchange]) -> bool:
        """The next step of a batch into @result (@failed: the batch could not be sent);
        False when the run ended (a crash, or a reply that broke the protocol)."""
        operation = None if isinstance(command, KeysCheck) else command
        if operation is not None:
            self.operations.append(operation)
        reply, output, crash = self._interpret(
            process, failed or process.channel.receive(self.timeout))
        if crash is not None:
            result.steps.append(StepResult(operation, crash=crash, output=output))
            return False
        step = self._step(operation, reply, output, process)
        result.steps.append(step)
        return step.crash is None
