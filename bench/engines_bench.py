"""Engines compared: time to first counterexample and its length, per buggy case study.

Run: python bench/engines_bench.py [--cap S] [--repeats N] [--max-length L] [--quick]

For every buggy case study (cases/__init__.py: EXPECTED, and MAY_ALSO_BREAK marked
"may") and every invariant it is meant to break, four engines, each capped at
--cap seconds per run, --repeats runs (seeds 1..N), medians:
  proofs     qthrottle's z3 proofs (proofs.engine.prove: every theorem, fixed order);
  stateful   qthrottle's stateful engine (stateful.search, profile quick);
  random     plain random timelines: the stateful engine's own rules and generators,
             drawn with a seeded PRNG (no search, no shrinking), checked by the same
             state machine, so by the same oracle;
  libFuzzer  a libFuzzer target over the same driver (harness/shims/fuzz_entry.c),
             whose oracle is what a fuzzer has: sanitizer reports and shim aborts.
An exhaustive search over every timeline of a small alphabet, up to --max-length
operations, gives the shortest counterexample to compare lengths with. For
Debian's QEMU 7.2 and 10.0.x trees (when cached): proof time, full `qthrottle
verify` time and driver throughput. Prints one table, figures only: these machines
are shared and noisy. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import inspect
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Tuple

import harness_bench
import hypothesis
import proofs_bench
import z3
from hypothesis import find
from hypothesis.control import BuildContext
from hypothesis.internal.conjecture.data import ConjectureData
from hypothesis.stateful import RULE_MARKER, RuleBasedStateMachine

from qthrottle.cases import EXPECTED, MAY_ALSO_BREAK
from qthrottle.engines.bounds import PROFILES, search_settings
from qthrottle.engines.generate import event_data
from qthrottle.engines.stateful import (
    CompareKeys,
    Subject,
    Violation,
    make_machine,
    replay,
    search,
)
from qthrottle.harness.build import BuildError, build_fuzzer
from qthrottle.harness.driver import SANITIZER_ENV, Driver, HarnessFailure, RunResult, _classify
from qthrottle.harness.qemu_sources import RELEASES, QemuSourceError, cached_tree
from qthrottle.harness.target import Target, resolve
from qthrottle.model import invariants as inv
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.members import string_values
from qthrottle.model.qapi_schema import load_schema
from qthrottle.model.timeline import Advance, AdvanceToNext, Operation, Queue, format_ns
from qthrottle.proofs.engine import PROVEN_INVARIANTS, ProofReport, prove
from qthrottle.proofs.replay import replay as replay_proof
from qthrottle.proofs.solve import DEFAULT_TIMEOUT_MS, FALSIFIED
from qthrottle.review.target_policy import open_subject

INF = float("inf")
PROFILE = PROFILES["quick"]  # the profile `qthrottle verify` uses by default
ENGINES = ("proofs", "stateful", "random", "libFuzzer")
STOPPED = "stopped by the benchmark"
CELL = 18  # width of one engine's cell: time, k/n, length
LABEL = 27  # width of the case / invariant column
ALL = frozenset(INVARIANTS)
SCOPE = {"proofs": frozenset(PROVEN_INVARIANTS)}  # 8 is a property of runs


@dataclass
class Run:
    """One engine run on one case."""

    found: Dict[int, Tuple[float, int]] = field(default_factory=dict)  # inv -> (s, length)
    note: str = ""  # why it ended early, or what the fuzzer's crash was
    rate: float = 0.0  # operations per second (libFuzzer: executions per second)


@dataclass
class Symbol:
    """One letter of the exhaustive search's alphabet."""

    label: str
    operation: Any  # an Operation, or CompareKeys (the stateful engine's compare step)


@dataclass
class CaseResult:
    name: str
    wanted: List[int]
    runs: Dict[str, List[Run]]
    shortest: Dict[int, Tuple[Optional[List[Symbol]], int, float]]  # inv -> (timeline, tried, s)
    symbols: List[Symbol]
    notes: List[str]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ alphabet

FIND_SETTINGS = search_settings(5000)  # shrinks: find() gives the simplest such event


