"""Tests of harness/qemu_sources.py: apt source parsing, cache, tree detection.

Everything here runs offline except the `real_qemu` test, which reads the trees that
`qthrottle fetch-qemu` cached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qthrottle.cli import main
from qthrottle.core import cache_dir
from qthrottle.harness import qemu_sources as qs
from qthrottle.harness.qemu_sources import (
    RELEASES,
    AptSource,
    QemuSourceError,
    apt_source_files,
    cached_tree,
    deb_src_list,
    debian_archive,
    fetch_qemu,
    is_qemu_tree,
    parse_apt_sources,
)

# Reserved .invalid host names: these tests never name a real mirror.
ARCHIVE = "http://archive.invalid/debian"

DEB822 = f"""\
Types: deb
# a comment inside a stanza does not end it
URIs: {ARCHIVE} http://second.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# a disabled stanza is ignored
Enabled: no
Types: deb
URIs: http://disabled.invalid/debian
Suites: trixie
Components: main
"""

ONE_LINE = f"""\
# comment line
deb [arch=amd64 signed-by=/etc/apt/keyrings/own.gpg] {ARCHIVE} trixie main non-free
deb-src {ARCHIVE} trixie main  # trailing comment
deb http://security.invalid/debian-security bookworm/updates main
deb [ signed-by=/k.gpg ] http://third-party.invalid/apt cloud-sdk-bookworm main
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_tree(root: Path) -> Path:
    write(root / "monitor" / "monitor.c", "/* monitor */\n")
    write(root / "qapi" / "qapi-schema.json", "{ 'include': 'common.json' }\n")
    return root


def source(suites: str, components: str = "main", uri: str = ARCHIVE) -> AptSource:
    return AptSource(("deb",), (uri,), tuple(suites.split()), tuple(components.split()))


# ------------------------------------------------------------------- parsing


def test_parse_deb822_file(tmp_path: Path) -> None:
    path = write(tmp_path / "debian.sources", DEB822)
    first, security = parse_apt_sources([path])  # the disabled stanza is dropped
    assert first.types == ("deb",)
    assert first.uris == (ARCHIVE, "http://second.invalid/debian")
    assert first.suites == ("bookworm", "bookworm-updates")
    assert first.components == ("main", "contrib")
    assert first.signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert first.origin == f"{path}:1"
    assert security.suites == ("bookworm-security",)


def test_parse_deb822_inline_key_block(tmp_path: Path) -> None:
    path = write(
        tmp_path / "inline.sources",
        f"Types: deb\nURIs: {ARCHIVE}\nSuites: trixie\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n",
    )
    (src,) = parse_apt_sources([path])
    assert src.signed_by == (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----"
    )


def test_parse_one_line_file(tmp_path: Path) -> None:
    path = write(tmp_path / "sources.list", ONE_LINE)
    own, src, security, third = parse_apt_sources([path])
    assert own.types == ("deb",)
    assert own.uris == (ARCHIVE,)
    assert own.suites == ("trixie",)
    assert own.components == ("main", "non-free")
    assert own.signed_by == "/etc/apt/keyrings/own.gpg"
    assert own.origin == f"{path}:2"
    assert (src.types, src.components) == (("deb-src",), ("main",))
    assert security.suites == ("bookworm/updates",)
    assert third.signed_by == "/k.gpg"
    assert third.uris == ("http://third-party.invalid/apt",)


def test_source_files_follow_apt_naming(tmp_path: Path) -> None:
    write(tmp_path / "sources.list", ONE_LINE)
    write(tmp_path / "sources.list.d" / "b.sources", DEB822)
    write(tmp_path / "sources.list.d" / "a.list", "")
    write(tmp_path / "sources.list.d" / "c.list.disabled-by-farm", ONE_LINE)
    write(tmp_path / "sources.list.d" / "d.sources.disabled-by-farm", DEB822)
    names = [p.relative_to(tmp_path).as_posix() for p in apt_source_files(tmp_path)]
    assert names == ["sources.list", "sources.list.d/a.list", "sources.list.d/b.sources"]
    # parse_apt_sources skips such names even when handed them directly
    assert parse_apt_sources([tmp_path / "sources.list.d" / "c.list.disabled-by-farm"]) == []


# -------------------------------------------------------- choice of the archive


def test_debian_main_archive_is_chosen(tmp_path: Path) -> None:
    deb822 = write(tmp_path / "d" / "debian.sources", DEB822)
    archive = debian_archive(parse_apt_sources([deb822]))
    assert archive.uri == ARCHIVE  # the first URI of the entry
    assert archive.keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert archive.origin == f"{deb822}:1"


def test_security_updates_and_third_party_entries_are_not_chosen() -> None:
    sources = [
        source("bookworm-security", uri="http://security.invalid/debian-security"),
        source("bookworm-updates bookworm-backports"),
        source("bookworm/updates"),
        source("cloud-sdk-bookworm", uri="http://third-party.invalid/apt"),
        source("nodistro", uri="http://third-party.invalid/node"),
        source("trixie", components="contrib non-free"),
        source("trixie", uri="http://chosen.invalid/debian"),
    ]
    assert debian_archive(sources).uri == "http://chosen.invalid/debian"


def test_missing_signed_by_falls_back_to_debian_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = write(tmp_path / "debian-archive-keyring.gpg", "")
    monkeypatch.setattr(qs, "DEFAULT_KEYRING", keyring)
    assert debian_archive([source("bookworm")]).keyring == str(keyring)
    monkeypatch.setattr(qs, "DEFAULT_KEYRING", tmp_path / "absent.gpg")
    assert debian_archive([source("bookworm")]).keyring is None


