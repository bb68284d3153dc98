"""The driver protocol, Python side: the one place that knows how the harness talks to
a compiled driver (harness/shims/driver.c holds the other end).

Framing: one JSON object per line, commands on one pipe and replies on another. The
code under test keeps stdout and stderr, which go to a third pipe: what it prints is
captured per request (at most OUTPUT_CAP bytes) and never mistaken for a reply. A
fourth pipe is the driver's lifeline: the harness holds its only write end and never
writes, so the driver reads end of file exactly when the harness is gone, however it
died (SIGKILL included), and exits with its child.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

PROTOCOL_VERSION = 2  # driver.c's QTHROTTLE_PROTOCOL
OUTPUT_CAP = 64 * 1024  # bytes of the C's output kept per request
SHOWN_REPLY_BYTES = 200  # of an undecodable reply, in the harness failure
_READS_PER_WAKEUP = 16  # a flood of output never starves the deadline check
WAIT_SLICE_S = 0.25  # the longest a reply is waited for without looking at signals

# The failures of the channel itself, as Crash kinds (model/invariants.py: UNKNOWN).
TIMEOUT, DRIVER_DIED, PROTOCOL_ERROR = "timeout", "driver-died", "protocol-error"


@dataclass(frozen=True)
class Exchange:
    """One request's outcome: the reply, or why there is none; the C's output meanwhile."""

    reply: Optional[Dict[str, Any]]
    output: str
    failure: Optional[str] = None  # TIMEOUT, DRIVER_DIED or PROTOCOL_ERROR
    how: str = ""  # the failure, for people (with the bytes of an undecodable reply)


class _Output:
    """The C's output during one request: the first OUTPUT_CAP bytes, and a count of the rest."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.dropped = 0

    def read(self, descriptor: int) -> bool:
        """Read what is there; False once the writers are gone."""
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(descriptor, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            room = max(0, OUTPUT_CAP - len(self.kept))
            self.kept += chunk[:room]
            self.dropped += len(chunk) - min(room, len(chunk))
        return True

    def text(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n[... {self.dropped} more bytes of output not kept]\n"
        return text


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
        os.set_blocking(self._output, False)
        self._pending = bytearray()  # reply bytes after the last complete line
        self._closed = False
        _open_channels.add(self)

    def greeting(self, timeout: float) -> Exchange:
        """The driver's first line: what it is and what it was built from."""
        return self._receive(timeout, _Output())

    def request(self, command: Mapping[str, Any], timeout: float) -> Exchange:
        """Send one command; its reply within @timeout seconds, or the failure."""
        output = _Output()
        line = json.dumps(command).encode() + b"\n"
        try:
            while line:
                line = line[os.write(self._commands, line):]
        except OSError:
            output.read(self._output)
            return Exchange(None, output.text(), DRIVER_DIED, "the driver exited")
        return self._receive(timeout, output)

    def _receive(self, timeout: float, output: _Output) -> Exchange:
        deadline = time.monotonic() + timeout
        watched: List[int] = [self._replies, self._output]
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                output.read(self._output)
                return Exchange(None, output.text(), TIMEOUT, f"timeout after {timeout:g} s")
            # In slices: a signal that lands just before select() blocks would otherwise
            # wait for the whole timeout to reach its handler.
            ready, _, _ = select.select(watched, [], [], min(left, WAIT_SLICE_S))
            if self._output in ready and not output.read(self._output):
                watched.remove(self._output)
            if self._replies in ready:
                try:
                    chunk = os.read(self._replies, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    output.read(self._output)
                    how = "the driver exited" + (
                        f" in the middle of a reply: {bytes(self._pending)!r}"
                        if self._pending else "")
                    return Exchange(None, output.text(), DRIVER_DIED, how)
                self._pending += chunk
        line, _, rest = bytes(self._pending).partition(b"\n")
        self._pending = bytearray(rest)
        output.read(self._output)  # what the C printed before it replied
        try:
            reply = json.loads(line)
        except ValueError:  # UnicodeDecodeError included
            reply = None
        if not isinstance(reply, dict):
            shown = line[:SHOWN_REPLY_BYTES]
            more = f" (and {len(line) - len(shown)} more bytes)" if len(line) > len(shown) else ""
            return Exchange(None, output.text(), PROTOCOL_ERROR,
                            f"undecodable reply from the driver: {shown!r}{more}")
        return Exchange(reply, output.text())

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