def alphabet(subject: Subject) -> List[Symbol]:
    """The operations the exhaustive search enumerates (the fuzzer's, without the compares).

    BLOCK_IO_ERROR events: report and stop for one device (report also without its
    optional members), and for the two devices whose names have equal g_str_hash;
    another throttled event; clock steps of half and one interval, and to the next
    deadline; two compare steps. Each event is the simplest the stateful engine's
    generator (generate.event_data) draws with those values.
    """
    block = subject.catalog.events[inv.STOP_EVENT]
    paths = string_values("qom-path")
    device, twin_a, twin_b = paths[0], paths[-2], paths[-1]

    def block_io_error(path: str, action: str, optional: bool) -> Tuple[str, Any]:
        def wanted(data: Any) -> bool:
            return (data["qom-path"] == path and data["action"] == action and all(
                (m.name in data) == optional for m in block.members if m.optional))
        return block.name, find(event_data(block), wanted, settings=FIND_SETTINGS,
                                random=Random(0))

    report, stop = block_io_error(device, "report", True), block_io_error(device, "stop", True)
    twin_report = block_io_error(twin_a, "report", True)
    twin_stop = block_io_error(twin_b, "stop", True)
    other = next(e for e in subject.events.focus
                 if subject.policy.throttled(e.name) and e.name != block.name)
    rate = max(subject.policy.rates.values())
    return [
        Symbol("report", Queue(*report)),
        Symbol("stop", Queue(*stop)),
        Symbol("report-bare", Queue(*block_io_error(device, "report", False))),
        Symbol("report-twinA", Queue(*twin_report)),
        Symbol("stop-twinB", Queue(*twin_stop)),
        Symbol(other.name, Queue(other.name, find(event_data(other), lambda _: True,
                                                  settings=FIND_SETTINGS, random=Random(0)))),
        Symbol(f"+{format_ns(rate // 2)}", Advance(rate // 2)),
        Symbol(f"+{format_ns(rate)}", Advance(rate)),
        Symbol("next", AdvanceToNext()),
        Symbol("cmp(stop,report)", CompareKeys(stop, report)),
        Symbol("cmp(twinA,twinB)", CompareKeys(twin_report, twin_stop)),
    ]


def shortest(subject: Subject, symbols: List[Symbol], invariant: int, max_length: int
             ) -> Tuple[Optional[List[Symbol]], int, float]:
    """The first timeline, in order of length, that breaks @invariant; timelines tried; s.

    Checked by stateful.replay, the stateful engine's machine, with every other
    invariant set aside as a search sets aside the ones it already found.
    """
    ignored = frozenset(INVARIANTS) - {invariant}
    start, tried = time.perf_counter(), 0
    for length in range(1, max_length + 1):
        for timeline in itertools.product(symbols, repeat=length):
            tried += 1
            violation, _ = replay(subject, ignored, [s.operation for s in timeline])
            if violation is not None:
                assert violation.invariant == invariant
                return list(timeline), tried, time.perf_counter() - start
    return None, tried, time.perf_counter() - start


# ------------------------------------------------------------------ proofs

class _ReplayedTimeline(Driver):
    """Records the timeline a proof's replay runs; direct callback calls are one compare step."""

    steps = 1

    def run(self, operations: Any) -> RunResult:
        self.steps = len(operations)
        return super().run(operations)


def proof_run(report: ProofReport, lengths: Dict[int, int]) -> Run:
    """Each invariant's time: from the start of prove() to its first FALSIFIED law."""
    elapsed = report.seconds - sum(r.seconds for r in report.results)  # the event space
    run = Run()
    for result in report.results:
        elapsed += result.seconds
        if result.status == FALSIFIED and result.invariant not in run.found:
            run.found[result.invariant] = (elapsed, lengths.get(result.invariant, 0))
    return run


def proof_lengths(report: ProofReport, binary: Path) -> Tuple[Dict[int, int], List[str]]:
    """The length of each invariant's first counterexample, replayed against the C."""
    lengths: Dict[int, int] = {}
    notes = []
    with _ReplayedTimeline(binary) as driver:
        for result in report.results:
            if result.status != FALSIFIED or result.invariant in lengths:
                continue
            driver.steps = 1
            confirmed, _ = replay_proof(result.replay_kind, driver, result.events)
            lengths[result.invariant] = driver.steps
            if not confirmed:
                notes.append(f"proof of invariant {result.invariant} ({result.law}): "
                             "its replay did not confirm it")
    return lengths, notes


# ------------------------------------------------------------------ stateful

class Deadline:
    """When the benchmark ends a search, whether it did, and the operations applied."""

    def __init__(self, at: float = INF) -> None:
        self.at = at
        self.reached = False
        self.applied = 0


@contextmanager
def stoppable(driver: Driver, deadline: Deadline) -> Iterator[None]:
    """Lets the benchmark end a search: past the deadline the next driver call raises
    HarnessFailure, and stateful.search returns what it found (as UNKNOWN, or as flaky
    when hypothesis was replaying an example: either way, not a finding).
    Counts the timeline operations applied to the C meanwhile."""
    apply, reset = driver.apply, driver.reset

    def guard() -> None:
        if time.perf_counter() > deadline.at:
            deadline.reached = True
            raise HarnessFailure(STOPPED)

    def guarded_apply(op: Operation) -> Any:
        guard()
        deadline.applied += 1
        return apply(op)

    def guarded_reset() -> None:
        guard()
        reset()

    driver.apply = guarded_apply  # type: ignore[method-assign]
    driver.reset = guarded_reset  # type: ignore[method-assign]
    try:
        yield
    finally:
        del driver.apply, driver.reset


def stateful_run(subject: Subject, seed: int, wanted: FrozenSet[int], cap: float) -> Run:
    times: Dict[int, float] = {}
    start = time.perf_counter()
    deadline = Deadline(start + cap)
    with stoppable(subject.driver, deadline):
        def found(message: str) -> None:
            match = re.search(r"invariant (\d+)", message)
            assert match is not None, message
            times[int(match.group(1))] = time.perf_counter() - start
            if wanted <= times.keys():
                deadline.at = 0  # nothing left to time: end the search at its next step

        result = search(subject, PROFILE, seed, progress=found)
    elapsed = time.perf_counter() - start
    run = Run({k: (t, len(result.falsified[k].steps)) for k, t in times.items()},
              rate=deadline.applied / elapsed)
    if result.unknown and not deadline.reached:
        run.note = f"UNKNOWN: {result.unknown}"
    return run


# ------------------------------------------------------------------ random

def machine_rules(machine: type[RuleBasedStateMachine]) -> List[Any]:
    """The rules of a state machine, each with its argument strategies, as hypothesis
    records them on the rule methods."""
    return [getattr(member, RULE_MARKER) for _, member in inspect.getmembers(machine)
            if getattr(member, RULE_MARKER, None) is not None]


def random_run(subject: Subject, seed: int, wanted: FrozenSet[int], cap: float) -> Run:
    """Timelines of PROFILE.steps rules, each rule and its arguments drawn at random.

    The strategies are drawn from with a seeded PRNG through hypothesis's
    ConjectureData: there is no public API for that, and these internals are those
    of the hypothesis release the venv installs (printed in the header). As in a
    search, an invariant found is set aside and the search goes on.
    """
    rng = Random(seed)
    run, counted = Run(), Deadline()
    ignored: FrozenSet[int] = frozenset()
    machine = make_machine(subject, ignored)
    rules = machine_rules(machine)
    start = time.perf_counter()
    with stoppable(subject.driver, counted):
        while time.perf_counter() - start < cap and not wanted <= run.found.keys():
            state = machine()
            data = ConjectureData(random=rng)
            try:
                with BuildContext(data, wrapped_test=None):  # type: ignore[arg-type]
                    for _ in range(PROFILE.steps):
                        rule = rng.choice(rules)
                        rule.function(state, **{name: data.draw(strategy)
                                                for name, strategy in rule.arguments.items()})
            except Violation as violation:
                run.found[violation.invariant] = (time.perf_counter() - start,
                                                  len(state.records))  # type: ignore[attr-defined]
                ignored |= {violation.invariant}
                machine = make_machine(subject, ignored)
                rules = machine_rules(machine)
            except HarnessFailure as failure:
                run.note = f"UNKNOWN: {failure}"
                break
    run.rate = counted.applied / (time.perf_counter() - start)
    return run


# ------------------------------------------------------------------ libFuzzer

def fuzz_run(binary: Path, commands: Path, seed: int, cap: float, work: Path) -> Run:
    """One libFuzzer run until its first crash or the cap; wall time to the crash."""
    out = work / f"seed-{seed}"
    out.mkdir()
    env = {**os.environ, **SANITIZER_ENV, "QTHROTTLE_FUZZ_COMMANDS": str(commands)}
    command = [str(binary), f"-seed={seed}", f"-max_total_time={max(1, round(cap))}",
               "-detect_leaks=0", "-print_final_stats=1", f"-artifact_prefix={out}/"]
    log = out / "log"
    start = time.perf_counter()
    with log.open("w") as stream:
        subprocess.run(command, env=env, stdout=stream, stderr=subprocess.STDOUT,
                       timeout=cap + 120, check=False)
    elapsed = time.perf_counter() - start
    text = log.read_text(errors="replace")
    run = Run()
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    run.rate = int(executed.group(1)) / elapsed if executed else 0.0
    crashes = sorted(out.glob("crash-*"))
    if not crashes:
        stopped = re.search(r"ERROR: libFuzzer: ([\w -]+)", text)
        if stopped:  # out-of-memory, timeout: the fuzzer's own limits, no finding
            run.note = f"libFuzzer stopped: {stopped.group(1).strip()}"
        return run
    kind = _classify(text, "deadly signal")
    number = inv.crash_invariant(kind)
    # Replayed with the commands echoed: the operations it ran up to the crash.
    again = subprocess.run([str(binary), str(crashes[0])], env={
        **env, "QTHROTTLE_FUZZ_ECHO": "1"}, capture_output=True, text=True, check=False)
    length = again.stderr.count("fuzz_entry: {")
    run.note = kind + ("" if again.returncode else " (did not reproduce)")
    if number is not None:
        run.found[number] = (elapsed, length)
    return run


def fuzz_commands(symbols: List[Symbol], path: Path) -> Path:
    commands = [s.operation.to_json() for s in symbols
                if not isinstance(s.operation, CompareKeys)]
    path.write_text(json.dumps(commands, indent=1))
    return path


# ------------------------------------------------------------------ one case

def bench_case(name: str, args: argparse.Namespace, work: Path) -> CaseResult:
    target = resolve(name)
    extraction = target.extract()
    wanted = sorted(EXPECTED[name] | MAY_ALSO_BREAK.get(name, frozenset()))
    seeds = range(1, args.repeats + 1)
    runs: Dict[str, List[Run]] = {engine: [] for engine in ENGINES}
    notes: List[str] = []
    with open_subject(target) as subject:
        catalog, binary = subject.catalog, subject.driver.binary
        symbols = alphabet(subject)
        progress(f"{name}: exhaustive search for {wanted}")
        found = {k: shortest(subject, symbols, k, args.max_length) for k in wanted}

        progress(f"{name}: proofs")
        reports = [prove(extraction, catalog, name, DEFAULT_TIMEOUT_MS) for _ in seeds]
        lengths, proof_notes = proof_lengths(reports[0], binary)
        notes += proof_notes
        runs["proofs"] = [proof_run(report, lengths) for report in reports]

        for seed in seeds:
            progress(f"{name}: stateful engine, seed {seed}")
            runs["stateful"].append(stateful_run(subject, seed, frozenset(wanted), args.cap))
            progress(f"{name}: random timelines, seed {seed}")
            runs["random"].append(random_run(subject, seed, frozenset(wanted), args.cap))
    try:
        fuzzer = build_fuzzer(extraction, tuple(catalog.events)).binary
    except BuildError as error:
        notes.append(f"libFuzzer: not run: {error}")
    else:
        fuzz_work = work / name
        fuzz_work.mkdir()
        commands = fuzz_commands(symbols, fuzz_work / "commands.json")
        for seed in seeds:
            progress(f"{name}: libFuzzer, seed {seed}")
            runs["libFuzzer"].append(fuzz_run(fuzzer, commands, seed, args.cap, fuzz_work))
    return CaseResult(name, wanted, runs, found, symbols, notes)


# ------------------------------------------------------------------ real QEMU

def driver_ops_per_s(binary: Path, repeats: int) -> float:
    """harness_bench's throughput figure: its timeline, applied operation by operation."""
    ops = harness_bench.timeline(harness_bench.OPERATIONS)
    with Driver(binary) as driver:
        def once() -> float:
            driver.reset()
            start = time.perf_counter()
            for op in ops:
                driver.apply(op)
            return len(ops) / (time.perf_counter() - start)
        return harness_bench.median_of(repeats, once)


def bench_qemu(args: argparse.Namespace) -> List[str]:
    rows = []
    for release, version in RELEASES.items():
        try:
            tree = cached_tree(release)
        except QemuSourceError:
            tree = None
        if tree is None:
            rows.append(f"QEMU {version}: not cached (run `qthrottle fetch-qemu`)")
            continue
        target: Target = resolve(str(tree))
        assert target.qapi_dir is not None
        extraction, catalog = target.extract(), load_schema(target.qapi_dir)
        progress(f"QEMU {version}: proofs")
        proof_times, report = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            report = prove(extraction, catalog, target.name, DEFAULT_TIMEOUT_MS)
            proof_times.append(time.perf_counter() - start)
        assert report is not None
        binary = target.build().binary  # verify's times below are with the build cached
        verify_times, codes = [], []
        for seed in range(1, args.repeats + 1):
            progress(f"QEMU {version}: qthrottle verify --seed {seed}")
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "qthrottle", "verify", str(tree),
                                   "--seed", str(seed), "--profile", PROFILE.name],
                                  capture_output=True, text=True, check=False)
            verify_times.append(time.perf_counter() - start)
            codes.append(done.returncode)
        progress(f"QEMU {version}: driver throughput")
        ops = driver_ops_per_s(binary, args.repeats)
        rows.append(f"QEMU {version:<5} {tree.name:<34} {statistics.median(proof_times):>6.1f}s "
                    f"{proofs_bench.verdict(report):<22} {statistics.median(verify_times):>7.1f}s "
                    f"exit {','.join(map(str, codes)):<10} {ops:>8.0f}")
    return rows


