"""Metamorphic test: a verdict depends on what the code does, never on how it is written.

Every rewrite of QEMU 10.0.x's throttle functions that tests/rewrites.py generates
with tree-sitter at test time (at least 50) compiles, keeps every proof PROVED,
gets `qthrottle verify` exit 0 and the same throttle policy and lint as the
original. The stateful part of each verify runs with a small profile (REWRITE);
builds are shared through the content-addressed cache.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from rewrites import FAMILIES, Rewrite, rewrites

from qthrottle.cli import main
from qthrottle.core import EXIT_HOLDS
from qthrottle.engines import bounds
from qthrottle.engines.bounds import Profile
from qthrottle.harness.cache import store_file
from qthrottle.harness.extract import extract
from qthrottle.harness.qemu_sources import cached_tree

SEED = 20261130
REWRITE = Profile("rewrite", runs=15, steps=8)  # per rewrite: the ci profile is elsewhere
MIN_REWRITES = 50


def _rewrites() -> List[Rewrite]:
    tree = cached_tree("trixie")  # collection never fetches; the fixture skips or fails
    return rewrites(extract(tree / "monitor" / "monitor.c")) if tree is not None else []


REWRITES = _rewrites()


@pytest.fixture(autouse=True)
def rewrite_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bounds.PROFILES, REWRITE.name, REWRITE)


def verify_json(monitor_c: Path, qapi: Path, folder: Path,
                capsys: pytest.CaptureFixture[str]) -> Dict[str, Any]:
    report = folder / "report.json"
    code = main(["verify", str(monitor_c), "--qapi-dir", str(qapi), "--seed", str(SEED),
                 "--profile", REWRITE.name, "--json", str(report)])
    out = capsys.readouterr().out
    assert code == EXIT_HOLDS, out
    data: Dict[str, Any] = json.loads(report.read_text())
    return data


@pytest.fixture(scope="module")
def original(qemu_tree_100: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Dict[str, Any]]:
    folder = tmp_path_factory.mktemp("original")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(bounds.PROFILES, REWRITE.name, REWRITE)
        report = folder / "report.json"
        assert main(["verify", str(qemu_tree_100), "--seed", str(SEED), "--profile",
                     REWRITE.name, "--json", str(report)]) == EXIT_HOLDS
    yield json.loads(report.read_text())["targets"][0]


@pytest.mark.real_qemu
def test_enough_rewrites_of_every_family(qemu_tree_100: Path) -> None:
    assert len(REWRITES) >= MIN_REWRITES
    assert {r.kind for r in REWRITES} == set(FAMILIES)


@pytest.mark.real_qemu
@pytest.mark.parametrize("rewrite", REWRITES or [None],
                         ids=[f"{r.kind}@{r.where}" for r in REWRITES] or ["no-tree"])
def test_a_rewrite_keeps_every_verdict(rewrite: Rewrite, qemu_tree_100: Path,
                                       original: Dict[str, Any], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert rewrite is not None
    assert rewrite.source != (qemu_tree_100 / "monitor" / "monitor.c").read_bytes()
    # At a path fixed by its content: a rewrite is built once, then found in the cache.
    monitor_c = store_file("rewrites", "monitor.c", rewrite.source)
    report = verify_json(monitor_c, qemu_tree_100 / "qapi", tmp_path, capsys)
    target = report["targets"][0]
    for invariant in target["invariants"]:
        z3 = next(c for c in invariant["checks"] if c["engine"] == "z3")
        assert z3["status"] in ("PROVED", "NOT_APPLICABLE"), (invariant["number"], z3)
    assert target["policy"] == original["policy"]
    assert [(w["event"], w["rule"], w["member"]) for w in target["lint"]] == [
        (w["event"], w["rule"], w["member"]) for w in original["lint"]]
