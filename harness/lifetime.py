"""Child processes that cannot outlive qthrottle, however it ends (SIGKILL included).

A driver watches its lifeline (harness/protocol.py). Other children, which are
Python processes (qthrottle mutate's workers, CrossHair's checks), ask the kernel to
kill them when their parent dies: PR_SET_PDEATHSIG, Linux's, which the other systems
QEMU is developed on lack (there the command's own clean-up is all there is). A
command that starts children of its own (a build: ninja and its compilers) runs under
a watchdog that the kernel tells of the death, and that kills the command's whole
process group.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import List, Sequence

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """This process gets @signum when @parent dies; it exits now if @parent already has.

    The kernel watches the thread that started this process: call it only in a
    process started by a thread that outlives it (the main thread, or a thread that
    waits for it).
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum))
    if os.getppid() != parent:  # @parent died before the request took effect
        os._exit(1)


def command_dying_with_us(argv: Sequence[str]) -> List[str]:
    """@argv as a command that dies with this process: run through this module, which
    asks for the parent-death signal, then becomes @argv (exec keeps the request)."""
    return [sys.executable, "-m", "qthrottle.harness.lifetime", str(os.getpid()), *argv]


def group_dying_with_us(argv: Sequence[str]) -> List[str]:
    """@argv as a command whose whole process group dies with this process. Start it
    as the leader of a new process group (start_new_session): killing that group
    still ends it all, and so does this process's death, SIGKILL included."""
    return [sys.executable, "-m", "qthrottle.harness.lifetime", "--group", str(os.getpid()),
            *argv]


def _watch_group(parent: int, argv: Sequence[str]) -> int:
    """Run @argv in this process's group; kill the group when @parent dies."""
    def kill_group(signum: int, _frame: object) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(signal.SIGTERM, kill_group)
    die_with_parent(parent, signal.SIGTERM)
    command = subprocess.Popen(argv)
    code = command.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    if sys.argv[1] == "--group":
        sys.exit(_watch_group(int(sys.argv[2]), sys.argv[3:]))
    die_with_parent(int(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