# ------------------------------------------------------------------ the table

def median(values: List[float]) -> float:
    return statistics.median(values) if values else INF


def cell(runs: List[Run], invariants: List[int], cap: float, scope: FrozenSet[int]
         ) -> Tuple[str, float]:
    """time, found k/n and median length for the first counterexample of any of @invariants."""
    if not runs:
        return f"{'not run':^{CELL}}", INF
    if not scope & set(invariants):
        return f"{'(not its subject)':^{CELL}}", INF
    firsts = [min((r.found[k] for k in invariants if k in r.found), default=(INF, 0))
              for r in runs]
    t = median([s for s, _ in firsts])
    lengths = [n for s, n in firsts if s < INF]
    shown = f">{cap:.0f}s" if t == INF else f"{t:.1f}s"
    found = sum(1 for s, _ in firsts if s < INF)
    length = f"{statistics.median(lengths):g}" if lengths else "-"
    return f"{shown:>7} {f'{found}/{len(runs)}':>5} {length:>4}", t


def ratio(slow: float, fast: float, cap: float) -> str:
    if fast == INF or fast <= 0:
        return "-"
    value = (cap if slow == INF else slow) / fast
    shown = f"{value:.0f}x" if value >= 10 else f"{value:.1f}x" if value >= 1 else f"{value:.2f}x"
    return (">" if slow == INF else "") + shown


