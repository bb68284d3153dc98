"""Engines compared: time to the first (minimal) counterexample and its length, per buggy
case study; operations per second; the detection rate over seeds.

Run: python bench/engines_bench.py [--cap S] [--repeats N] [--max-length L] [--seeds N]
                                   [--quick] [--case C] [--json FILE]

For every buggy case study (cases/__init__.py: EXPECTED, and MAY_ALSO_BREAK marked
"may") and every invariant it is meant to break, five engines, each capped at --cap
seconds per run, --repeats runs (seeds 1..N), medians:
  proofs      qthrottle's z3 proofs (proofs.engine.prove: every theorem, fixed order);
  stateful    qthrottle's stateful engine (stateful.search, profile quick): the time to
              each invariant's counterexample, minimised and replayed;
  random      plain random timelines (sampling.plain_random: any event of the schema, any
              clock step, alike), run in the same batches and judged by the same oracle
              (engines/judge.py), not minimised;
  random+min  the same timelines, each failure minimised by the same minimiser
              (stateful.minimize) and replayed as the engine replays its own
              (stateful.replay): the time to a minimal counterexample;
  libFuzzer   a libFuzzer target over the same driver (harness/shims/fuzz_entry.c),
              whose oracle is what a fuzzer has: sanitizer reports and shim aborts.
An exhaustive search over every timeline of a small alphabet (engines/exhaustive.py),
up to --max-length operations, gives the shortest counterexample to compare lengths
with. Operations per second: the stateful engine's (operations the C ran and the
oracle judged, per second of search) against the driver's (one command at a time, and
the same in batches, not judged). Detection: per buggy case and seeded bug
(cases/seeded.py), the seeds of 1..--seeds in which the stateful engine finds it
(profile quick). For Debian's QEMU 7.2 and 10.0.x trees (when cached): proof time,
full `qthrottle verify` time and driver throughput. --json FILE writes one row per
case, invariant and engine. Prints figures only: these machines are shared and noisy.
Progress goes to stderr.
"""
from __future__ import annotations

import argparse
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
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import harness_bench
import hypothesis
import proofs_bench
import z3

from qthrottle.cases import EXPECTED, MAY_ALSO_BREAK, SCHEMA_DIR
from qthrottle.cases.seeded import SEEDED
from qthrottle.engines.bounds import PROFILES, SEARCH_BATCH, quiet_interval
from qthrottle.engines.exhaustive import Symbol, alphabet, shortest
from qthrottle.engines.judge import CompareKeys, command, judge_run
from qthrottle.engines.sampling import Sampler, member_pools, plain_random
from qthrottle.engines.stateful import (
    Subject,
    failing_prefix,
    minimize,
    replay,
    run_batched,
    search,
)
from qthrottle.harness.build import BuildError, build_fuzzer
from qthrottle.harness.driver import (
    SANITIZER_ENV,
    Batch,
    Command,
    Driver,
    HarnessFailure,
    RunResult,
    _classify,
)
from qthrottle.harness.qemu_sources import RELEASES, QemuSourceError, cached_tree
from qthrottle.harness.target import Target, resolve
from qthrottle.model import invariants as inv
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.qapi_schema import load_schema
from qthrottle.model.timeline import Queue
from qthrottle.proofs.engine import (
    PROVEN_INVARIANTS,
    RUN_LAW,
    ProofReport,
    prove,
)
from qthrottle.proofs.replay import replay as replay_proof
from qthrottle.proofs.solve import DEFAULT_TIMEOUT_MS, FALSIFIED
from qthrottle.review.target_policy import open_subject

INF = float("inf")
PROFILE = PROFILES["quick"]  # the profile `qthrottle verify` uses by default
ENGINES = ("proofs", "stateful", "random", "random+min", "libFuzzer")
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
class CaseResult:
    name: str
    wanted: List[int]
    runs: Dict[str, List[Run]]
    shortest: Dict[int, Tuple[Optional[List[Symbol]], int, float]]  # inv -> (timeline, tried, s)
    symbols: List[Symbol]
    notes: List[str]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ proofs

