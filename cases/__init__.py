"""The bundled case studies: C files in monitor.c's shape, and their schema.

EXPECTED is the verdict each case is meant to get: the invariants (numbers of
docs/invariants.md) it must break. MAY_ALSO_BREAK lists consequences a search may or may
not reach within its bounds (the use-after-free that follows a dangling entry
needs one more event). cases/README.md says why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, FrozenSet

CASES_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = CASES_DIR / "qapi"

EXPECTED: Dict[str, FrozenSet[int]] = {
    "baseline": frozenset(),
    "per-device": frozenset({4}),
    "stop-irreflexive": frozenset({1, 3, 4}),
    "stop-bypass": frozenset(),
    "optional-key": frozenset({7}),
}

MAY_ALSO_BREAK: Dict[str, FrozenSet[int]] = {"stop-irreflexive": frozenset({8})}


def verdict_as_expected(name: str, broken: FrozenSet[int]) -> bool:
    must = EXPECTED[name]
    return must <= broken <= must | MAY_ALSO_BREAK.get(name, frozenset())


def case_path(name: str) -> Path:
    return CASES_DIR / f"{name}.c"