def rows_of(result: CaseResult, cap: float) -> List[str]:
    lines = []
    groups: List[Tuple[str, List[int]]] = []
    if len(result.wanted) > 1:
        groups.append(("any", result.wanted))
    groups += [(f"{k}" + (" (may)" if k not in EXPECTED[result.name] else ""), [k])
               for k in result.wanted]
    for label, invariants in groups:
        cells = {e: cell(result.runs[e], invariants, cap, SCOPE.get(e, ALL)) for e in ENGINES}
        mins = [result.shortest[k][0] for k in invariants]
        best = min((len(m) for m in mins if m is not None), default=None)
        exhaustive = str(best) if best is not None else "none"
        # qthrottle: the first of its two engines to produce the counterexample.
        qthrottle = min(cells["proofs"][1], cells["stateful"][1])
        lines.append(f"{result.name + ' / ' + label:<{LABEL}} "
                     + " | ".join(cells[e][0] for e in ENGINES)
                     + f" | {exhaustive:>8} | {ratio(cells['random'][1], qthrottle, cap):>9} "
                     f"{ratio(cells['libFuzzer'][1], qthrottle, cap):>9}")
    return lines


def found_at_all(result: CaseResult) -> str:
    """Per case: the runs in which each side found any invariant the case is meant to break."""
    def hits(engine: str) -> List[bool]:
        return [bool(set(r.found) & set(result.wanted)) for r in result.runs[engine]]

    qthrottle = [a or b for a, b in zip(hits("proofs"), hits("stateful"))]
    crashes = sorted({r.note for r in result.runs["libFuzzer"] if r.found})
    fuzzer = hits("libFuzzer")
    return (f"  {result.name:<18} qthrottle {sum(qthrottle)}/{len(qthrottle)}   "
            f"random {sum(hits('random'))}/{len(result.runs['random'])}   libFuzzer "
            + (f"{sum(fuzzer)}/{len(fuzzer)}" if fuzzer else "not run")
            + (f" ({', '.join(crashes)})" if crashes else ""))


