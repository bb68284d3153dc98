"""qthrottle selfcheck: CrossHair checks the reference model's own contracts.

Every postcondition of the reference (model/throttle.py's transitions) is one
condition; CrossHair runs once
per contracted function, as a child process (``python -m crosshair check``),
in the tiny world of model/bounded.py, with a per-condition CPU-time budget.
Each condition ends PROVED (confirmed over all paths), COUNTEREXAMPLE (with
the inputs) or BUDGET EXHAUSTED (no counterexample within the budget: UNKNOWN,
never a pass). Then each seeded bug (engines/seeded/) is checked the same
way: the checker must fail on it.

Python API: ``run_selfcheck(timeout_s) -> SelfcheckReport``; its
``by_invariant()`` maps each invariant number to the model's conditions.
"""
# Dict/List/Optional/Tuple stay: Python 3.9 evaluates the dataclass annotations' typing.

from __future__ import annotations

import importlib
import inspect
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN, QthrottleError, Status
from qthrottle.harness.lifetime import command_dying_with_us
from qthrottle.model import bounded, throttle
from qthrottle.model.invariants import INVARIANTS

PROVED, COUNTEREXAMPLE, BUDGET_EXHAUSTED = Status.PROVED, Status.FALSIFIED, Status.UNKNOWN
# CrossHair's words for them, as the reports print them.
LABELS = {PROVED: "PROVED", COUNTEREXAMPLE: "COUNTEREXAMPLE", BUDGET_EXHAUSTED: "BUDGET EXHAUSTED"}
DEFAULT_TIMEOUT_S = 60.0  # CPU seconds per condition; the model needs about 1 to 6
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))

MODEL_PLUGIN = Path(bounded.__file__).with_name("crosshair_plugin.py")
SEEDED_PLUGIN = Path(__file__).with_name("seeded") / "crosshair_plugin.py"

_POST = re.compile(r'^\s*(?:""")?post(?:\[[^\]]*\])?:\s*(?P<expr>.+?)\s*#\s*invariants?\s+'
                   r'(?P<numbers>\d+(?:\s*,\s*\d+)*)\s*(?:""")?\s*$')
_BARE_POST = re.compile(r'^\s*(?:""")?post(?:\[[^\]]*\])?:')
_MESSAGE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<kind>info|error): (?P<text>.*)$")


class SelfcheckError(QthrottleError):
    """CrossHair could not run, or said something this module does not understand."""


@dataclass(frozen=True)
class Condition:
    """One postcondition, as CrossHair reports it (file:line)."""

    target: str  # the qualname CrossHair checks
    file: str
    line: int
    text: str  # the condition (a Python expression)
    invariants: Tuple[int, ...]

    @property
    def location(self) -> str:
        return f"{Path(self.file).name}:{self.line}"

    @property
    def name(self) -> str:
        return ".".join(self.target.split(".")[-2:])


@dataclass(frozen=True)
class ConditionResult:
    condition: Condition
    status: Status  # PROVED, COUNTEREXAMPLE (FALSIFIED) or BUDGET_EXHAUSTED (UNKNOWN)
    detail: str  # CrossHair's message: the counterexample, or why it is unknown
    seconds: float  # wall time of the CrossHair run of its target
    timeout_s: float  # the per-condition budget (CPU seconds)

    @property
    def label(self) -> str:
        return LABELS[self.status]

    def to_json(self) -> Dict[str, Any]:
        c = self.condition
        return {"target": c.target, "location": f"{c.file}:{c.line}", "condition": c.text,
                "invariants": list(c.invariants), "status": self.label,
                "detail": self.detail, "seconds": round(self.seconds, 2),
                "timeout_s": self.timeout_s}


@dataclass(frozen=True)
class SeededResult:
    name: str
    invariant: int
    what: str
    results: Tuple[ConditionResult, ...]

    @property
    def caught(self) -> bool:
        return any(r.status == COUNTEREXAMPLE for r in self.results)


