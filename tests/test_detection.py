"""Detection is not luck: under the default profile the stateful engine finds every
bundled bug and every seeded bug (cases/seeded.py) in each of 20 seeds, and charges it
to an invariant the bug breaks."""
from __future__ import annotations

from pathlib import Path
from typing import FrozenSet, Tuple

import pytest

from qthrottle.cases import EXPECTED, MAY_ALSO_BREAK, SCHEMA_DIR
from qthrottle.cases.seeded import SEEDED
from qthrottle.engines.bounds import PROFILES
from qthrottle.engines.stateful import search
from qthrottle.harness.target import Target, resolve
from qthrottle.review.target_policy import open_subject

SEEDS = range(1, 21)
DEFAULT = PROFILES["quick"]  # `qthrottle verify`'s
BUNDLED = [name for name, broken in EXPECTED.items() if broken]


def seeded_target(name: str, directory: Path) -> Tuple[Target, FrozenSet[int]]:
    path = directory / name / "monitor.c"
    path.parent.mkdir(parents=True)
    path.write_text(SEEDED[name].source())
    return resolve(str(path), SCHEMA_DIR), SEEDED[name].breaks


@pytest.mark.parametrize("name", BUNDLED + list(SEEDED))
def test_found_in_every_seed(name: str, tmp_path: Path) -> None:
    target, breaks = ((resolve(name), EXPECTED[name] | MAY_ALSO_BREAK.get(name, frozenset()))
                      if name in EXPECTED else seeded_target(name, tmp_path))
    missed = []
    with open_subject(target) as subject:
        for seed in SEEDS:
            found = search(subject, DEFAULT, seed, stop_at_first=True, minimised=False)
            if not set(found.falsified) & breaks or found.unknown:
                missed.append((seed, sorted(found.falsified), found.unknown))
    assert missed == []
