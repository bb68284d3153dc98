"""Colours and a progress display, only where a person watches a terminal.

Both are off when their stream is not a terminal (a pipe, a file, a CI log,
pytest's capture), so those get plain text without escape codes. Colours also
honour NO_COLOR (and TERM=dumb) through rich's console.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Dict, TextIO

from rich.color import ColorSystem
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.style import Style

_WORDS: Dict[str, Style] = {
    "FALSIFIED": Style(color="red", bold=True),
    "NOT AS EXPECTED": Style(color="red", bold=True),
    "UNKNOWN": Style(color="yellow", bold=True),
    "warning:": Style(color="yellow"),
    "PASS": Style(color="green"),
    "PROVED": Style(color="green"),
    "as expected": Style(color="green"),
}
_WORD = re.compile("|".join(rf"\b{re.escape(word)}" for word in _WORDS))


class Painter:
    """Colours the verdict words of report lines when @stream is a colour terminal."""

    def __init__(self, stream: TextIO) -> None:
        console = Console(file=stream)
        self.enabled = (console.is_terminal and not console.is_dumb_terminal
                        and not console.no_color and console.color_system is not None)

    def __call__(self, text: str) -> str:
        if not self.enabled:
            return text
        return _WORD.sub(lambda match: _WORDS[match.group()].render(
            match.group(), color_system=ColorSystem.STANDARD), text)


class Phases:
    """A transient spinner with the elapsed time while a long phase runs.

    Shown on @stream (stderr) only when it is a terminal. Nothing else is printed
    during a phase, so the display never interleaves with the report on stdout.
    """

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream)
        self.enabled = self.console.is_terminal and not self.console.is_dumb_terminal

    @contextmanager
    def phase(self, description: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=self.console, transient=True, redirect_stdout=False,
                      redirect_stderr=False) as progress:
            progress.add_task(description, total=None)
            yield
