"""Child processes that cannot outlive qthrottle, however it ends (SIGKILL included).

A driver watches its lifeline (harness/protocol.py). Other children, which are
Python processes (qthrottle mutate's workers, CrossHair's checks), ask the kernel to
kill them when their parent dies: PR_SET_PDEATHSIG, Linux's, which the other systems
QEMU is developed on lack (there the command's own clean-up is all there is).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import List, Sequence

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """This process gets SIGKILL when @parent dies; it exits now if @parent already has.

    The kernel watches the thread that started this process: call it only in a
    process started by a thread that outlives it (the main thread, or a thread that
    waits for it).
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # @parent died before the request took effect
        os._exit(1)


def command_dying_with_us(argv: Sequence[str]) -> List[str]:
    """@argv as a command that dies with this process: run through this module, which
    asks for the parent-death signal, then becomes @argv (exec keeps the request)."""
    return [sys.executable, "-m", "qthrottle.harness.lifetime", str(os.getpid()), *argv]


if __name__ == "__main__":
    die_with_parent(int(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
