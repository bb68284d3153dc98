"""The driver protocol, Python side: the one place that knows how the harness talks to
a compiled driver (harness/shims/driver.c holds the other end).

Framing: one JSON object per line, commands on one pipe and replies on another. The
code under test keeps stdout and stderr, which go to a third pipe: what it prints is
captured per reply (at most OUTPUT_CAP bytes) and never mistaken for a reply. A
fourth pipe is the driver's lifeline: the harness holds its only write end and never
writes, so the driver reads end of file exactly when the harness is gone, however it
died (SIGKILL included), and exits with its child.

One command is in flight at a time. A command may have several replies (a batch of
timelines: one per step); before each step's reply the driver writes the channel's
mark to the output pipe, so that the output is cut where each step ended.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import secrets
import select
import signal
import subprocess
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Deque, Dict, Mapping, Optional

PROTOCOL_VERSION = 3  # driver.c's QTHROTTLE_PROTOCOL
OUTPUT_CAP = 64 * 1024  # bytes of the C's output kept per request
SHOWN_REPLY_BYTES = 200  # of an undecodable reply, in the harness failure
_READS_PER_WAKEUP = 16  # a flood of output never starves the deadline check
PIPE_BYTES = 1 << 20  # the command and reply pipes' size (see _widen)
WAIT_SLICE_S = 0.25  # the longest a reply is waited for without looking at signals

# The failures of the channel itself, as Crash kinds (model/invariants.py: UNKNOWN).
TIMEOUT, DRIVER_DIED, PROTOCOL_ERROR = "timeout", "driver-died", "protocol-error"
CHANNEL_FAILURES = frozenset({TIMEOUT, DRIVER_DIED, PROTOCOL_ERROR})


_RAW_DECODE = json.JSONDecoder().raw_decode
_JSON_WHITESPACE = " \t\n\r"


def _decode_reply(line: bytes) -> Any:
    """json.loads of a reply line, without its encoding detection and whitespace regular
    expressions (it runs once per step); ValueError as json.loads raises it."""
    text = line.decode().strip(_JSON_WHITESPACE)
    value, end = _RAW_DECODE(text)
    if end != len(text):
        raise ValueError(f"extra data after the reply at {end}")
    return value


@dataclass(frozen=True)
class Exchange:
    """One request's outcome: the reply, or why there is none; the C's output meanwhile."""

    reply: Optional[Dict[str, Any]]
    output: str
    failure: Optional[str] = None  # TIMEOUT, DRIVER_DIED or PROTOCOL_ERROR
    how: str = ""  # the failure, for people (with the bytes of an undecodable reply)


class _Piece:
    """What the C printed for one reply: the first OUTPUT_CAP bytes, and a count of the rest."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        if not data:
            return
        room = max(0, OUTPUT_CAP - len(self.kept))
        self.kept += data[:room]
        self.dropped += len(data) - min(room, len(data))

    def text(self) -> str:
        if not self.kept and not self.dropped:
            return ""
        text = self.kept.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n[... {self.dropped} more bytes of output not kept]\n"
        return text


class _Output:
    """The C's output pipe, read as it comes and cut into one piece per reply at the marks
    (without marks, all of it goes to the next reply)."""

    def __init__(self, descriptor: int, mark: bytes) -> None:
        self.descriptor = descriptor
        self.mark = mark
        self.marked = False  # cut at the marks (during a batch)
        self.done: Deque[_Piece] = deque()  # pieces whose mark came, oldest first
        self.current = _Piece()
        self.tail = b""  # the end of the current piece, which may be the start of a mark
        self.open = True

    def read(self) -> None:
        """Read what is there (a bounded amount per call: a flood never starves a deadline)."""
        for _ in range(_READS_PER_WAKEUP):
            if not self._read_chunk():
                return

    def _read_chunk(self) -> bool:
        """One read; False when nothing more is there for now."""
        if not self.open:
            return False
        try:
            chunk = os.read(self.descriptor, 65536)
        except BlockingIOError:
            return False
        if not chunk:
            self.open = False
            return False
        self._feed(chunk)
        return True

    def _feed(self, chunk: bytes) -> None:
        if not self.marked:
            self.current.add(chunk)
            return
        *ended, rest = (self.tail + chunk).split(self.mark)
        for data in ended:
            self.current.add(data)
            self.done.append(self.current)
            self.current = _Piece()
        keep = min(len(rest), len(self.mark) - 1)
        self.current.add(rest[:len(rest) - keep])
        self.tail = rest[len(rest) - keep:]

    def next_piece(self) -> str:
        """The output of the reply just received: up to its mark, or all that came.

        The driver writes a mark before the reply it belongs to, so once the reply is
        in, its mark is in the pipe: reading until a mark or an empty pipe finds it. A
        reply without a mark (the fork server's) comes when its child is gone."""
        while self.marked and not self.done and self._read_chunk():
            pass
        if self.done:
            return self.done.popleft().text()
        self.current.add(self.tail)
        piece, self.current, self.tail = self.current, _Piece(), b""
        return piece.text()