def test_no_debian_archive_is_a_clear_error(tmp_path: Path) -> None:
    path = write(
        tmp_path / "other.list", "deb http://third-party.invalid/apt cloud-sdk-bookworm main\n"
    )
    with pytest.raises(QemuSourceError, match="no Debian archive entry was found in the apt"):
        debian_archive(parse_apt_sources([path]))
    with pytest.raises(QemuSourceError, match="no Debian archive entry"):
        debian_archive([])


def test_deb_src_list_has_one_line_per_release() -> None:
    archive = qs.DebianArchive(uri=ARCHIVE, keyring="/k.gpg")
    assert deb_src_list(archive, RELEASES) == (
        f"deb-src [signed-by=/k.gpg] {ARCHIVE} bullseye main\n"
        f"deb-src [signed-by=/k.gpg] {ARCHIVE} bookworm main\n"
        f"deb-src [signed-by=/k.gpg] {ARCHIVE} trixie main\n"
    )
    assert deb_src_list(qs.DebianArchive(uri=ARCHIVE, keyring=None), ["trixie"]) == (
        f"deb-src {ARCHIVE} trixie main\n"
    )


# ----------------------------------------------------------------------- cache


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "own"
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", "")  # empty counts as unset
    assert cache_dir() == tmp_path / "xdg" / "qthrottle"
    monkeypatch.delenv("QTHROTTLE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as XDG says
    assert cache_dir() == tmp_path / "home" / ".cache" / "qthrottle"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "qthrottle"


def test_is_qemu_tree(tmp_path: Path) -> None:
    assert not is_qemu_tree(tmp_path)
    assert not is_qemu_tree(tmp_path / "absent")
    write(tmp_path / "monitor" / "monitor.c", "")
    assert not is_qemu_tree(tmp_path)  # no qapi/qapi-schema.json yet
    assert is_qemu_tree(make_tree(tmp_path))


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cached_tree(empty_cache: Path) -> None:
    assert cached_tree("bookworm") is None
    tree = make_tree(empty_cache / "qemu" / "bookworm-1_7.2+dfsg-7+deb12u18")
    write(empty_cache / "qemu" / "trixie-1_10.0.13+ds-0+deb13u1" / "monitor" / "monitor.c", "")
    assert cached_tree("bookworm") == tree
    assert cached_tree("trixie") is None  # an incomplete tree does not count
    with pytest.raises(QemuSourceError, match="unknown Debian release 'sid'"):
        cached_tree("sid")


def test_fetch_reuses_cache_without_running_anything(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trees = {r: make_tree(empty_cache / "qemu" / f"{r}-1_{v}") for r, v in RELEASES.items()}

    def no_commands(*args: object, **kwargs: object) -> str:
        raise AssertionError("a cached tree must not run apt-get or dpkg-source")

    monkeypatch.setattr(qs, "_run", no_commands)
    logged: list[str] = []
    assert fetch_qemu(log=logged.append) == trees
    assert fetch_qemu(["trixie"], log=logged.append) == {"trixie": trees["trixie"]}
    assert all("using cached" in line for line in logged)


def test_missing_dpkg_source_is_a_clear_error(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        qs.shutil, "which", lambda name: None if name == "dpkg-source" else f"/usr/bin/{name}"
    )
    with pytest.raises(QemuSourceError, match="install the dpkg-dev package"):
        fetch_qemu(["bookworm"], log=lambda _: None)


def test_failed_command_reports_command_and_stderr() -> None:
    cmd = [sys.executable, "-c", "import sys; sys.stderr.write('one\\ntwo\\n'); sys.exit(3)"]
    with pytest.raises(QemuSourceError) as info:
        qs._run(cmd)
    message = str(info.value)
    assert "exit 3" in message and sys.executable in message
    assert message.rstrip().endswith("two")
    with pytest.raises(QemuSourceError, match="command not found"):
        qs._run(["qthrottle-no-such-command"])


# ------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    return main(argv)


def test_cli_prints_cached_paths(
    empty_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_tree(empty_cache / "qemu" / "trixie-1_10.0.13+ds-0+deb13u1")
    assert run_cli(["fetch-qemu", "--release", "trixie"]) == 0
    assert capsys.readouterr().out == f"trixie: {tree}\n"


def test_cli_error_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(*args: object, **kwargs: object) -> dict[str, Path]:
        raise QemuSourceError("command failed (exit 100): apt-get update\n  E: boom")

    monkeypatch.setattr(qs, "fetch_qemu", failing)
    assert run_cli(["fetch-qemu", "--refresh"]) == 2
    err = capsys.readouterr().err
    assert err == "qthrottle: error: command failed (exit 100): apt-get update E: boom\n"


# ------------------------------------------------------------- real QEMU trees


@pytest.mark.real_qemu
def test_cached_debian_trees_hold_the_throttle(qemu_trees: dict[str, Path]) -> None:
    assert set(qemu_trees) == {"bullseye", "bookworm", "trixie"}
    for release, tree in qemu_trees.items():
        assert is_qemu_tree(tree), release
        assert (tree / "qapi").is_dir()
        monitor_c = (tree / "monitor" / "monitor.c").read_text(encoding="utf-8")
        assert "monitor_qapi_event_queue_no_reenter" in monitor_c, release
        provenance = (tree / "SOURCE.txt").read_text(encoding="utf-8")
        assert f"\nqemu-series: {RELEASES[release]}\n" in provenance, release
