"""Real QEMU sources as test inputs: Debian's qemu source packages.

The suite's real-world inputs are QEMU's own ``monitor/`` and ``qapi/`` directories.
They are never committed to this repository; this module fetches them at test time:

1. deb-src entries are derived from the machine's own apt sources (the entry that is
   Debian's main archive), never from a hard-coded mirror;
2. ``apt-get update`` and ``apt-get source --download-only`` run against a private apt
   state under the cache directory, so the system's apt state is untouched;
3. ``dpkg-source -x`` unpacks the package with Debian's patches applied, and only
   ``monitor/`` and ``qapi/`` are kept, in ``<cache>/qemu/<release>-<version>/``.

A build of the whole source (harness/qemu_build.py, the end-to-end engine's
qemu-system binary) downloads and unpacks the same package through
`download_source_package` and `unpack_source_package`, into a directory of its own.

The cache directory is ``$QTHROTTLE_CACHE_DIR``, else ``$XDG_CACHE_HOME/qthrottle``,
else ``~/.cache/qthrottle``. A cached tree is reused without network access.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qthrottle.core import QthrottleError, cache_dir

__all__ = [
    "RELEASES",
    "AptSource",
    "DebianArchive",
    "QemuSourceError",
    "apt_source_files",
    "cached_tree",
    "check_space",
    "deb_src_list",
    "debian_archive",
    "download_source_package",
    "dsc_version",
    "fetch_qemu",
    "file_lock",
    "is_qemu_tree",
    "parse_apt_sources",
    "parse_deb822",
    "parse_one_line",
    "unpack_source_package",
]


class QemuSourceError(QthrottleError):
    """An expected failure while obtaining QEMU sources (message is user-facing)."""


#: Debian release -> QEMU series shipped in it.
RELEASES: dict[str, str] = {"bullseye": "5.2", "bookworm": "7.2", "trixie": "10.0"}

#: Debian release codenames (and suite aliases) that name Debian's main archive.
DEBIAN_SUITES = frozenset(
    {
        "buzz", "rex", "bo", "hamm", "slink", "potato", "woody", "sarge", "etch",
        "lenny", "squeeze", "wheezy", "jessie", "stretch", "buster", "bullseye",
        "bookworm", "trixie", "forky", "duke", "sid",
        "oldoldstable", "oldstable", "stable", "testing", "unstable",
    }
)  # fmt: skip

DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ETC_APT = Path("/etc/apt")
KEPT_DIRS = ("monitor", "qapi")
# Extracting a qemu source package takes ~400 MB for a moment, plus the download.
_MIN_FREE_BYTES = 700 * 1024 * 1024
_TMP_PREFIX = ".tmp-fetch-"
_TIMEOUT_S = 900.0


# --------------------------------------------------------------------------- cache


def is_qemu_tree(path: Path) -> bool:
    """True if ``path`` has monitor/monitor.c and qapi/qapi-schema.json.

    True for a cached tree and for a full QEMU checkout alike.
    """
    try:
        p = Path(path)
        return (p / "monitor" / "monitor.c").is_file() and (
            p / "qapi" / "qapi-schema.json"
        ).is_file()
    except OSError:
        return False


def _check_release(release: str) -> str:
    if release not in RELEASES:
        known = ", ".join(sorted(RELEASES))
        raise QemuSourceError(f"unknown Debian release {release!r} (known: {known})")
    return release


def _release_trees(release: str) -> list[Path]:
    root = cache_dir() / "qemu"
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    prefix = release + "-"
    return [
        p
        for p in entries
        if p.name.startswith(prefix)
        and p.name[len(prefix) : len(prefix) + 1].isdigit()
        and is_qemu_tree(p)
    ]


def cached_tree(release: str) -> Path | None:
    """The cached QEMU tree root for a Debian release, or None if not cached.

    Never touches the network. If several versions are cached, the newest fetch wins.
    """
    trees = _release_trees(_check_release(release))
    if not trees:
        return None
    return max(trees, key=lambda p: (p.stat().st_mtime, p.name))


# ------------------------------------------------------------------- apt sources


@dataclass(frozen=True)
class AptSource:
    """One apt source entry (one-line or deb822), as far as this module needs it."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""