def _widen(pipe: int) -> None:
    """A pipe that holds a whole batch: its command, or its replies (~270 bytes a
    step). Sending a batch then returns at once, and the driver goes on with the next
    batch while this process judges the last, instead of either waiting once the
    pipe's default 64 KiB are full. Linux only; elsewhere, or beyond the system's
    limit (fs.pipe-max-size), the pipe stays as it is."""
    try:
        fcntl.fcntl(pipe, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:
        pass


_open_channels: weakref.WeakSet[Channel] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """No driver outlives the interpreter, whatever path it exits by (drivers not closed
    by their owner included)."""
    for channel in list(_open_channels):
        channel.close()


class Channel:
    """One driver process, in a process group of its own, and its four pipes."""

    def __init__(self, binary: Path, env: Mapping[str, str]) -> None:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        lifeline_read, self._lifeline = os.pipe()
        self._output, output_write = os.pipe()
        theirs = (commands_read, replies_write, lifeline_read, output_write)
        try:
            self.process = subprocess.Popen(
                [str(binary), str(commands_read), str(replies_write), str(lifeline_read)],
                stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write,
                pass_fds=(commands_read, replies_write, lifeline_read), env=dict(env),
                start_new_session=True)
        except OSError:
            for descriptor in (self._commands, self._replies, self._lifeline, self._output):
                os.close(descriptor)
            raise
        finally:
            for descriptor in theirs:
                os.close(descriptor)
        os.set_blocking(self._replies, False)
        _widen(self._commands)
        _widen(self._replies)
        os.set_blocking(self._output, False)
        self._lines: Deque[bytes] = deque()  # complete reply lines not taken yet
        self._pending = b""  # reply bytes after the last complete line
        # Not a string the code under test prints by chance.
        self.mark = f"\x1eqthrottle-step-{secrets.token_hex(8)}\x1e"
        self._out = _Output(self._output, self.mark.encode())
        self._closed = False
        _open_channels.add(self)

    def greeting(self, timeout: float) -> Exchange:
        """The driver's first line: what it is and what it was built from."""
        return self.receive(timeout)

    def request(self, command: Mapping[str, Any], timeout: float) -> Exchange:
        """Send one command; its reply within @timeout seconds, or the failure."""
        failed = self.send(command)
        return failed if failed is not None else self.receive(timeout)

    def send(self, command: Mapping[str, Any], marked: bool = False) -> Optional[Exchange]:
        """Send one command (@marked: its replies come with marks); the failure, if any."""
        self._out.marked = marked
        line = json.dumps(command).encode() + b"\n"
        try:
            while line:
                line = line[os.write(self._commands, line):]
        except OSError:
            self._out.read()
            return Exchange(None, self._out.next_piece(), DRIVER_DIED, "the driver exited")
        return None

    def receive(self, timeout: float) -> Exchange:
        """The next reply within @timeout seconds, with what the C printed before it."""
        deadline = time.monotonic() + timeout
        while not self._lines:
            left = deadline - time.monotonic()
            if left <= 0:
                self._out.read()
                return Exchange(None, self._out.next_piece(), TIMEOUT,
                                f"timeout after {timeout:g} s")
            watched = [self._replies, self._output] if self._out.open else [self._replies]
            # In slices: a signal that lands just before select() blocks would otherwise
            # wait for the whole timeout to reach its handler.
            ready, _, _ = select.select(watched, [], [], min(left, WAIT_SLICE_S))
            if self._output in ready:
                self._out.read()
            if self._replies in ready:
                try:
                    chunk = os.read(self._replies, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    self._out.read()
                    how = "the driver exited" + (
                        f" in the middle of a reply: {bytes(self._pending)!r}"
                        if self._pending else "")
                    return Exchange(None, self._out.next_piece(), DRIVER_DIED, how)
                *lines, rest = (self._pending + chunk).split(b"\n")
                self._lines.extend(lines)
                self._pending = rest
        line = self._lines.popleft()
        if not self._out.done:  # the piece of a reply in a batch may be in already
            self._out.read()  # what the C printed before it replied
        output = self._out.next_piece()
        try:
            reply = _decode_reply(line)
        except ValueError:  # UnicodeDecodeError included
            reply = None
        if not isinstance(reply, dict):
            shown = line[:SHOWN_REPLY_BYTES]
            more = f" (and {len(line) - len(shown)} more bytes)" if len(line) > len(shown) else ""
            return Exchange(None, output, PROTOCOL_ERROR,
                            f"undecodable reply from the driver: {shown!r}{more}")
        return Exchange(reply, output)

    def close(self) -> None:
        """Kill the driver's process group (its run child too) and reap it."""
        if self._closed:
            return
        self._closed = True
        _open_channels.discard(self)
        for descriptor in (self._commands, self._lifeline):
            os.close(descriptor)
        try:  # the leader is not reaped yet, so the group id is still its own
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass  # the whole group has exited already
        self.process.wait()
        for descriptor in (self._replies, self._output):
            os.close(descriptor)