class _ReplayedTimeline(Driver):
    """Records the timeline a proof's replay runs; direct callback calls are one compare step."""

    steps = 1

    def run(self, operations: Any) -> RunResult:
        self.steps = len(operations)
        return super().run(operations)


def proof_run(report: ProofReport, lengths: Dict[int, int]) -> Run:
    """Each invariant's time: from the start of prove() to its first FALSIFIED law. The
    run laws (3-6 for every timeline) are one proof: each result carries its whole time,
    counted once, at the first of them."""
    own = [r.seconds for r in report.results]
    runs = [i for i, r in enumerate(report.results) if r.law == RUN_LAW]
    for i in runs[1:]:
        own[i] = 0.0
    elapsed = report.seconds - sum(own)  # the event space
    run = Run()
    for result, seconds in zip(report.results, own):
        elapsed += seconds
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
    """When the benchmark ends a run, whether it did, and the operations run meanwhile."""

    def __init__(self, at: float = INF) -> None:
        self.at = at
        self.reached = False
        self.applied = 0


@contextmanager
def stoppable(driver: Driver, deadline: Deadline) -> Iterator[None]:
    """Lets the benchmark end a search: past the deadline the next batch raises
    HarnessFailure, and stateful.search returns what it found (as UNKNOWN: not a
    finding). Counts the operations the C ran in batches meanwhile."""
    start_batch, finish_batch = driver.start_batch, driver.finish_batch

    def guarded(timelines: Sequence[Sequence[Command]], settle: int = 0) -> Batch:
        if time.perf_counter() > deadline.at:
            deadline.reached = True
            raise HarnessFailure(STOPPED)
        return start_batch(timelines, settle)

    def counted(batch: Batch) -> List[RunResult]:
        runs = finish_batch(batch)
        deadline.applied += sum(len(r.steps) for r in runs)
        return runs

    driver.start_batch = guarded  # type: ignore[method-assign]
    driver.finish_batch = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        del driver.start_batch, driver.finish_batch


def stateful_run(subject: Subject, seed: int, wanted: FrozenSet[int], cap: float) -> Run:
    member_pools.cache_clear()  # each timed run draws its value pools (see random_run)
    times: Dict[int, float] = {}
    start = time.perf_counter()
    deadline = Deadline(start + cap)
    with stoppable(subject.driver, deadline):
        def found(message: str) -> None:
            match = re.search(r"invariant (\d+)", message)
            assert match is not None, message
            times[int(match.group(1))] = time.perf_counter() - start
            if wanted <= times.keys():
                deadline.at = 0  # nothing left to time: end the search at its next batch

        result = search(subject, PROFILE, seed, progress=found)
        if result.falsified.keys() - times.keys():  # the last one found, reported on return
            times.update({k: time.perf_counter() - start
                          for k in result.falsified.keys() - times.keys()})
    elapsed = time.perf_counter() - start
    run = Run({k: (t, len(result.falsified[k].steps)) for k, t in times.items()},
              rate=deadline.applied / elapsed)
    if result.unknown and not deadline.reached:
        run.note = f"UNKNOWN: {result.unknown}"
    return run


# ------------------------------------------------------------------ random