@dataclass(frozen=True)
class DebianArchive:
    """Debian's main archive as configured on this machine."""

    uri: str
    keyring: str | None  # a keyring path, fingerprints, or an inline key block
    check_valid_until: str | None = None
    origin: str = ""


def apt_source_files(etc_apt: Path = ETC_APT) -> list[Path]:
    """apt's source files in apt's order: sources.list, then sources.list.d/ sorted.

    Only names ending in .list/.sources count (apt ignores the others, e.g.
    ``*.disabled-by-farm``).
    """
    files: list[Path] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        files.append(main)
    parts = etc_apt / "sources.list.d"
    try:
        names = sorted(p for p in parts.iterdir() if p.is_file())
    except OSError:
        names = []
    files.extend(p for p in names if p.name.endswith((".list", ".sources")))
    return files


def parse_one_line(text: str, origin: str = "") -> list[AptSource]:
    """Parse the one-line format: ``deb [opts] URI suite [components...]``."""
    out: list[AptSource] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, *tail = line.split(None, 1)
        if kind not in ("deb", "deb-src") or not tail:
            continue
        rest = tail[0].strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                continue  # malformed; apt rejects it too
            for opt in rest[1:end].split():
                key, sep, value = opt.partition("=")
                if sep:
                    options[key.rstrip("+-").lower()] = value
            rest = rest[end + 1 :].strip()
        words = rest.split()
        if len(words) < 2:
            continue
        out.append(
            AptSource(
                types=(kind,),
                uris=(words[0],),
                suites=(words[1],),
                components=tuple(words[2:]),
                signed_by=options.get("signed-by"),
                options=options,
                origin=f"{origin}:{lineno}",
            )
        )
    return out


