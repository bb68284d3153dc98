"""A qemu-system process under qtest, with its qtest and QMP connections.

QEMU runs with ``-accel qtest``: no CPU executes, and the virtual clock (the
clock of the event throttle, monitor_get_event_clock()) moves only when qtest's
``clock_step`` or ``clock_set`` says so. Both connections are socket pairs handed
to QEMU as file descriptors (``-chardev socket,fd=N``): nothing is created on
disk and there is no connect race. qtest's line protocol is written here (one
command per line, one ``OK ...`` or ``FAIL ...`` line back, in order); QMP goes
through QEMU's own client library, qemu.qmp.

Every line sent and received on both connections is kept, in order, in
``transcript``: it is the replay of a run, with ``command_line``.

QEMU never outlives its owner: it runs in a process group of its own that
close() kills (also after a timeout), and it gets SIGKILL from the kernel when the
Python process that started it dies, even by SIGKILL: util-linux's ``setpriv
--pdeathsig KILL`` sets PR_SET_PDEATHSIG and execs QEMU (a preexec_fn would run
Python in the child, unsafe beside threads). The kernel ties that signal to the
thread that started QEMU, so start it from a thread that outlives it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Coroutine, Dict, List, Optional, Tuple, TypeVar

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.error import QMPError

from qthrottle.core import QthrottleError

T = TypeVar("T")


class QemuError(QthrottleError):
    """QEMU could not start, died, or answered what the protocol does not allow."""


class QemuTimeout(QemuError):
    """QEMU did not answer in time (it is killed)."""


class QemuProcess:
    """One QEMU process: qtest commands, QMP commands and events, and the transcript.

    >>> with QemuProcess(binary, ["-machine", "pc"]) as qemu:
    ...     qemu.qtest("clock_step 1000")
    ['OK 1000']
    """

    def __init__(self, binary: Path, args: Sequence[str],
                 env: Optional[Mapping[str, str]] = None, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.transcript: List[Tuple[str, str]] = []  # (channel and direction, text)
        self._events: List[Dict[str, Any]] = []
        qtest_ours, qtest_theirs = socket.socketpair()
        qmp_ours, qmp_theirs = socket.socketpair()
        self._qtest = qtest_ours
        self._qtest.settimeout(timeout)
        self._qtest_lines = qtest_ours.makefile("rb")
        self.command_line = [
            str(binary), *args,
            "-chardev", f"socket,id=qtest,fd={qtest_theirs.fileno()}",
            "-qtest", "chardev:qtest", "-qtest-log", "/dev/null",
            "-chardev", f"socket,id=qmp,fd={qmp_theirs.fileno()}",
            "-mon", "chardev=qmp,mode=control",
        ]
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise QemuError("setpriv not found (util-linux): it makes QEMU die with this "
                            "process")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        try:
            self.process = subprocess.Popen(
                [setpriv, "--pdeathsig", "KILL", "--", *self.command_line],
                stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
                env={**os.environ, **(env or {})}, start_new_session=True,
                pass_fds=(qtest_theirs.fileno(), qmp_theirs.fileno()))
        except OSError as error:
            self._stderr.close()
            raise QemuError(f"cannot run {binary}: {error}") from None
        finally:
            qtest_theirs.close()
            qmp_theirs.close()
        self._loop = asyncio.new_event_loop()
        self._qmp = QMPClient("qthrottle-e2e")
        self._listener = EventListener()
        self._qmp.register_listener(self._listener)
        try:
            self._run(self._qmp.connect(qmp_ours))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> QemuProcess:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        """What QEMU printed so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()

    def _died(self, doing: str) -> QemuError:
        """The error for a connection that broke: how QEMU ended, and what it printed."""
        try:  # a closed connection: the exit status follows within moments
            status: Optional[int] = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            status = None
        how = "is not answering" if status is None else (
            f"was killed by signal {-status}" if status < 0 else f"exited with status {status}")
        said = self.stderr()
        return QemuError(f"QEMU {how} ({doing})" + (f": {said}" if said else ""))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one QMP coroutine on this process's private event loop, with the timeout."""
        try:
            return self._loop.run_until_complete(asyncio.wait_for(coroutine, self.timeout))
        except asyncio.TimeoutError:
            self._kill()
            raise QemuTimeout(f"QEMU did not answer on QMP within {self.timeout:g} s") from None
        except (QMPError, OSError, EOFError) as error:
            if isinstance(error, QMPError) and self.process.poll() is None and not isinstance(
                    error.__cause__, (OSError, EOFError)):
                raise QemuError(f"QMP: {error}") from None
            raise self._died("QMP connection") from None

    # ------------------------------------------------------------------ qtest

    def qtest(self, *commands: str) -> List[str]:
        """Send qtest commands at once (pipelined); their reply lines, in order."""
        for command in commands:
            self.transcript.append(("qtest>", command))
        try:
            self._qtest.sendall("".join(f"{c}\n" for c in commands).encode())
            replies = []
            for _ in commands:
                line = self._qtest_lines.readline()
                if not line:
                    raise self._died("qtest connection closed")
                reply = line.decode("utf-8", "replace").rstrip("\n")
                self.transcript.append(("qtest<", reply))
                replies.append(reply)
        except socket.timeout:
            self._kill()
            raise QemuTimeout(f"QEMU did not answer qtest within {self.timeout:g} s "
                              f"(sent: {commands[0]})") from None
        except OSError:
            raise self._died("qtest connection") from None
        return replies

    def qtest_ok(self, *commands: str) -> List[str]:
        """qtest commands that must succeed: their replies after "OK"."""
        replies = self.qtest(*commands)
        for command, reply in zip(commands, replies):
            if reply != "OK" and not reply.startswith("OK "):
                raise QemuError(f"qtest: {command!r} answered {reply!r}")
        return [reply[3:] for reply in replies]

    # -------------------------------------------------------------------- QMP

    def qmp(self, command: str, arguments: Optional[Dict[str, Any]] = None) -> Any:
        """Execute a QMP command; its return value. Events that came first are kept."""
        message: Dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.transcript.append(("qmp>", json.dumps(message)))
        result = self._run(self._qmp.execute(command, arguments))
        # The reader hands messages over in arrival order: every event QEMU sent
        # before this reply is in the listener's queue now.
        for event in self._listener.clear():
            self.transcript.append(("qmp<", json.dumps(dict(event))))
            self._events.append(dict(event))
        self.transcript.append(("qmp<", json.dumps({"return": result})))
        return result

    def events(self) -> List[Dict[str, Any]]:
        """The QMP events received before the last QMP reply, not yet taken."""
        taken, self._events = self._events, []
        return taken

    # ------------------------------------------------------------------ close

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        """Disconnect and end QEMU (SIGTERM, then SIGKILL to its process group)."""
        with contextlib.suppress(QMPError, OSError, EOFError, asyncio.TimeoutError):
            self._loop.run_until_complete(asyncio.wait_for(self._qmp.disconnect(), 2))
        self._loop.close()
        self._qtest_lines.close()
        self._qtest.close()
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._kill()
        self._stderr.close()