def random_run(subject: Subject, seed: int, wanted: FrozenSet[int], cap: float,
               minimised: bool) -> Run:
    """Plain random timelines in batches, judged as the engine judges; an invariant found
    is set aside and the search goes on, as the engine's does. @minimised: each failure
    minimised by the engine's minimiser and replayed for its report, as the engine's
    _record does, before it counts."""
    # The pools are drawn within the timed run, as the engine's are: a process keeps them
    # per seed, and the engine, timed first, would otherwise draw them for both.
    member_pools.cache_clear()
    run, counted = Run(), Deadline()
    start = time.perf_counter()
    draw = plain_random(subject.events, subject.policy, PROFILE.steps, seed)
    settle = quiet_interval(subject.policy.rates.values())
    with stoppable(subject.driver, counted):
        try:
            while time.perf_counter() - start < cap and not wanted <= run.found.keys():
                for steps, result in run_batched(subject, [draw() for _ in range(SEARCH_BATCH)],
                                                 settle):
                    ignored = frozenset(run.found)
                    violation, judge = judge_run(subject.policy, subject.catalog, ignored,
                                                 steps, result)
                    if violation is None:
                        continue
                    if minimised:
                        minimal = minimize(subject, ignored, violation.invariant,
                                           failing_prefix(steps, judge))
                        # replayed for its report, as the engine replays what it found
                        replay(subject, ignored, minimal)
                    length = len(minimal) if minimised else len(judge.records)
                    run.found[violation.invariant] = (time.perf_counter() - start, length)
        except HarnessFailure as failure:
            run.note = f"UNKNOWN: {failure}"
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
    commands = [s.step.to_json() for s in symbols if not isinstance(s.step, CompareKeys)]
    path.write_text(json.dumps(commands, indent=1))
    return path


# ------------------------------------------------------------------ detection

def detected(subject: Subject, breaks: FrozenSet[int], seeds: int) -> Tuple[int, float]:
    """Seeds of 1..@seeds in which the engine finds an invariant of @breaks; seconds."""
    start = time.perf_counter()
    hits = sum(bool(set(search(subject, PROFILE, seed, stop_at_first=True,
                               minimised=False).falsified) & breaks)
               for seed in range(1, seeds + 1))
    return hits, time.perf_counter() - start


def seeded_targets(work: Path) -> List[Tuple[str, Target, FrozenSet[int]]]:
    targets = []
    for name, bug in SEEDED.items():
        path = work / "seeded" / name / "monitor.c"
        path.parent.mkdir(parents=True)
        path.write_text(bug.source())
        targets.append((name, resolve(str(path), SCHEMA_DIR), bug.breaks))
    return targets


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
            runs["random"].append(random_run(subject, seed, frozenset(wanted), args.cap,
                                             minimised=False))
            progress(f"{name}: random timelines and the minimiser, seed {seed}")
            runs["random+min"].append(random_run(subject, seed, frozenset(wanted), args.cap,
                                                 minimised=True))
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


# ------------------------------------------------------------ operations per second

def throughput(repeats: int) -> List[str]:
    """The engine's operations per second against the driver's, on the case that holds
    (baseline: every search runs its whole budget)."""
    with open_subject(resolve("baseline")) as subject:
        settle = quiet_interval(subject.policy.rates.values())
        sampler = Sampler(subject.events, subject.policy, PROFILE.steps, 1)
        batch: List[List[Command]] = [[command(s) for s in sampler.timeline()]
                                      for _ in range(2000)]
        single = driver_ops_per_s(subject.driver.binary, repeats)

        def batched() -> float:
            start = time.perf_counter()
            runs = subject.driver.run_batch(batch, settle)
            return sum(len(r.steps) for r in runs) / (time.perf_counter() - start)

        def engine() -> float:
            deadline = Deadline()
            with stoppable(subject.driver, deadline):
                start = time.perf_counter()
                search(subject, PROFILE, 1)
                return deadline.applied / (time.perf_counter() - start)

        return [f"stateful engine: {harness_bench.median_of(repeats, engine):,.0f} operations/s "
                f"(baseline, {PROFILE.describe()}: C, oracle and model, one process each)",
                f"driver alone: {harness_bench.median_of(repeats, batched):,.0f} operations/s in "
                f"batches of drawn timelines, {single:,.0f} one command at a time "
                "(harness_bench's timeline)"]


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
                                  capture_output=True, text=True, check=False,
                                  env={**os.environ, "QTHROTTLE_PROOF_CACHE": "off"})
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


def firsts(runs: List[Run], invariants: List[int]) -> List[Tuple[float, int]]:
    """Per run: the time and length of its first counterexample of any of @invariants."""
    return [min((r.found[k] for k in invariants if k in r.found), default=(INF, 0))
            for r in runs]