@dataclass(frozen=True)
class SelfcheckReport:
    timeout_s: float
    model: Tuple[ConditionResult, ...]
    seeded: Tuple[SeededResult, ...]
    seconds: float  # wall time of the whole selfcheck
    crosshair: str  # CrossHair's version

    def by_invariant(self) -> Dict[int, List[ConditionResult]]:
        """Invariant number -> the model's conditions that check it (all of 1-8 as keys)."""
        table: Dict[int, List[ConditionResult]] = {number: [] for number in INVARIANTS}
        for result in self.model:
            for number in result.condition.invariants:
                table[number].append(result)
        return table

    @property
    def exit_code(self) -> int:
        """1 if model/ has a counterexample or a seeded bug was missed, 3 if a model
        condition only exhausted its budget, else 0."""
        if any(r.status == COUNTEREXAMPLE for r in self.model) or not all(
                s.caught for s in self.seeded):
            return EXIT_FALSIFIED
        if any(r.status != PROVED for r in self.model):
            return EXIT_UNKNOWN
        return EXIT_HOLDS

    def to_json(self) -> Dict[str, Any]:
        return {
            "crosshair": self.crosshair, "bounds": bounded.BOUNDS,
            "per_condition_timeout_s": self.timeout_s, "seconds": round(self.seconds, 2),
            "model": [r.to_json() for r in self.model],
            "by_invariant": {str(n): [f"{r.condition.target} ({r.condition.location}): "
                                      f"{r.label}" for r in results]
                             for n, results in self.by_invariant().items()},
            "seeded": [{"name": s.name, "invariant": s.invariant, "what": s.what,
                        "caught": s.caught, "results": [r.to_json() for r in s.results]}
                       for s in self.seeded],
            "exit": self.exit_code,
        }


# ----------------------------------------------------------------- targets

def _resolve(target: str) -> Tuple[type, str]:
    """The class and method name of a qualname module.Class.method."""
    module_name, class_name, method = target.rsplit(".", 2)
    cls = getattr(importlib.import_module(module_name), class_name)
    if not isinstance(cls, type):
        raise SelfcheckError(f"{target}: not a method of a class")
    return cls, method


def conditions_of(target: str) -> List[Condition]:
    """The postconditions CrossHair checks for a method: its own or the nearest
    base class's docstring (PEP 316), each with '# invariant(s) N, ...'."""
    cls, method = _resolve(target)
    for klass in cls.__mro__:
        function = klass.__dict__.get(method)
        if function is None or not inspect.isfunction(function):
            continue
        lines, start = inspect.getsourcelines(function)
        found = []
        for offset, line in enumerate(lines):
            if not _BARE_POST.match(line):
                continue
            match = _POST.match(line)
            if match is None:
                raise SelfcheckError(f"{inspect.getsourcefile(function)}:{start + offset}: "
                                     "a postcondition without '# invariant N'")
            found.append(Condition(target, str(inspect.getsourcefile(function)),
                                   start + offset, match["expr"],
                                   tuple(int(n) for n in match["numbers"].split(","))))
        if found:
            return found
    raise SelfcheckError(f"{target}: no postcondition to check")


def _contracted(cls: type) -> List[str]:
    """Qualnames of the methods of cls (its own) that have postconditions."""
    names = []
    for name, value in vars(cls).items():
        if inspect.isfunction(value) and value.__doc__ and any(
                _BARE_POST.match(line) for line in value.__doc__.splitlines()):
            names.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    return names


def model_targets() -> List[str]:
    """The reference's contracted functions: its transitions."""
    return _contracted(throttle.ThrottleModel)


# --------------------------------------------------------------- CrossHair

def _crosshair_command(target: str, plugin: Path, timeout_s: float) -> List[str]:
    # --extra_plugin takes several paths: it must not come just before the target.
    return [sys.executable, "-m", "crosshair", "check", "--extra_plugin", str(plugin),
            "--analysis_kind", "PEP316", "--report_all", "--per_condition_timeout",
            f"{timeout_s:g}", target]


