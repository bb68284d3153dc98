"""What every subcommand's parser shares: TARGET, --qapi-dir, --timeout-ms, --profile,
--seed, report files, and the validators of numbers."""
from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from qthrottle.core import QthrottleError
from qthrottle.engines.bounds import DYNAMIC_DIFF, PROFILES
from qthrottle.harness.target import Target, resolve
from qthrottle.proofs.solve import DEFAULT_TIMEOUT_MS

TARGET_HELP = "a QEMU tree, a monitor.c file or a case-study name"
Z3_TIMEOUT_MAX_MS = 2**32 - 1  # z3 keeps its timeout in an unsigned 32-bit integer


def number(kind: Callable[[str], Any], minimum: Optional[float] = None,
           maximum: Optional[float] = None, above: Optional[float] = None,
           what: str = "number") -> Callable[[str], Any]:
    """An argparse type: @kind of @text within [minimum, maximum] (and > @above)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if value != value or (above is not None and value <= above) or (
                minimum is not None and value < minimum) or (
                maximum is not None and value > maximum):
            bounds = [f"above {_shown(above)}" if above is not None else "",
                      f"at least {_shown(minimum)}" if minimum is not None else "",
                      f"at most {_shown(maximum)}" if maximum is not None else ""]
            raise argparse.ArgumentTypeError(
                f"must be a {what} {' and '.join(b for b in bounds if b)}")
        return value
    return parse


def _shown(bound: float) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def positive(kind: Callable[[str], Any], what: str = "number") -> Callable[[str], Any]:
    return number(kind, above=0, what=what)


COUNT = number(int, minimum=0, what="whole number")
PERCENT = number(float, minimum=0, maximum=100, what="percentage")
SEED = number(int, what="whole number")


def add_target(command: argparse.ArgumentParser, optional: bool = False) -> None:
    command.add_argument("target", metavar="TARGET", nargs="?" if optional else None)
    command.add_argument("--qapi-dir", metavar="DIR",
                         help="QAPI schema directory (default: the tree's qapi/)")


def target_from(spec: str, qapi_dir: Optional[str]) -> Target:
    return resolve(spec, Path(qapi_dir) if qapi_dir else None)


def add_timeout(command: argparse.ArgumentParser) -> None:
    command.add_argument("--timeout-ms", metavar="N", default=DEFAULT_TIMEOUT_MS,
                         type=number(int, minimum=1, maximum=Z3_TIMEOUT_MAX_MS,
                                     what="number of milliseconds"),
                         help=f"z3 timeout per solver query (default {DEFAULT_TIMEOUT_MS})")


def add_profile(command: argparse.ArgumentParser, default: str = "quick") -> None:
    command.add_argument("--profile", choices=sorted(PROFILES), default=default,
                         help=f"bounds of the stateful search (default {default}): "
                         + "; ".join(p.describe() for p in PROFILES.values()))


def add_seed(command: argparse.ArgumentParser, default: Optional[int] = None) -> None:
    shown = "printed when not given" if default is None else f"default {default}"
    command.add_argument("--seed", type=SEED, default=default,
                         help=f"seed of the search ({shown})")


def add_engine_options(command: argparse.ArgumentParser,
                       seed_default: Optional[int] = None) -> None:
    """The bounds of both engines: the stateful --profile and --seed, z3's --timeout-ms."""
    add_profile(command)
    add_seed(command, seed_default)
    add_timeout(command)


def seed_of(args: argparse.Namespace) -> int:
    """The seed given, or a fresh one (printed with the result, so a run reproduces)."""
    return args.seed if args.seed is not None else random.randrange(1 << 30)


def add_diff_options(command: argparse.ArgumentParser, dynamic: str, stateful_on: str) -> None:
    """The bounds of a diff (diff itself, and review's diff of each patch): @dynamic
    names its dynamic diff, @stateful_on what --stateful runs the stateful engine on."""
    add_timeout(command)
    add_seed(command)
    command.add_argument("--timelines", type=COUNT, default=DYNAMIC_DIFF.runs, metavar="N",
                         help=f"{dynamic}: timelines to try, at most (default "
                         f"{DYNAMIC_DIFF.runs}; 0 skips the dynamic diff)")
    command.add_argument("--steps", type=COUNT, default=DYNAMIC_DIFF.steps, metavar="N",
                         help=f"{dynamic}: operations per timeline, at most (default "
                         f"{DYNAMIC_DIFF.steps})")
    command.add_argument("--stateful", action="store_true",
                         help=f"also run the stateful engine on {stateful_on} (slow)")


def add_html(command: argparse.ArgumentParser) -> None:
    command.add_argument("--html", metavar="FILE",
                         help="also write the counterexample timelines to FILE: one "
                         "self-contained HTML page (no network access, readable without "
                         "JavaScript)")


def check_writable(option: str, name: Optional[str]) -> None:
    """A report file that cannot be written fails before the long run, not after it.

    An existing file is opened for appending and closed (nothing changes); a new one is
    created and removed again: only writing tells whether /proc/x, a read-only file
    system or a full directory takes it.
    """
    if name is None:
        return
    path = Path(name)
    if path.is_dir():
        raise QthrottleError(f"{option} {name}: is a directory")
    exists = path.exists()
    # O_NONBLOCK: a FIFO nobody reads fails (ENXIO) instead of blocking.
    flags = os.O_WRONLY | os.O_NONBLOCK | (os.O_APPEND if exists else os.O_CREAT | os.O_EXCL)
    try:
        os.close(os.open(path, flags, 0o644))
        if not exists:
            path.unlink()
    except OSError as error:
        raise QthrottleError(f"{option} {name}: cannot be written: "
                             f"{error.strerror or error}") from None


def directory_problem(name: str) -> Optional[str]:
    """Why the directory @name cannot take new files (None if it can), found without
    leaving anything behind: it, or the nearest directory above it, is written to."""
    path = Path(name).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing} cannot be written: {error.strerror or error}"
    return None
