"""The qthrottle command line: argument parsing and the mapping of outcomes to exit codes.

Exit codes (a public interface; scripts and CI depend on them): 0 everything holds,
1 an invariant is falsified and nothing else, 2 input or tool error (any unexpected
exception too, never 1), 3 nothing falsified but something UNKNOWN; 130 interrupted
(SIGINT), 143 terminated (SIGTERM), each after the results found so far.
Each subcommand lives in a module of its own with an add_command(sub) function.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import List, Optional

from qthrottle.cli import (
    diff,
    e2e,
    explore,
    extract,
    fetch,
    mutate,
    prove,
    review,
    selfcheck,
    verify,
)
from qthrottle.core import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Interrupted,
    QthrottleError,
    check_interrupted,
    signals_stop_the_command,
)

COMMANDS = (extract, verify, prove, fetch, diff, review, explore, mutate, selfcheck, e2e)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="qthrottle",
        description="Verification suite for QEMU's QAPI event throttle (monitor/monitor.c).")
    top.add_argument("--debug", action="store_true",
                     help="on an error, also print the traceback")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_command(sub)
    return top


def _error(message: str) -> None:
    first, *rest = message.splitlines() or [""]
    print(f"qthrottle: error: {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        with signals_stop_the_command():
            try:
                code: int = args.func(args)
            finally:
                # A signal whose exception was dropped on the way (raised inside a
                # __del__ or a gc callback) still stops the command, and an error it
                # caused is the interruption, not a tool error.
                check_interrupted()
    except QthrottleError as error:
        if args.debug:
            traceback.print_exc()
        _error(str(error))
        return EXIT_ERROR
    except Interrupted as stop:  # the command printed what it had found
        if args.debug:  # where it stopped
            traceback.print_exc()
        sys.stdout.flush()
        print(f"qthrottle: interrupted by {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # SIGINT outside the main thread's handler
        sys.stdout.flush()
        print("qthrottle: interrupted by SIGINT", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug of qthrottle's: a tool error, never a verdict
        if args.debug:
            traceback.print_exc()
        _error(f"internal error: {type(error).__name__}: {error}"
               + ("" if args.debug else "\n(rerun with --debug for the traceback)"))
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
