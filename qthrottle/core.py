"""What every layer shares: the one error type, the verdict vocabulary, the exit codes and
the cache directory.

The bottom layer of qthrottle (docs/ARCHITECTURE.md): it imports nothing of qthrottle, and
every other layer may import it.
"""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path


class QthrottleError(Exception):
    """An input or tool error: the command stops with exit code 2.

    The message is for a person. Its first line is printed as the one
    `qthrottle: error:` line, any further lines as indented details.
    """


class Status(str, Enum):
    """What an engine concluded about one property."""

    PROVED = "PROVED"  # for every input within the engine's bounds (z3, CrossHair)
    FALSIFIED = "FALSIFIED"  # a counterexample
    UNKNOWN = "UNKNOWN"  # the engine could not decide: never a pass
    PASS = "PASS"  # a bounded search found no counterexample
    HOLDS = "HOLDS"  # an invariant's verdict when no engine falsified it or was unsure
    NOT_APPLICABLE = "NOT_APPLICABLE"  # the engine does not check this property

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


# Exit codes of every command: a public interface, scripts and CI depend on them.
EXIT_HOLDS = 0  # everything holds
EXIT_FALSIFIED = 1  # an invariant is falsified, and nothing else
EXIT_ERROR = 2  # an input or tool error (any unexpected exception too)
EXIT_UNKNOWN = 3  # nothing falsified, but something UNKNOWN
EXIT_INTERRUPTED = 130  # SIGINT


def cache_dir() -> Path:
    """The qthrottle cache directory (not created): builds, QEMU sources, search databases.

    $QTHROTTLE_CACHE_DIR, else $XDG_CACHE_HOME/qthrottle, else ~/.cache/qthrottle.
    """
    own = os.environ.get("QTHROTTLE_CACHE_DIR", "")
    if own:
        return Path(own).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore relative paths in XDG_* variables.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "qthrottle"
    return Path.home() / ".cache" / "qthrottle"
