"""A qtest-capable qemu-system-x86_64, built from Debian's QEMU 10.0.x source.

Debian 12's qemu-system-x86 (7.2) is built without the qtest accelerator, so the
end-to-end engine (engines/e2e.py) needs a binary of its own. It is built from
trixie's qemu source package, the same package `qthrottle fetch-qemu` fetches for
the tests, with the smallest configuration that has what the engine drives: the
pc machine, IDE, the CMOS RTC, and the blkdebug, null-co, raw and quorum block
drivers. qtest needs no TCG; fdt is not needed for x86 and --disable-download
keeps meson off the network (Debian's +ds tarball has no firmware, which the
engine replaces with a dummy -bios image that no CPU ever runs).

The result is cached in ``<cache>/qemu-build/<key>/``, where key hashes the .dsc
(which pins the checksums of every source tarball) and the build recipe below. An
entry holds the binary, the ``monitor/`` and ``qapi/`` directories it was built from
(so that the harness driver and the model read exactly that source) and
BUILD.json. Entries are assembled in a temporary directory and published by a
rename, under a lock: there is never a half-written entry.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from qthrottle.core import cache_dir

from .qemu_sources import (
    QemuSourceError,
    check_space,
    download_source_package,
    dsc_version,
    file_lock,
    unpack_source_package,
)

BUILD_RELEASE = "trixie"
TARGET = "qemu-system-x86_64"
CONFIGURE_ARGS = (
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--disable-docs",
    "--disable-tcg",
    "--enable-kvm",
    "--disable-werror",
    "--disable-install-blobs",
    "--disable-fdt",
    "--disable-download",
)
# Bumped when the recipe changes in a way CONFIGURE_ARGS does not show.
RECIPE_VERSION = 1
_KEPT_DIRS = ("monitor", "qapi")
_TMP_PREFIX = ".tmp-build-"
# Source (~420 MB), build directory (~260 MB) and the entry (~65 MB), with room.
_MIN_FREE_BYTES = 1500 * 1024 * 1024
_NINJA_STATUS = re.compile(r"^\[(\d+)/(\d+)\] ")


class QemuBuildError(QemuSourceError):
    """An expected failure while building QEMU (message is user-facing)."""


@dataclass(frozen=True)
class QemuBuild:
    """A cached build: the binary, the source tree it came from, and how it was made."""

    root: Path
    info: Dict[str, Any]

    @property
    def binary(self) -> Path:
        return self.root / TARGET

    @property
    def tree(self) -> Path:
        """monitor/ and qapi/ of the source the binary was built from."""
        return self.root

    @property
    def version(self) -> str:
        return str(self.info.get("version", "?"))


def builds_root() -> Path:
    return cache_dir() / "qemu-build"


def recipe() -> Dict[str, Any]:
    return {"release": BUILD_RELEASE, "target": TARGET, "configure": list(CONFIGURE_ARGS),
            "recipe_version": RECIPE_VERSION}


def recipe_digest() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()


def build_key(dsc: Path) -> str:
    """The cache key: the source (its .dsc pins every tarball's checksum) and the recipe."""
    digest = hashlib.sha256(dsc.read_bytes())
    digest.update(recipe_digest().encode())
    return digest.hexdigest()[:16]


def _entry(path: Path) -> Optional[QemuBuild]:
    """A complete entry of the current recipe at @path, or None."""
    if path.name.startswith("."):
        return None
    try:
        info = json.loads((path / "BUILD.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    build = QemuBuild(path, info)
    complete = (info.get("recipe_digest") == recipe_digest() and build.binary.is_file()
                and all((path / d).is_dir() for d in _KEPT_DIRS))
    return build if complete else None


def cached_build() -> Optional[QemuBuild]:
    """The newest cached build of the current recipe, or None. Never touches the network."""
    try:
        entries = list(builds_root().iterdir())
    except OSError:
        return None
    builds = [b for b in map(_entry, entries) if b is not None]
    return max(builds, key=lambda b: str(b.info.get("built", ""))) if builds else None


def _require_build_tools() -> None:
    if importlib.util.find_spec("mesonbuild") is None:
        raise QemuBuildError(
            f"meson is not installed in this Python ({sys.executable}): QEMU 10.0 needs "
            "meson >= 1.5 (pip install 'qthrottle[e2e]'; ./dev installs it)")
    missing = [tool for tool in ("cc", "pkg-config", "dpkg-source")
               if shutil.which(tool) is None]
    if shutil.which("ninja") is None and shutil.which("ninja-build") is None:
        missing.append("ninja")
    if missing:
        raise QemuBuildError(
            f"not found: {', '.join(missing)} (Debian packages gcc, pkg-config, dpkg-dev, "
            "ninja-build, libglib2.0-dev and zlib1g-dev; ./dev installs them)")


class _Steps:
    """ninja's [N/M] lines as a progress bar on a terminal, else a few log lines."""

    def __init__(self, log: Callable[[str], None], stream: IO[str]) -> None:
        self.log = log
        console = Console(file=stream)
        self.progress: Optional[Progress] = None
        if console.is_terminal and not console.is_dumb_terminal:
            self.progress = Progress(TextColumn("building QEMU"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total}"),
                                     TimeElapsedColumn(), console=console, transient=True)
        self.task: Optional[TaskID] = None
        self.quarter = 0

    def __enter__(self) -> _Steps:  # noqa: PYI034 (typing.Self needs Python 3.11)
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task("build", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str) -> None:
        match = _NINJA_STATUS.match(text)
        if match is None:
            return
        done, total = int(match.group(1)), int(match.group(2))
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done, total=total)
        elif done * 4 >= (self.quarter + 1) * total:
            self.quarter = done * 4 // total
            self.log(f"ninja: {done}/{total} steps")


def _run_logged(command: List[str], cwd: Path, log_file: Path,
                on_line: Callable[[str], None] = lambda _: None) -> None:
    """Run a build command at low priority, its output to @log_file; QemuBuildError on failure.

    The command runs in its own process group, killed with it on any exception
    (Ctrl-C included), so that no compiler outlives an interrupted build.
    """
    env = dict(os.environ, LC_ALL="C")
    nice = shutil.which("nice")  # a build shares the machine
    with open(log_file, "a", encoding="utf-8", errors="replace") as output:
        output.write(f"$ {' '.join(command)}\n")
        output.flush()
        process = subprocess.Popen([*([nice, "-n", "10"] if nice else []), *command], cwd=cwd,
                                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace",
                                   start_new_session=True)
        try:
            assert process.stdout is not None
            for text in process.stdout:
                output.write(text)
                on_line(text)
            status = process.wait()
        except BaseException:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    if status != 0:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        tail = "\n".join(f"  {line}" for line in lines[-15:] if line.strip())
        raise QemuBuildError(f"{command[0]} failed (exit {status}); the end of its output:\n"
                             f"{tail}")


def build_qemu(log: Callable[[str], None] = print, refresh: bool = False,
               progress_stream: IO[str] = sys.stderr) -> QemuBuild:
    """The cached build, or a new one from trixie's qemu source package (minutes).

    Raises QemuBuildError (QemuSourceError) with a user-facing message.
    """
    if not refresh:
        found = cached_build()
        if found is not None:
            log(f"using cached QEMU {found.version} build {found.root}")
            return found
    _require_build_tools()
    root = builds_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise QemuBuildError(f"cannot create {root}: {error}") from error
    with file_lock(root / ".lock"):  # a second build waits, then reuses this one
        found = None if refresh else cached_build()  # built while we waited?
        if found is not None:
            log(f"using cached QEMU {found.version} build {found.root}")
            return found
        for stale in root.glob(_TMP_PREFIX + "*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        check_space(root, _MIN_FREE_BYTES, "building QEMU")
        work = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
        try:
            return _build_in(work, root, log, progress_stream)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _build_in(work: Path, root: Path, log: Callable[[str], None],
              progress_stream: IO[str]) -> QemuBuild:
    download = work / "download"
    download.mkdir()
    dsc = download_source_package(BUILD_RELEASE, download, log)
    version = dsc_version(dsc)
    key = build_key(dsc)
    existing = _entry(root / key)
    if existing is not None:
        log(f"using cached QEMU {version} build {existing.root}")
        return existing
    log(f"{BUILD_RELEASE}: unpacking qemu {version} (dpkg-source -x)")
    source, build_dir, log_file = work / "src", work / "build", work / "build.log"
    unpack_source_package(dsc, source)
    build_dir.mkdir()
    configure = [str(source / "configure"), f"--python={sys.executable}", *CONFIGURE_ARGS]
    start = time.perf_counter()
    log(f"configuring QEMU {version}: {' '.join(CONFIGURE_ARGS)}")
    _run_logged(configure, build_dir, log_file)
    ninja = shutil.which("ninja") or shutil.which("ninja-build") or "ninja"
    log(f"building {TARGET} with ninja (a few minutes; log: {log_file} while it runs)")
    with _Steps(log, progress_stream) as steps:
        _run_logged([ninja, TARGET], build_dir, log_file, steps.line)
    seconds = time.perf_counter() - start
    entry = work / "entry"
    entry.mkdir()
    shutil.copy2(build_dir / TARGET, entry / TARGET)
    for name in _KEPT_DIRS:
        shutil.copytree(source / name, entry / name, symlinks=True)
    info = {**recipe(), "recipe_digest": recipe_digest(), "version": version,
            "dsc": dsc.name, "dsc_sha256": hashlib.sha256(dsc.read_bytes()).hexdigest(),
            "build_seconds": round(seconds, 1),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (entry / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    superseded = [p for p in root.iterdir() if p.name != key and _entry(p) is not None]
    entry.rename(root / key)  # atomic publish
    for old in superseded:
        shutil.rmtree(old, ignore_errors=True)
    log(f"built QEMU {version} in {seconds:.0f} s (configure and ninja): {root / key / TARGET}")
    return QemuBuild(root / key, info)