def cell(runs: List[Run], invariants: List[int], cap: float, scope: FrozenSet[int]
         ) -> Tuple[str, float]:
    """time, found k/n and median length for the first counterexample of any of @invariants."""
    if not runs:
        return f"{'not run':^{CELL}}", INF
    if not scope & set(invariants):
        return f"{'(not its subject)':^{CELL}}", INF
    first = firsts(runs, invariants)
    t = median([s for s, _ in first])
    lengths = [n for s, n in first if s < INF]
    shown = f">{cap:.0f}s" if t == INF else f"{t:.2f}s" if t < 10 else f"{t:.1f}s"
    found = sum(1 for s, _ in first if s < INF)
    length = f"{statistics.median(lengths):g}" if lengths else "-"
    return f"{shown:>7} {f'{found}/{len(runs)}':>5} {length:>4}", t


def ratio(slow: float, fast: float, cap: float) -> str:
    if fast == INF or fast <= 0:
        return "-"
    value = (cap if slow == INF else slow) / fast
    shown = f"{value:.0f}x" if value >= 10 else f"{value:.1f}x" if value >= 1 else f"{value:.2f}x"
    return (">" if slow == INF else "") + shown


def groups(result: CaseResult) -> List[Tuple[str, List[int]]]:
    labelled: List[Tuple[str, List[int]]] = []
    if len(result.wanted) > 1:
        labelled.append(("any", result.wanted))
    return labelled + [(f"{k}" + (" (may)" if k not in EXPECTED[result.name] else ""), [k])
                       for k in result.wanted]


def exhaustive(result: CaseResult, invariants: List[int]) -> Optional[int]:
    mins = [result.shortest[k][0] for k in invariants]
    return min((len(m) for m in mins if m is not None), default=None)


def rows_of(result: CaseResult, cap: float) -> List[str]:
    lines = []
    for label, invariants in groups(result):
        cells = {e: cell(result.runs[e], invariants, cap, SCOPE.get(e, ALL)) for e in ENGINES}
        best = exhaustive(result, invariants)
        # qthrottle: the first of its two engines to produce the counterexample.
        qthrottle = min(cells["proofs"][1], cells["stateful"][1])
        lines.append(f"{result.name + ' / ' + label:<{LABEL}} "
                     + " | ".join(cells[e][0] for e in ENGINES)
                     + f" | {str(best) if best is not None else 'none':>8} | "
                     f"{ratio(cells['random+min'][1], qthrottle, cap):>9} "
                     f"{ratio(cells['libFuzzer'][1], qthrottle, cap):>9}")
    return lines


def json_rows(results: List[CaseResult]) -> List[Dict[str, Any]]:
    """One row per case, invariant and engine (--json)."""
    rows = []
    for result in results:
        for label, invariants in groups(result):
            for engine in ENGINES:
                runs = result.runs[engine]
                first = firsts(runs, invariants)
                times = [s for s, _ in first if s < INF]
                rows.append({
                    "case": result.name, "invariant": label, "engine": engine,
                    "median_seconds": median([s for s, _ in first]) if runs else None,
                    "found": len(times), "runs": len(runs),
                    "median_length": statistics.median([n for s, n in first if s < INF])
                    if times else None,
                    "exhaustive_minimum": exhaustive(result, invariants)})
    for row in rows:
        if row["median_seconds"] == INF:
            row["median_seconds"] = None  # not found in most runs: JSON has no infinity
    return rows


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
    for engine in ("stateful", "random", "random+min", "libFuzzer"):
        runs = result.runs[engine]
        if not runs:
            continue
        extra = sorted({k for r in runs for k in r.found} - set(result.wanted))
        notes = sorted({r.note for r in runs if r.note})
        unit = ("executions/s (inputs)" if engine == "libFuzzer"
                else "operations/s run on the C and judged")
        line = (f"  {result.name}: {engine}: {median([r.rate for r in runs]):,.0f} {unit}")
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
    lines = [f"  {first.label:<17} {first.step.describe()}"]
    for symbol in symbols[1:]:
        op, base = symbol.step, first.step
        if isinstance(op, Queue) and isinstance(base, Queue) and op.event == base.event \
                and op.data and base.data:
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
        f"stateful: {PROFILE.describe()}; random: timelines of up to {PROFILE.steps} steps; "
        f"z3: {DEFAULT_TIMEOUT_MS} ms per query; exhaustive: every timeline of up to "
        f"{args.max_length} operations over the alphabet below; detection: seeds "
        f"1..{args.seeds}",
    ]