def details(result: CaseResult) -> List[str]:
    lines = []
    for k in result.wanted:
        timeline, tried, seconds = result.shortest[k]
        shown = " ; ".join(s.label for s in timeline) if timeline else "none found"
        lines.append(f"  {result.name} / {k}: shortest: {shown}  ({tried} timelines, "
                     f"{seconds:.1f}s)")
    for engine in ("stateful", "random", "libFuzzer"):
        runs = result.runs[engine]
        if not runs:
            continue
        extra = sorted({k for r in runs for k in r.found} - set(result.wanted))
        notes = sorted({r.note for r in runs if r.note})
        unit = ("executions/s (inputs)" if engine == "libFuzzer"
                else "operations/s applied to the C driver")
        line = (f"  {result.name}: {engine}: {median([r.rate for r in runs]):.0f} {unit}")
        if notes:
            line += f"; {'; '.join(notes)}"
        if extra:
            line += f"; ALSO FOUND invariants {extra} (not expected)"
        lines.append(line)
    lines += [f"  {result.name}: {note}" for note in result.notes]
    return lines


def legend(symbols: List[Symbol]) -> List[str]:
    """One line per symbol; events of the first symbol's kind as their difference from it."""
    first = symbols[0]
    lines = [f"  {first.label:<17} {first.operation.describe()}"]
    for symbol in symbols[1:]:
        op, base = symbol.operation, first.operation
        if isinstance(op, Queue) and op.event == base.event and op.data and base.data:
            changed = {k: v for k, v in op.data.items() if base.data.get(k) != v}
            dropped = [k for k in base.data if k not in op.data]
            text = f"as {first.label}" + (f", but {json.dumps(changed)}" if changed else "") + (
                f", without {', '.join(dropped)}" if dropped else "")
        elif isinstance(op, CompareKeys):
            text = ("the stateful engine's compare step (equal and hash callbacks called "
                    "directly) on the two events named")
        else:
            text = op.describe()
        lines.append(f"  {symbol.label:<17} {text}")
    return lines


