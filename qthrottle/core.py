"""What every layer shares: the one error type, the verdict vocabulary, the exit codes and
the cache directory.

The bottom layer of qthrottle (docs/ARCHITECTURE.md): it imports nothing of qthrottle, and
every other layer may import it.
"""
from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Callable, List, Optional, Set


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
EXIT_INTERRUPTED = 130  # SIGINT (128 + 2)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15)


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


def cache_error(path: Path, error: OSError) -> QthrottleError:
    """The cache directory (or a file in it) cannot be used: exit 2, naming it."""
    return QthrottleError(
        f"the cache directory {cache_dir()} cannot be used: {path}: "
        f"{error.strerror or error}\n(set QTHROTTLE_CACHE_DIR to a writable directory)")


_warned: Set[str] = set()


def warn(message: str) -> None:
    """One `qthrottle: warning:` line on stderr, once per message and process."""
    if message not in _warned:
        _warned.add(message)
        print(f"qthrottle: warning: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ inputs

MAX_INPUT_BYTES = 16 << 20  # a monitor.c is ~60 KB and the largest schema file ~200 KB


def read_input(path: Path, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file the user points qthrottle at (a monitor.c, a schema
    file, a patch), at most @limit of them.

    Devices, FIFOs and sockets are refused before a byte is read (/dev/zero never
    ends, a FIFO blocks); so is a file larger than @limit. OSError on a missing or
    unreadable file, QthrottleError (naming @what) on the others.
    """
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of blocking.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as stream:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise QthrottleError(f"{path}: {kind}, not {what} (qthrottle reads regular "
                                 "files only)")
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise QthrottleError(f"{path}: larger than {limit >> 20} MiB, too large for {what}")
    return data


# ------------------------------------------------------------------ signals

class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the command stops, with exit code 128 + the signal.

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` (ours,
    hypothesis's) takes it for a failure of the code under test. An engine that
    stops on it attaches what it had found as ``partial``, for the command to print
    before it exits.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.partial: object = None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Signals:
    received: Optional[int] = None  # the first SIGINT or SIGTERM of the command, if any
    dropped = False  # the Interrupted it raised was dropped (see _dropped)
    redeliveries: List[threading.Timer] = []  # _dropped's, cancelled when the command ends
    interrupters: List[Callable[[], None]] = []  # see interrupt_with
    resets: List[Callable[[], None]] = []


def interrupt_with(interrupter: Callable[[], None], reset: Callable[[], None]) -> None:
    """@interrupter stops a computation that holds the main thread in C code (a z3
    check): Python runs a signal's handler only when the main thread is back in
    Python. It is called from another thread when SIGINT or SIGTERM arrives. @reset
    undoes what it leaves behind, when the command that a signal stopped ends (z3's
    context stays cancelled until its next check: a push before it would fail)."""
    _Signals.interrupters.append(interrupter)
    _Signals.resets.append(reset)


def _wake(signals: int) -> None:
    """The signal wake-up descriptor's reader: each signal interrupts the C code."""
    while os.read(signals, 64):
        for interrupter in _Signals.interrupters:
            interrupter()


def _on_signal(signum: int, frame: object) -> None:
    if _Signals.received is None or _Signals.dropped:
        _Signals.received = _Signals.received or signum
        _Signals.dropped = False
        raise Interrupted(_Signals.received)


def _dropped(unraisable: Any, previous: Callable[[Any], None]) -> None:
    """sys.unraisablehook while a command runs: an Interrupted that Python dropped,
    raised where it cannot propagate (a __del__, a gc callback: hypothesis has one),
    is delivered again a moment later, from another thread, so that the handler raises
    it in the main thread's own code; it is not printed ("Exception ignored")."""
    if not isinstance(unraisable.exc_value, Interrupted):
        previous(unraisable)
        return
    _Signals.dropped = True
    # To the main thread itself: another would run the handler's C half and leave the
    # main thread asleep in a blocking call.
    again = threading.Timer(0.01, signal.pthread_kill, (threading.main_thread().ident,
                                                        unraisable.exc_value.signum))
    _Signals.redeliveries.append(again)
    again.start()


def check_interrupted() -> None:
    """Raise Interrupted again if a signal arrived (a backstop of _dropped's: long
    loops call it at every step)."""
    if _Signals.received is not None:
        raise Interrupted(_Signals.received)


@contextmanager
def signals_stop_the_command() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while the block runs (main thread only).

    A signal the process was started ignoring stays ignored (nohup, `cmd &` in a
    script). A second signal while the command stops is remembered, not raised, so
    that the clean-up (drivers killed, partial results printed) is not cut short.
    """
    _Signals.received, _Signals.dropped = None, False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    unraisable_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _dropped(unraisable, unraisable_hook)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    waker = threading.Thread(target=_wake, args=(wake_read,), name="qthrottle-signals",
                             daemon=True)
    waker.start()
    try:
        yield
    finally:
        for again in _Signals.redeliveries:  # none may reach the handlers restored below
            again.cancel()
            again.join()
        _Signals.redeliveries.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_wakeup)
        sys.unraisablehook = unraisable_hook
        os.close(wake_write)  # the reader sees end of file and returns
        waker.join()
        os.close(wake_read)
        if _Signals.received is not None:
            for reset in _Signals.resets:
                reset()
        _Signals.received, _Signals.dropped = None, False
