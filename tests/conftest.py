"""Shared fixtures: real QEMU sources as test inputs.

Debian's QEMU trees come from the cache filled by ``qthrottle fetch-qemu``, the
qtest-capable binary from ``qthrottle fetch-qemu --build``; fixtures never fetch or
build. A missing tree or binary skips with a visible reason, except under CI=true,
where it fails: CI must exercise the real sources. QTHROTTLE_QEMU_TREE names an optional
extra tree (a user's QEMU checkout); it never fails CI.

Proof results are kept in the cache directory like the builds (proofs/remembered.py),
keyed by the sources of the prover and the layers below it: a run of the suite proves a
tree once, and a later run whose change left those alone uses what the first kept. A test that changes the prover in its
process (a monkeypatch) and then proves through prove_target, the CLI, diff or review
sets QTHROTTLE_PROOF_CACHE=off: what it proves is not what the key says.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from qthrottle.harness.qemu_build import QemuBuild, cached_build
from qthrottle.harness.qemu_sources import RELEASES, QemuSourceError, cached_tree, is_qemu_tree


def _under_ci() -> bool:
    return os.environ.get("CI") == "true"


def _require_cached(release: str) -> Path:
    tree: Path | None
    try:
        tree = cached_tree(release)
    except QemuSourceError:
        tree = None
    if tree is None:
        if _under_ci():
            pytest.fail(
                "real QEMU sources missing: run `qthrottle fetch-qemu` (CI must not skip)",
                pytrace=False,
            )
        pytest.skip(
            f"real QEMU {RELEASES[release]} sources not cached: run `qthrottle fetch-qemu`"
        )
    return tree


@pytest.fixture(scope="session")
def qemu_tree_52() -> Path:
    """Root of Debian bullseye's QEMU 5.2 tree (monitor/, qapi/): locks with qemu_mutex_lock."""
    return _require_cached("bullseye")


@pytest.fixture(scope="session")
def qemu_tree_72() -> Path:
    """Root of Debian bookworm's QEMU 7.2 tree (monitor/, qapi/)."""
    return _require_cached("bookworm")


@pytest.fixture(scope="session")
def qemu_tree_100() -> Path:
    """Root of Debian trixie's QEMU 10.0.x tree (monitor/, qapi/)."""
    return _require_cached("trixie")


@pytest.fixture(scope="session")
def qemu_trees() -> dict[str, Path]:
    """Every Debian QEMU tree, keyed by Debian release."""
    return {release: _require_cached(release) for release in RELEASES}


@pytest.fixture(scope="session")
def qemu_build() -> QemuBuild:
    """The qtest-capable qemu-system-x86_64 of `qthrottle fetch-qemu --build`."""
    build = cached_build()
    if build is None:
        if _under_ci():
            pytest.fail("no qtest-capable QEMU built: `qthrottle fetch-qemu --build` failed or "
                        "did not run (CI must not skip)", pytrace=False)
        pytest.skip("no qtest-capable QEMU built yet: run `qthrottle fetch-qemu --build` "
                    "(minutes, once)")
    return build


@pytest.fixture(scope="session")
def qemu_checkout() -> Path:
    """A user's QEMU tree named by QTHROTTLE_QEMU_TREE (optional, never fails CI)."""
    value = os.environ.get("QTHROTTLE_QEMU_TREE", "")
    if not value:
        pytest.skip("QTHROTTLE_QEMU_TREE not set (point it at a QEMU checkout)")
    tree = Path(value).expanduser()
    if not is_qemu_tree(tree):
        reason = (
            f"QTHROTTLE_QEMU_TREE={value} is not a QEMU tree "
            "(needs monitor/monitor.c and qapi/qapi-schema.json)"
        )
        if _under_ci():
            pytest.skip(reason)
        pytest.fail(reason, pytrace=False)
    return tree


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium (./dev check installs it), for the HTML timeline's browser tests."""
    found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed (./dev check installs it)"
        if _under_ci():
            pytest.fail(f"{reason}: CI must not skip the browser tests", pytrace=False)
        pytest.skip(reason)
    return Path(found)
