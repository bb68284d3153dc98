"""qthrottle explore TARGET: each falsified invariant as a replayed timeline and a pytest file.

The z3 proofs run first (seconds): each counterexample they find becomes a
timeline. The stateful engine then searches for the invariants the proofs
cannot falsify (8) or did not. Whichever engine found it, a
counterexample goes through qthrottle.review.counterexample: replayed against the
sanitized C and the reference model, printed as one table with the sanitizer
report and the QMP events, and written as a standalone pytest reproducer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN, QthrottleError
from qthrottle.engines.bounds import Profile
from qthrottle.engines.stateful import Subject, search
from qthrottle.harness.target import Target, resolve
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.policy import Policy
from qthrottle.proofs.engine import PROVEN_INVARIANTS, RUN_LAW, prove_target
from qthrottle.proofs.report import AGAIN, bounds, took
from qthrottle.proofs.solve import FALSIFIED, PROVED, UNKNOWN
from qthrottle.review import html
from qthrottle.review.counterexample import (
    Counterexample,
    Replay,
    from_proof,
    from_search,
    headline,
    render,
    replay,
    replay_verdict,
    reproducer_name,
    sanitizer_text,
    write_reproducer,
)
from qthrottle.review.target_policy import open_subject
from qthrottle.review.timeline_view import Block, Page, Section
from qthrottle.review.views import replay_timeline

DEFAULT_OUTPUT = "qthrottle-repro"


@dataclass
class Exploration:
    """Per invariant asked for: its counterexample (replayed) or what the engines said."""

    wanted: FrozenSet[int]
    found: Dict[int, Tuple[Counterexample, Replay]] = field(default_factory=dict)
    status: Dict[int, str] = field(default_factory=dict)
    unknown: List[str] = field(default_factory=list)

    @property
    def falsified(self) -> bool:
        return any(status.startswith("FALSIFIED") for status in self.status.values())


def _prove(target: Target, subject: Subject, exploration: Exploration,
           timeout_ms: int) -> None:
    """z3 on the invariants it proves; each counterexample replayed as a timeline."""
    report = prove_target(target, timeout_ms, replay_in_c=False)
    laws = {r.law if r.law != RUN_LAW else f"{r.law} ({r.invariant})": r.status
            for r in report.results}
    again = f" ({AGAIN})" if report.cached else ""
    print(f"   z3 proofs {took(report)}{again}: "
          + ", ".join(f"{law} {status}" for law, status in laws.items()))
    for number in sorted(exploration.wanted & set(PROVEN_INVARIANTS)):
        fallback: Optional[Tuple[Counterexample, Replay]] = None
        for result in report.results:
            example = from_proof(result) if result.invariant == number else None
            if example is None:
                continue
            replayed = replay(subject, number, example.timeline)
            if replayed.confirmed:
                exploration.found[number] = (example, replayed)
                break
            fallback = fallback or (example, replayed)
        status = report.status(number)
        if number in exploration.found:
            exploration.status[number] = "FALSIFIED (z3)"
        elif fallback is not None:  # the stateful engine may still reproduce it
            exploration.found[number] = fallback
            exploration.status[number] = "FALSIFIED (z3; not reproduced by the C)"
        elif status == FALSIFIED:
            exploration.status[number] = "FALSIFIED (z3; no concrete events to replay)"
        elif status == UNKNOWN:
            reason = next(r.reason for r in report.results
                          if r.invariant == number and r.status == UNKNOWN)
            exploration.status[number] = f"UNKNOWN (z3: {reason})"
            exploration.unknown.append(f"invariant {number} (z3): {reason}")
        elif status == PROVED:
            exploration.status[number] = "PROVED (z3)"


def _search(subject: Subject, exploration: Exploration, profile: Profile,
            seed_value: int) -> None:
    """The stateful engine on what z3 neither proved nor falsified in a way the C
    reproduces (a proof covers every input: a bounded search adds nothing to it)."""
    settled = {n for n, (_, r) in exploration.found.items() if r.confirmed}
    settled |= {n for n, status in exploration.status.items() if status.startswith(PROVED)}
    remaining = exploration.wanted - settled
    if not remaining:
        print("   stateful engine: not needed (z3 settled every invariant asked for)")
        return
    print(f"   stateful engine on invariant(s) {', '.join(map(str, sorted(remaining)))}:",
          flush=True)
    result = search(subject, profile, seed_value,
                    progress=lambda what: print(f"     {what}", flush=True),
                    set_aside=frozenset(INVARIANTS) - remaining)
    print(f"   {result.searches} search(es) in {result.seconds:.1f} s")
    if result.unknown:
        exploration.unknown.append(f"stateful engine: {result.unknown}")
    for number in sorted(remaining):
        example = result.falsified.get(number)
        if example is not None:
            shared = from_search(example)
            replayed = replay(subject, number, shared.timeline)
            exploration.found[number] = (shared, replayed)
            exploration.status[number] = "FALSIFIED (stateful)" + (
                "" if replayed.confirmed else "; not reproduced on replay")
        elif number in exploration.status:  # z3's word stands (PROVED, UNKNOWN, unconfirmed)
            continue
        elif number in result.undecided:
            exploration.status[number] = f"UNKNOWN (stateful engine: {result.undecided[number]})"
            exploration.unknown.append(f"invariant {number} (stateful engine): "
                                       f"{result.undecided[number]}")
        elif result.unknown:
            exploration.status[number] = "UNKNOWN (stateful engine)"
        else:
            exploration.status[number] = "PASS (stateful engine, within its bounds)"


def _replay_spec(spec: str, target: Target) -> str:
    """What resolve() takes to find the target again, from anywhere."""
    return spec if target.expected_broken is not None else str(Path(spec).resolve())


def _reproducers(output: Path, target: Target, exploration: Exploration) -> Dict[int, Path]:
    """Where the reproducer of each counterexample the C confirms goes."""
    return {number: output / reproducer_name(target.name, number)
            for number, (_, replayed) in sorted(exploration.found.items())
            if replayed.confirmed}


def _write(output: Path, spec: str, qapi_dir: Optional[str], target: Target,
           exploration: Exploration, seed_value: int) -> Dict[int, Path]:
    """A reproducer per counterexample the C confirms."""
    qapi = str(Path(qapi_dir).resolve()) if qapi_dir else None
    return {number: write_reproducer(output, example, replayed, target.name,
                                     _replay_spec(spec, target), qapi, seed_value)
            for number, (example, replayed) in sorted(exploration.found.items())
            if replayed.confirmed}


def _section(number: int, example: Counterexample, replayed: Replay, policy: Policy,
             target: Target, spec: str, reproducer: Optional[Path],
             no_reproducer: str) -> Section:
    """One counterexample: its timeline, the sanitizer report, the replay, the pytest."""
    blocks = []
    if replayed.crash is not None:
        blocks.append(Block("sanitizer / shim report", "\n".join(sanitizer_text(replayed.crash))))
    blocks.append(Block("replay (Python)",
                        "from qthrottle.review.counterexample import replay_target\n"
                        f"replay_target({_replay_spec(spec, target)!r}, {number}, "
                        f"{list(replayed.timeline)!r}).report()"))
    if reproducer is not None:
        blocks.append(Block(f"pytest reproducer: {reproducer} (run: pytest {reproducer})",
                            reproducer.read_text()))
    else:
        blocks.append(Block("pytest reproducer", no_reproducer))
    return Section(f"invariant-{number}", f"Invariant {number}: {INVARIANTS[number]}",
                   headline(example)[0].upper() + headline(example)[1:],
                   (*example.evidence, "replayed against the sanitized C and the reference "
                    f"model: {replay_verdict(replayed)}"),
                   replay_timeline(replayed, policy, target.name), tuple(blocks))


def _page(target: Target, spec: str, policy: Policy, exploration: Exploration,
          written: Dict[int, Path], facts: Tuple[str, ...], verdict: str,
          no_reproducer: Callable[[Replay], str]) -> Page:
    rows = tuple((f"{n} {name}", exploration.status.get(n, "-  (not explored)"))
                 for n, name in INVARIANTS.items())
    sections = tuple(_section(n, example, replayed, policy, target, spec, written.get(n),
                              no_reproducer(replayed))
                     for n, (example, replayed) in sorted(exploration.found.items()))
    return Page(f"qthrottle explore {target.name}", facts, (("invariant", "status"), *rows),
                sections, verdict)


VERDICTS = {EXIT_HOLDS: "nothing falsified, nothing unknown",
            EXIT_FALSIFIED: "an invariant is falsified",
            EXIT_UNKNOWN: "nothing falsified, but something is UNKNOWN"}


def explore(spec: str, qapi_dir: Optional[str], wanted: FrozenSet[int], profile: Profile,
            seed_value: int, timeout_ms: int, output: Path,
            html_file: Optional[Path] = None, unwritable: Optional[str] = None) -> int:
    """Explore @wanted on the target @spec, printing as it goes; the exit code.

    The findings are printed before the reproducers are written to @output, so that a
    write that fails loses none of them; @unwritable says why @output cannot be written
    (found before the run): then nothing is written and the exit code is 2.
    @html_file: also write the counterexamples there, as one HTML page of timelines.
    """
    target = resolve(spec, Path(qapi_dir) if qapi_dir else None)
    print(f"qthrottle explore: seed {seed_value}; invariant(s) "
          f"{', '.join(map(str, sorted(wanted)))}")
    print(f"  z3 proofs first: {bounds(timeout_ms)}")
    print(f"  then the stateful engine, {profile.describe()}")
    print(f"\n== {target.name} ({target.monitor_c})")
    exploration = Exploration(wanted)
    with open_subject(target) as subject:
        if wanted & set(PROVEN_INVARIANTS):
            _prove(target, subject, exploration, timeout_ms)
        _search(subject, exploration, profile, seed_value)
        policy = subject.policy
    planned = {} if unwritable else _reproducers(output, target, exploration)

    def no_reproducer(replayed: Replay) -> str:
        """Why a counterexample has no reproducer."""
        if unwritable and replayed.confirmed:
            return f"not written (--output {output}: {unwritable})"
        return "none (the replay does not break the invariant)"
    print()
    for number, name in INVARIANTS.items():
        print(f"  {number}  {name:<62} {exploration.status.get(number, '-  (not explored)')}")
    for reason in exploration.unknown:
        print(f"  UNKNOWN: {reason}")
    for number, (example, replayed) in sorted(exploration.found.items()):
        print()
        print("\n".join(render(example, replayed, planned.get(number),
                                no_reproducer=no_reproducer(replayed))))
    print(f"\n(seed {seed_value}: rerun with --seed {seed_value} to reproduce)", flush=True)
    code = EXIT_FALSIFIED if exploration.falsified else \
        EXIT_UNKNOWN if exploration.unknown else EXIT_HOLDS
    written: Dict[int, Path] = {}
    write_error = None
    if not unwritable:
        try:
            written = _write(output, spec, qapi_dir, target, exploration, seed_value)
        except OSError as error:
            write_error = f"cannot write the reproducers to {output}: {error}"
    if html_file is not None:
        facts = (f"target: {target.name} ({target.monitor_c})",
                 f"seed {seed_value}: rerun with --seed {seed_value} to reproduce",
                 f"z3 proofs first: {bounds(timeout_ms)}",
                 f"then the stateful engine, {profile.describe()}",
                 *(f"UNKNOWN: {reason}" for reason in exploration.unknown))
        html.write(html_file, _page(target, spec, policy, exploration, written, facts,
                                    f"exit {code}: {VERDICTS[code]}", no_reproducer))
        print(f"HTML timeline: {html_file}")
    if unwritable:
        raise QthrottleError(f"--output {output}: {unwritable}: no reproducer written")
    if write_error:
        raise QthrottleError(write_error)
    return code
