"""qthrottle explore TARGET: each falsified invariant as a replayed timeline and a pytest file.

The z3 proofs run first (seconds): each counterexample they find becomes a
timeline. The stateful engine then searches for the invariants the proofs
cannot falsify (8) or did not. Whichever engine found it, a
counterexample goes through qthrottle.counterexample: replayed against the
sanitized C and the reference model, printed as one table with the sanitizer
report and the QMP events, and written as a standalone pytest reproducer.
"""
from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from qthrottle.common import (
    EXIT_ERROR,
    EXIT_FALSIFIED,
    EXIT_HOLDS,
    EXIT_UNKNOWN,
    TARGET_HELP,
    add_qapi_dir,
    add_timeout,
    target_from,
)
from qthrottle.counterexample import (
    Counterexample,
    Replay,
    from_proof,
    from_search,
    render,
    replay,
    write_reproducer,
)
from qthrottle.harness.target import Target
from qthrottle.model.invariants import INVARIANTS
from qthrottle.proofs.engine import PROVEN_INVARIANTS, RUN_LAW, prove_target
from qthrottle.proofs.report import bounds
from qthrottle.proofs.solve import FALSIFIED, PROVED, UNKNOWN
from qthrottle.stateful import PROFILES, Subject, search
from qthrottle.target_policy import open_subject

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
    print(f"   z3 proofs in {report.seconds:.1f} s: "
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


def _search(subject: Subject, exploration: Exploration, args: argparse.Namespace,
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
    result = search(subject, PROFILES[args.profile], seed_value,
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


def _write(args: argparse.Namespace, target: Target, exploration: Exploration,
           seed_value: int) -> Dict[int, Path]:
    """A reproducer per counterexample the C confirms."""
    spec = args.target if target.expected_broken is not None else str(Path(args.target).resolve())
    qapi = str(Path(args.qapi_dir).resolve()) if args.qapi_dir else None
    return {number: write_reproducer(Path(args.output), example, replayed, target.name, spec,
                                     qapi, seed_value)
            for number, (example, replayed) in sorted(exploration.found.items())
            if replayed.confirmed}


def cmd_explore(args: argparse.Namespace) -> int:
    target = target_from(args.target, args.qapi_dir)
    wanted = frozenset([args.invariant] if args.invariant else INVARIANTS)
    seed_value = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"qthrottle explore: seed {seed_value}; invariant(s) "
          f"{', '.join(map(str, sorted(wanted)))}")
    print(f"  z3 proofs first: {bounds(args.timeout_ms)}")
    print(f"  then the stateful engine, {PROFILES[args.profile].describe()}")
    print(f"\n== {target.name} ({target.monitor_c})")
    exploration = Exploration(wanted)
    with open_subject(target) as subject:
        if wanted & set(PROVEN_INVARIANTS):
            _prove(target, subject, exploration, args.timeout_ms)
        _search(subject, exploration, args, seed_value)
    try:
        written = _write(args, target, exploration, seed_value)
    except OSError as error:
        print(f"qthrottle: error: cannot write the reproducers to {args.output}: {error}",
              file=sys.stderr)
        return EXIT_ERROR
    print()
    for number, name in INVARIANTS.items():
        print(f"  {number}  {name:<62} {exploration.status.get(number, '-  (not explored)')}")
    for reason in exploration.unknown:
        print(f"  UNKNOWN: {reason}")
    for number, (example, replayed) in sorted(exploration.found.items()):
        print()
        print("\n".join(render(example, replayed, written.get(number))))
    print(f"\n(seed {seed_value}: rerun with --seed {seed_value} to reproduce)")
    if exploration.falsified:
        return EXIT_FALSIFIED
    return EXIT_UNKNOWN if exploration.unknown else EXIT_HOLDS


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "explore", help="show each falsified invariant as a replayed timeline and write "
        "a pytest reproducer",
        description=f"TARGET is {TARGET_HELP}. The z3 proofs run first, then the stateful "
        "engine for what they cannot falsify. Each counterexample is replayed against the "
        "sanitized C and the reference model and written as a standalone pytest file. "
        "Exit: 0 nothing falsified, 1 falsified, 2 input or tool error, 3 unknown.")
    command.add_argument("target", metavar="TARGET")
    add_qapi_dir(command)
    command.add_argument("--invariant", type=int, choices=sorted(INVARIANTS), metavar="N",
                         help="explore invariant N only (1-8)")
    command.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                         help="bounds of the stateful search (default quick)")
    command.add_argument("--seed", type=int, help="seed of the search (printed when not given)")
    add_timeout(command)
    command.add_argument("--output", metavar="DIR", default=DEFAULT_OUTPUT,
                         help=f"where the reproducers go (default ./{DEFAULT_OUTPUT}/)")
    command.set_defaults(func=cmd_explore)