def _deb822_stanzas(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    fields: dict[str, str] = {}
    start = 0
    last: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("#"):
            continue  # comment lines do not end a stanza
        if not line.strip():
            if fields:
                yield start, fields
            fields, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:  # continuation line; " ." is an empty line
                cont = line.strip()
                fields[last] += "\n" + ("" if cont == "." else cont)
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if not fields:
            start = lineno
        last = name.strip().lower()
        fields[last] = value.strip()
    if fields:
        yield start, fields


def parse_deb822(text: str, origin: str = "") -> list[AptSource]:
    """Parse the deb822 format (``*.sources``): Types/URIs/Suites/Components stanzas."""
    out: list[AptSource] = []
    for lineno, f in _deb822_stanzas(text):
        if f.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        types = tuple(f.get("types", "").split())
        uris = tuple(f.get("uris", "").split())
        suites = tuple(f.get("suites", "").split())
        if not types or not uris or not suites:
            continue
        signed_by = f.get("signed-by", "").strip() or None
        options = {k: v for k, v in f.items() if k == "check-valid-until"}
        out.append(
            AptSource(
                types=types,
                uris=uris,
                suites=suites,
                components=tuple(f.get("components", "").split()),
                signed_by=signed_by,
                options=options,
                origin=f"{origin}:{lineno}",
            )
        )
    return out


def parse_apt_sources(paths: Iterable[Path] | None = None) -> list[AptSource]:
    """Parse apt source files; by default the machine's (see `apt_source_files`).

    ``*.sources`` files are deb822, ``sources.list`` and ``*.list`` are one-line;
    any other name is skipped, as apt does. Unreadable files are skipped.
    """
    files = apt_source_files() if paths is None else [Path(p) for p in paths]
    out: list[AptSource] = []
    for path in files:
        if path.name.endswith(".sources"):
            parser = parse_deb822
        elif path.name.endswith(".list"):
            parser = parse_one_line
        else:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out.extend(parser(text, str(path)))
    return out


def _is_debian_main_archive(src: AptSource) -> bool:
    if not set(src.types) & {"deb", "deb-src"} or "main" not in src.components:
        return False
    if not any(u for u in src.uris if not u.startswith("cdrom:")):
        return False
    # A bare codename ("bookworm"), not "bookworm-security", "bookworm/updates", ...
    return any(s in DEBIAN_SUITES for s in src.suites)


def debian_archive(sources: Sequence[AptSource] | None = None) -> DebianArchive:
    """The first apt entry that is Debian's main archive (raises QemuSourceError)."""
    if sources is None:
        sources = parse_apt_sources()
    for src in sources:
        if not _is_debian_main_archive(src):
            continue
        uri = next(u for u in src.uris if not u.startswith("cdrom:"))
        keyring = src.signed_by
        if keyring is None and DEFAULT_KEYRING.is_file():
            keyring = str(DEFAULT_KEYRING)
        return DebianArchive(
            uri=uri,
            keyring=keyring,
            check_valid_until=src.options.get("check-valid-until"),
            origin=src.origin,
        )
    raise QemuSourceError(
        "no Debian archive entry was found in the apt sources (looked for a 'deb' entry "
        "with a Debian release codename as suite and component 'main' in "
        f"{ETC_APT}/sources.list and {ETC_APT}/sources.list.d/*.list|*.sources); "
        "alternatively set QTHROTTLE_QEMU_TREE to a QEMU git checkout"
    )


def deb_src_list(
    archive: DebianArchive, releases: Iterable[str], keyring_path: Path | None = None
) -> str:
    """The private sources.list text: one ``deb-src`` line per release.

    ``keyring_path`` replaces the archive's keyring (used for inline key blocks).
    """
    opts = []
    keyring = str(keyring_path) if keyring_path is not None else archive.keyring
    if keyring:
        opts.append(f"signed-by={keyring}")
    if archive.check_valid_until:
        opts.append(f"check-valid-until={archive.check_valid_until}")
    optstr = f"[{' '.join(opts)}] " if opts else ""
    return "".join(f"deb-src {optstr}{archive.uri} {r} main\n" for r in releases)


# ---------------------------------------------------------------------- commands


def _run(cmd: Sequence[str], cwd: Path | None = None) -> str:
    """Run a command (no shell); return stdout; QemuSourceError on any failure."""
    shown = shlex.join(cmd)
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise QemuSourceError(f"command not found: {cmd[0]} (running: {shown})") from exc
    except subprocess.TimeoutExpired as exc:
        raise QemuSourceError(f"command timed out after {_TIMEOUT_S:.0f} s: {shown}") from exc
    except OSError as exc:
        raise QemuSourceError(f"cannot run {shown}: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        tail = "\n  ".join(lines[-8:]) or "(no output)"
        raise QemuSourceError(
            f"command failed (exit {proc.returncode}): {shown}\n  {tail}"
        )
    return proc.stdout


def _require_tools() -> None:
    if shutil.which("apt-get") is None:
        raise QemuSourceError(
            "apt-get not found: fetching Debian's QEMU sources needs a Debian-based "
            "system; alternatively set QTHROTTLE_QEMU_TREE to a QEMU git checkout"
        )
    if shutil.which("dpkg-source") is None:
        raise QemuSourceError(
            "dpkg-source not found: install the dpkg-dev package "
            "(apt-get install dpkg-dev; the project's bootstrap installs it)"
        )


def _apt_options(root: Path) -> list[str]:
    apt = root / "apt"
    opts = {
        "Dir::Etc::SourceList": apt / "sources.list",
        "Dir::Etc::SourceParts": apt / "parts",
        "Dir::State::Lists": apt / "lists",
        "Dir::Cache": apt / "cache",
    }
    out: list[str] = []
    for key, value in opts.items():
        out += ["-o", f"{key}={value}"]
    return out + ["-o", "Debug::NoLocking=1"]


def _prepare_apt(root: Path, archive: DebianArchive, releases: Sequence[str]) -> list[str]:
    apt = root / "apt"
    for sub in ("parts", "lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    keyring_path: Path | None = None
    if archive.keyring and "-----BEGIN PGP" in archive.keyring:
        # deb822 inline key block: apt's one-line format needs it in a file.
        keyring_path = apt / "archive-keyring.asc"
        keyring_path.write_text(archive.keyring.strip() + "\n", encoding="utf-8")
        keyring_path.chmod(0o644)
    text = "# written by qthrottle from " + archive.origin + "\n"
    text += deb_src_list(archive, releases, keyring_path)
    (apt / "sources.list").write_text(text, encoding="utf-8")
    return _apt_options(root)


def dsc_version(dsc: Path) -> str:
    """The Version field of a .dsc (e.g. 1:10.0.13+ds-0+deb13u1)."""
    for line in dsc.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise QemuSourceError(f"no Version field in {dsc}")


def _upstream_series(version: str) -> str:
    upstream = version.split(":", 1)[-1]
    m = re.match(r"(\d+)\.(\d+)", upstream)
    return f"{m.group(1)}.{m.group(2)}" if m else upstream


def _tree_name(release: str, version: str) -> str:
    return f"{release}-" + re.sub(r"[^A-Za-z0-9.+~_-]", "_", version)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the file @path (created) for the with block: one process at a time."""
    with open(path, "a", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _cache_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """Serialize fetches that share a cache directory."""
    return file_lock(root / ".fetch.lock")


def _remove_stale(root: Path) -> None:
    for p in root.iterdir():
        if p.name.startswith(_TMP_PREFIX) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def check_space(path: Path, needed: int, doing: str) -> None:
    """QemuSourceError unless @path's file system has @needed bytes free for @doing."""
    free = shutil.disk_usage(path).free
    if free < needed:
        raise QemuSourceError(
            f"not enough free disk space in {path}: {free // 2**20} MB free, {doing} needs "
            f"about {needed // 2**20} MB for a while (set QTHROTTLE_CACHE_DIR to use "
            "another place)"
        )


def _download(apt_opts: list[str], release: str, download: Path,
              log: Callable[[str], None]) -> Path:
    """apt-get source --download-only into @download; the package's .dsc."""
    log(f"{release}: downloading the qemu source package (apt-get source)")
    _run(["apt-get", *apt_opts, "source", "--download-only", f"qemu/{release}"],
         cwd=download)
    dscs = sorted(download.glob("qemu_*.dsc"))
    if len(dscs) != 1:
        found = ", ".join(p.name for p in download.iterdir()) or "nothing"
        raise QemuSourceError(
            f"apt-get source qemu/{release} did not yield one qemu .dsc (got: {found})"
        )
    version = dsc_version(dscs[0])
    if _upstream_series(version) != RELEASES[release]:
        raise QemuSourceError(
            f"Debian {release} ships qemu {version}, expected QEMU {RELEASES[release]}.x"
        )
    return dscs[0]


def unpack_source_package(dsc: Path, dest: Path) -> None:
    """dpkg-source -x: the whole source tree, Debian's patches applied, in @dest (new)."""
    _run(["dpkg-source", "--no-check", "-x", str(dsc), str(dest)], cwd=dsc.parent)


def _fetch_one(
    root: Path,
    apt_opts: list[str],
    release: str,
    archive: DebianArchive,
    log: Callable[[str], None],
) -> Path:
    check_space(root, _MIN_FREE_BYTES, "unpacking a qemu source package")
    work = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    try:
        download = work / "download"
        download.mkdir()
        dsc = _download(apt_opts, release, download, log)
        version = dsc_version(dsc)
        series = _upstream_series(version)
        log(f"{release}: unpacking qemu {version} with Debian's patches (dpkg-source -x)")
        src = work / "src"
        unpack_source_package(dsc, src)
        missing = [d for d in KEPT_DIRS if not (src / d).is_dir()]
        if missing:
            raise QemuSourceError(
                f"qemu {version} source has no {', '.join(d + '/' for d in missing)}"
            )
        tree = work / "tree"
        tree.mkdir()
        for d in KEPT_DIRS:
            shutil.copytree(src / d, tree / d, symlinks=True)
        shutil.rmtree(src)
        shutil.rmtree(download)
        when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        (tree / "SOURCE.txt").write_text(
            "Debian source package qemu, unpacked with dpkg-source -x (Debian patches "
            "applied);\nonly monitor/ and qapi/ are kept. Fetched by qthrottle "
            "fetch-qemu.\n\n"
            f"package: qemu\nversion: {version}\nrelease: {release}\n"
            f"qemu-series: {series}\ndsc: {dsc.name}\n"
            f"archive: {archive.uri} (from {archive.origin})\n"
            f"fetched: {when.isoformat()}\n",
            encoding="utf-8",
        )
        if not is_qemu_tree(tree):
            raise QemuSourceError(f"qemu {version}: monitor/monitor.c or "
                                  "qapi/qapi-schema.json missing")
        dest_root = root / "qemu"
        dest_root.mkdir(exist_ok=True)
        dest = dest_root / _tree_name(release, version)
        old = [p for p in _release_trees(release) if p != dest]
        if dest.exists():  # refresh of the same version: swap it out first
            dest.rename(work / "old")
        tree.rename(dest)  # atomic publish
        for p in old:  # superseded versions of this release
            shutil.rmtree(p, ignore_errors=True)
        log(f"{release}: cached qemu {version} in {dest}")
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _apt_session(root: Path, archive: DebianArchive, releases: Sequence[str],
                 log: Callable[[str], None]) -> Iterator[list[str]]:
    """A private apt state with deb-src entries for @releases, updated; its apt options.

    The caller holds the cache lock (the state lives in the shared cache directory).
    """
    apt_opts = _prepare_apt(root, archive, releases)
    log(f"updating a private apt index for {', '.join(releases)} "
        f"(deb-src from {archive.origin})")
    try:
        # Error-Mode=any: a failed download must fail (apt only warns).
        update = ["-o", "APT::Update::Error-Mode=any", "update"]
        _run(["apt-get", *apt_opts, *update], cwd=root)
        yield apt_opts
    finally:  # the indexes (~40 MB) are only needed during a fetch
        for sub in ("lists", "cache"):
            shutil.rmtree(root / "apt" / sub, ignore_errors=True)


def _writable_cache() -> Path:
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QemuSourceError(f"cannot create cache directory {root}: {exc}") from exc
    return root


def download_source_package(release: str, dest: Path,
                            log: Callable[[str], None] = print) -> Path:
    """Download Debian's whole qemu source package of @release into the directory @dest.

    The .dsc, its tarballs beside it (unpack with `unpack_source_package`). Always
    asks the archive (this is for builds: the cache keeps only monitor/ and qapi/).
    """
    _check_release(release)
    _require_tools()
    archive = debian_archive()
    root = _writable_cache()
    with _cache_lock(root), _apt_session(root, archive, [release], log) as apt_opts:
        return _download(apt_opts, release, dest, log)


def fetch_qemu(
    releases: Iterable[str] = RELEASES,
    refresh: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Make sure QEMU trees for ``releases`` are cached; return release -> tree root.

    Cached trees are reused without network access unless ``refresh`` is true.
    Raises QemuSourceError (with a user-facing message) on expected failures.
    """
    if isinstance(releases, str):
        releases = [releases]
    wanted = list(dict.fromkeys(_check_release(r) for r in releases))
    result: dict[str, Path] = {}
    todo: list[str] = []
    for r in wanted:
        tree = None if refresh else cached_tree(r)
        if tree is not None:
            log(f"{r}: using cached {tree}")
            result[r] = tree
        else:
            todo.append(r)
    if todo:
        _require_tools()
        archive = debian_archive()
        root = _writable_cache()
        with _cache_lock(root):
            if not refresh:  # another process may have fetched while we waited
                for r in list(todo):
                    tree = cached_tree(r)
                    if tree is not None:
                        result[r] = tree
                        todo.remove(r)
            if todo:
                _remove_stale(root)
                with _apt_session(root, archive, todo, log) as apt_opts:
                    for r in todo:
                        result[r] = _fetch_one(root, apt_opts, r, archive, log)
    return {r: result[r] for r in wanted}