_running: Set[subprocess.Popen[str]] = set()  # the CrossHair processes of this selfcheck


def _run_crosshair(command: List[str], env: Dict[str, str],
                   wall_limit: float) -> subprocess.CompletedProcess[str]:
    """One CrossHair process: in a process group of its own (killed whole on a timeout or
    when run_selfcheck stops), and dying with this process (harness/lifetime.py)."""
    with subprocess.Popen(command_dying_with_us(command), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        _running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=wall_limit)
        except BaseException:
            _kill_group(process)
            process.communicate()
            raise
        finally:
            _running.discard(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass  # gone already


def check_target(target: str, plugin: Path, timeout_s: float) -> List[ConditionResult]:
    """Run CrossHair on one contracted function; one result per postcondition."""
    conditions = conditions_of(target)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONOPTIMIZE"}  # -OO drops docstrings
    wall_limit = 3 * timeout_s * len(conditions) + 120
    start = time.perf_counter()
    try:
        done = _run_crosshair(_crosshair_command(target, plugin, timeout_s), env, wall_limit)
    except subprocess.TimeoutExpired:
        return [ConditionResult(c, BUDGET_EXHAUSTED, f"CrossHair still ran after "
                                f"{wall_limit:g} s wall; stopped", wall_limit, timeout_s)
                for c in conditions]
    except OSError as error:
        raise SelfcheckError(f"cannot run CrossHair: {error}") from error
    seconds = time.perf_counter() - start
    messages = [m for m in map(_MESSAGE.match, done.stdout.splitlines()) if m is not None]
    if done.returncode not in (0, 1) or (done.returncode == 1 and not any(
            m["kind"] == "error" for m in messages)):
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SelfcheckError(f"CrossHair failed on {target} (exit {done.returncode}): {tail}")
    return _results(target, conditions, messages, seconds, timeout_s)


def _results(target: str, conditions: List[Condition], messages: Sequence[re.Match[str]],
             seconds: float, timeout_s: float) -> List[ConditionResult]:
    own: Dict[Condition, re.Match[str]] = {}
    others = []
    for message in messages:
        condition = next((c for c in conditions if Path(c.file).resolve() == Path(
            message["file"]).resolve() and c.line == int(message["line"])), None)
        if condition is None:  # reported where the method is, quoting the condition
            condition = next((c for c in conditions if f": {c.text}" in message["text"]
                              and message["text"].startswith('"post')), None)
        if condition is None:
            others.append(message)
        else:
            own[condition] = message
    results = []
    for condition in conditions:
        said: Optional[re.Match[str]] = own.get(condition)
        if said is None and others:  # an exception in the body: refutes each condition
            said = others[0]
        if said is None:
            raise SelfcheckError(f"CrossHair reported nothing for {condition.location} "
                                 f"({target})")
        results.append(ConditionResult(condition, _status(said, target), said["text"],
                                       seconds, timeout_s))
    return results


def _status(message: re.Match[str], target: str) -> Status:
    text = message["text"]
    if message["kind"] == "error":
        if " when calling " not in text:
            raise SelfcheckError(f"CrossHair on {target}: {text}")
        return COUNTEREXAMPLE
    if text.startswith("Confirmed over all paths"):
        return PROVED
    if text.startswith("Not confirmed") or text.startswith("Unable to meet precondition"):
        return BUDGET_EXHAUSTED
    raise SelfcheckError(f"CrossHair on {target}: unexpected message: {text}")


def run_selfcheck(timeout_s: float = DEFAULT_TIMEOUT_S, jobs: int = DEFAULT_JOBS,
                  progress: Optional[Callable[[str], None]] = None) -> SelfcheckReport:
    """CrossHair on every contract of the reference, then on every seeded bug."""
    from qthrottle.engines.seeded import PACKAGE, SEEDED

    try:
        version = metadata.version("crosshair-tool")
    except metadata.PackageNotFoundError as error:
        raise SelfcheckError("CrossHair is not installed (pip install crosshair-tool)") \
            from error
    runs: List[Tuple[str, Path]] = [(t, MODEL_PLUGIN) for t in model_targets()]
    runs += [(f"{PACKAGE}.{t}", SEEDED_PLUGIN) for bug in SEEDED for t in bug.targets]
    for target, _ in runs:
        conditions_of(target)  # fail on a malformed contract before running anything
    start = time.perf_counter()

    def run(job: Tuple[str, Path]) -> List[ConditionResult]:
        results = check_target(job[0], job[1], timeout_s)
        if progress is not None:
            for result in results:
                progress(_line(result))
        return results

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        done = dict(zip((t for t, _ in runs), pool.map(run, runs)))
    except BaseException:  # a signal (core.Interrupted) or an error: CrossHair stops now
        for process in list(_running):
            _kill_group(process)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    model = tuple(r for t in model_targets() for r in done[t])
    seeded = tuple(SeededResult(bug.name, bug.invariant, bug.what,
                                tuple(r for t in bug.targets for r in done[f"{PACKAGE}.{t}"]))
                   for bug in SEEDED)
    return SelfcheckReport(timeout_s, model, seeded, time.perf_counter() - start, version)


# ---------------------------------------------------------------- printing

def _line(result: ConditionResult) -> str:
    c = result.condition
    numbers = ",".join(map(str, c.invariants))
    return (f"  {result.label:<17} inv {numbers:<6} {c.name:<40} {c.location:<16} "
            f"{result.seconds:5.1f} s (budget {result.timeout_s:g} s)")


def _detail(result: ConditionResult) -> str:
    text = result.detail if len(result.detail) <= 600 else result.detail[:600] + " ..."
    return f"      {result.condition.text}\n      -> {text}"


def format_report(report: SelfcheckReport) -> List[str]:
    lines = [f"qthrottle selfcheck: CrossHair {report.crosshair} on the reference model's "
             "contracts",
             f"bounds: {bounded.BOUNDS}; CrossHair budget {report.timeout_s:g} s CPU per "
             "condition",
             "", f"== model/ ({len(report.model)} conditions)"]
    for result in report.model:
        lines.append(_line(result))
        if result.status == COUNTEREXAMPLE:
            lines.append(_detail(result))
    lines += ["", "== seeded bugs (engines/seeded/): CrossHair must find each"]
    for bug in report.seeded:
        lines.append(f"  {'CAUGHT' if bug.caught else 'MISSED'}  {bug.name} (breaks invariant "
                     f"{bug.invariant}): {bug.what}")
        for result in bug.results:
            lines.append("  " + _line(result))
            if result.status == COUNTEREXAMPLE:
                lines.append("  " + _detail(result).replace("\n", "\n  "))
    lines += ["", "by invariant (model/):"]
    for number, results in report.by_invariant().items():
        counts = ", ".join(f"{sum(r.status == s for r in results)} {LABELS[s]}"
                           for s in (PROVED, COUNTEREXAMPLE, BUDGET_EXHAUSTED)
                           if any(r.status == s for r in results))
        lines.append(f"  {number}  {INVARIANTS[number]:<62} "
                     f"{counts or 'no condition (a property of the C, not of the model)'}")
    verdict = {EXIT_HOLDS: "every condition PROVED over all paths, every seeded bug caught",
               EXIT_FALSIFIED: "FALSIFIED: a counterexample in model/, or a seeded bug missed",
               EXIT_UNKNOWN: "UNKNOWN: no counterexample, but not every condition was proved "
                             "within its budget"}[report.exit_code]
    lines += ["", f"result: {verdict} ({report.seconds:.1f} s wall)"]
    return lines