def report(args: argparse.Namespace, head: List[str], results: List[CaseResult],
           detection: List[str], rates: List[str], qemu: List[str]) -> str:
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
        "stateful and random+min: to the minimal counterexample, replayed on the C for its "
        "report (the engine's symbolized replay, charged to both). random: not minimised. "
        "libFuzzer: wall time to its first crash,",
        "which counts for the invariant the crash breaks (7 or 8); length: the commands its "
        "crashing input ran, with the clock run out.",
        "shortest: exhaustive minimum over the alphabet. Ratios: engine time / qthrottle time "
        "(the faster of proofs and stateful).",
        "",
        f"{'case / invariant':<{LABEL}} " + " | ".join(f"{e:^{CELL}}" for e in ENGINES)
        + f" | {'shortest':>8} | {'rnd+min /':>9} {'fuzzer /':>9}",
        f"{'':<{LABEL}} " + " | ".join([f"{'time':>7} {'k/n':>5} {'len':>4}"] * len(ENGINES))
        + f" | {'len':>8} | {'qthrottle':>9} {'qthrottle':>9}",
    ]
    for result in results:
        lines += rows_of(result, args.cap)
    lines += ["", "Bug found at all (any invariant the case is meant to break, within the cap; "
              "qthrottle: proofs or stateful engine):"]
    lines += [found_at_all(result) for result in results]
    lines += ["", f"Detection over seeds 1..{args.seeds} (stateful engine, {PROFILE.describe()}; "
              "found: an invariant the bug breaks):", *detection]
    lines += ["", "Operations per second (medians of " + str(n) + "):", *[f"  {r}" for r in rates]]
    if results:
        lines += ["", "alphabet (libFuzzer's: the same without the compare steps):"]
        lines += legend(results[0].symbols) + [""]
        for result in results:
            lines += details(result)
    lines += ["", "Real QEMU (Debian sources): proof time (all theorems) and verdict, full "
              f"`qthrottle verify --profile {PROFILE.name}` time",
              f"(build cached, proofs not: QTHROTTLE_PROOF_CACHE=off; seeds 1..{n}) and exit "
              "codes, driver throughput (operations/s, "
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
    parser.add_argument("--seeds", type=int, default=20,
                        help="seeds of the detection rates (1..N)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: --cap 5 --repeats 1 --max-length 3 --seeds 2")
    parser.add_argument("--case", action="append", choices=[c for c, b in EXPECTED.items() if b],
                        help="only this buggy case (repeatable); seeded bugs and real QEMU "
                        "are then skipped")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    if args.quick:
        args.cap, args.repeats, args.max_length, args.seeds = 5.0, 1, 3, 2
    head = header(args)
    cases = args.case or [name for name, broken in EXPECTED.items() if broken]
    with tempfile.TemporaryDirectory(prefix="engines-bench-") as work:
        results = [bench_case(name, args, Path(work)) for name in cases]
        detection = []
        targets = [(name, resolve(name), EXPECTED[name] | MAY_ALSO_BREAK.get(name, frozenset()))
                   for name in cases] + ([] if args.case else seeded_targets(Path(work)))
        for name, target, breaks in targets:
            progress(f"{name}: detection over {args.seeds} seeds")
            with open_subject(target) as subject:
                hits, seconds = detected(subject, breaks, args.seeds)
            detection.append(f"  {name:<22} {hits}/{args.seeds}  ({seconds:.1f} s in all)")
    progress("operations per second")
    rates = throughput(args.repeats)
    qemu = [] if args.case else bench_qemu(args)
    print(report(args, head, results, detection, rates, qemu))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": json_rows(results)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