def header(args: argparse.Namespace) -> List[str]:
    clang = subprocess.run(["clang", "--version"], capture_output=True, text=True,
                           check=False).stdout.splitlines() if shutil.which("clang") else []
    return [
        "qthrottle engines benchmark, " + time.strftime("%Y-%m-%d %H:%M %Z"),
        "command: " + shlex.join([sys.executable, *sys.argv]),
        f"machine: {len(os.sched_getaffinity(0))} CPUs available, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " at start; "
        f"Python {platform.python_version()}, hypothesis {hypothesis.__version__}, "
        f"z3 {z3.get_version_string()}, {clang[0] if clang else 'no clang'}",
        f"bounds: cap {args.cap:g} s per run; {args.repeats} run(s), seeds 1..{args.repeats}; "
        f"stateful: {PROFILE.describe()}; random: timelines of {PROFILE.steps} steps; "
        f"z3: {DEFAULT_TIMEOUT_MS} ms per query; exhaustive: every timeline of up to "
        f"{args.max_length} operations over the alphabet below",
    ]


def report(args: argparse.Namespace, head: List[str], results: List[CaseResult],
           qemu: List[str]) -> str:
    n = args.repeats
    lines = head + [
        "",
        "Time to the first counterexample, per buggy case and per invariant it is meant to break",
        "(\"any\": the first of them; \"may\": MAY_ALSO_BREAK). Each engine cell: median time "
        f"over the {n} run(s)",
        f"(>{args.cap:g}s: not found within the cap in most runs), runs that found it k/{n}, "
        "median length (operations; a compare step is one).",
        "proofs: from the start of prove() to the invariant's first FALSIFIED law; length of "
        "its replay against the C.",
        "random: no shrinking. libFuzzer: wall time to its first crash, which counts for the "
        "invariant the crash breaks (7 or 8);",
        "length: the commands its crashing input ran, including the clock run out at the end "
        "of every input.",
        "shortest: exhaustive minimum over the alphabet. Ratios: engine time / qthrottle time "
        "(the faster of proofs and stateful).",
        "",
        f"{'case / invariant':<{LABEL}} " + " | ".join(f"{e:^{CELL}}" for e in ENGINES)
        + f" | {'shortest':>8} | {'random /':>9} {'fuzzer /':>9}",
        f"{'':<{LABEL}} " + " | ".join([f"{'time':>7} {'k/n':>5} {'len':>4}"] * 4)
        + f" | {'len':>8} | {'qthrottle':>9} {'qthrottle':>9}",
    ]
    for result in results:
        lines += rows_of(result, args.cap)
    lines += ["", "Bug found at all (any invariant the case is meant to break, within the cap; "
              "qthrottle: proofs or stateful engine):"]
    lines += [found_at_all(result) for result in results]
    if results:
        lines += ["", "alphabet (libFuzzer's: the same without the compare steps):"]
        lines += legend(results[0].symbols) + [""]
        for result in results:
            lines += details(result)
    lines += ["", "Real QEMU (Debian sources): proof time (all theorems) and verdict, full "
              f"`qthrottle verify --profile {PROFILE.name}` time",
              f"(build cached, seeds 1..{n}) and exit codes, driver throughput (operations/s, "
              "harness_bench's timeline); medians of " + str(n),
              f"{'release':<11} {'tree':<34} {'proofs':>7} {'verdict':<22} {'verify':>8} "
              f"{'exit codes':<15} {'ops/s':>8}", *qemu,
              "", "load average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per engine run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per engine (seeds 1..N)")
    parser.add_argument("--max-length", type=int, default=4,
                        help="longest timeline of the exhaustive search")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: --cap 5 --repeats 1 --max-length 3")
    parser.add_argument("--case", action="append", choices=[c for c, b in EXPECTED.items() if b],
                        help="only this buggy case (repeatable); real QEMU is then skipped")
    args = parser.parse_args()
    if args.quick:
        args.cap, args.repeats, args.max_length = 5.0, 1, 3
    head = header(args)
    cases = args.case or [name for name, broken in EXPECTED.items() if broken]
    with tempfile.TemporaryDirectory(prefix="engines-bench-") as work:
        results = [bench_case(name, args, Path(work)) for name in cases]
    qemu = [] if args.case else bench_qemu(args)
    print(report(args, head, results, qemu))


if __name__ == "__main__":
    main()
