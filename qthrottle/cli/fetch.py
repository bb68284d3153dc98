"""qthrottle fetch-qemu: Debian's QEMU sources, cached, as test inputs."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from qthrottle.core import EXIT_HOLDS, QthrottleError, cache_dir
from qthrottle.harness import qemu_sources
from qthrottle.harness.qemu_build import build_qemu
from qthrottle.harness.qemu_sources import RELEASES, QemuSourceError


def cmd_fetch(args: argparse.Namespace) -> int:
    releases = args.releases or list(RELEASES)
    try:
        trees = qemu_sources.fetch_qemu(releases, refresh=args.refresh,
                                        log=lambda msg: print(msg, file=sys.stderr))
    except QemuSourceError as error:  # apt's output, folded into the one error line
        raise QthrottleError(" ".join(str(error).split())) from None
    for release, tree in trees.items():
        print(f"{release}: {tree}")
    if args.build:
        build = build_qemu(log=lambda message: print(message, file=sys.stderr),
                           refresh=args.refresh)
        print(f"qemu-system-x86_64: {build.binary} (QEMU {build.version})")
    return EXIT_HOLDS


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "fetch-qemu", help="fetch Debian's QEMU sources (monitor/, qapi/) into the cache",
        description="Fetch Debian's qemu source packages ("
        + ", ".join(f"{release}: QEMU {series}" for release, series in RELEASES.items())
        + ") with apt-get source, using deb-src entries derived from this machine's apt "
        f"sources, and cache their monitor/ and qapi/ directories in {cache_dir()} "
        "(QTHROTTLE_CACHE_DIR overrides).")
    command.add_argument("--release", metavar="NAME", action="append", dest="releases",
                         choices=list(RELEASES),
                         help="Debian release to fetch (repeatable; default: all of "
                         + ", ".join(RELEASES) + ")")
    command.add_argument("--refresh", action="store_true",
                         help="fetch (and build) again even if already cached")
    command.add_argument("--build", action="store_true",
                         help="also build a qtest-capable qemu-system-x86_64 from Debian's "
                         "QEMU 10.0.x source for `qthrottle e2e` (minutes, once; cached)")
    command.set_defaults(func=cmd_fetch)
