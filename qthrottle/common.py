"""What every subcommand shares: the exit codes and the TARGET arguments.

Exit codes (a public interface; scripts and CI depend on them):
0 everything holds, 1 something falsified, 2 input or tool error,
3 nothing falsified but something UNKNOWN.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from qthrottle.harness.target import Target, resolve
from qthrottle.proofs.engine import DEFAULT_TIMEOUT_MS

EXIT_HOLDS, EXIT_FALSIFIED, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2, 3

TARGET_HELP = "a QEMU tree, a monitor.c file or a case-study name"


def add_qapi_dir(command: argparse.ArgumentParser) -> None:
    command.add_argument("--qapi-dir", metavar="DIR",
                         help="QAPI schema directory (default: the tree's qapi/)")


def target_from(spec: str, qapi_dir: Optional[str]) -> Target:
    return resolve(spec, Path(qapi_dir) if qapi_dir else None)


def _timeout_ms(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of milliseconds")
    return value


def add_timeout(command: argparse.ArgumentParser) -> None:
    command.add_argument("--timeout-ms", type=_timeout_ms, default=DEFAULT_TIMEOUT_MS,
                         metavar="N",
                         help=f"z3 timeout per solver query (default {DEFAULT_TIMEOUT_MS})")
