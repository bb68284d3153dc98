"""Proof results kept in the cache, by everything that decides them.

z3 takes seconds per tree, and the same tree is proved again and again: a review of
a second version of a series proves the trees of its unchanged patches again, `diff`
in CI proves the same base tree on every run. A result is kept in the cache
(harness/cache.py, kind "proofs") under the hash of everything it depends on:

- the extraction (the throttle's code, as the prover reads it, and its file's path
  within its tree) and the QAPI catalog (its files' paths too);
- the rates the compiler computes from the rate table (its own cache key names the
  compiler and the shims);
- the solver timeout and the other arguments of the proof (not the target's name, a
  label: a kept result takes the name it is asked under);
- every source file of the prover and of the layers below it (PROVER_LAYERS), and the
  versions of Python, z3, tree-sitter and its C grammar.

A change to any of them is a different key: the proof runs again. The tree's own
directory is not part of the key: a kept result names it TREE, and is read back with the
directory of the tree asked about (a review proves its private copies of a tree). Only results
without UNKNOWN are kept: an UNKNOWN may be a solver timeout, which depends on the
machine's load, and is asked again next time. A kept result that does not load is
put aside and proved again (harness/cache.py's checks). QTHROTTLE_PROOF_CACHE=off
proves everything again, every time, and keeps nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import hashlib
import os
import pickle
import re
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar

import z3

import qthrottle
from qthrottle.harness import cache
from qthrottle.harness.build import compiled_rates
from qthrottle.harness.extract import Extraction
from qthrottle.model.qapi_schema import Catalog

from .engine import ProofReport, prove
from .policy import DerivedPolicy, derive_policy
from .solve import DEFAULT_TIMEOUT_MS

KIND = "proofs"  # the cache's directory of proof results
POLICY_KIND = "policies"  # and of derived policies
FILE = "result.pickle"
FORMAT = 1  # of what a kept result holds; a new one is a new key
SWITCH = "QTHROTTLE_PROOF_CACHE"  # "off": no result kept or used

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() != "off"


# What the prover is made of: its own layer and the layers below it, which are all it
# may import (pyproject.toml's import-linter contract, checked by lint-imports and
# tests/test_remembered.py). A change to the engines, the reviews or the command line
# decides no proof, and keeps the results kept.
PROVER_LAYERS = ("proofs", "harness", "model", "cases", "core")


def sources_digest(package: Path, layers: Sequence[str] = PROVER_LAYERS) -> str:
    """A hash of every source file of @layers of the package at @package (modules and
    subpackages, with the shims, the bundled cases and their schema)."""
    digest = hashlib.sha256()
    for layer in sorted(layers):
        module = package / f"{layer}.py"
        found = [module] if module.is_file() else []
        for directory, subdirectories, files in os.walk(package / layer, followlinks=True):
            subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
            found += [Path(directory, name) for name in sorted(files)
                      if name.endswith((".py", ".h", ".c", ".json"))]
        for path in found:
            digest.update(str(path.relative_to(package)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    digest.update((package / "__init__.py").read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _own_sources() -> str:
    """sources_digest of this qthrottle (its layers may be links: not resolved)."""
    return sources_digest(Path(qthrottle.__file__).parent)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "-"


TREE = "\0tree\0"  # stands for the tree's directory in a key and a kept result


def _tree(extraction: Extraction) -> Optional[Tuple[str, re.Pattern[str]]]:
    """The directory of the tree @extraction's monitor.c is in (TREE/monitor/monitor.c;
    the directory of a bundled case's file), and how it appears in paths; None at the
    top."""
    root = extraction.path.parent.parent
    if len(root.parts) < 2:
        return None
    return str(root), re.compile(re.escape(str(root)) + r"(?=/|$|[^\w.+-])")


def _moved(value: T, here: Callable[[str], str]) -> T:
    """@value with every string passed through @here: a result's paths moved between a
    tree's directory and TREE. Containers and dataclasses are copied, the rest kept."""
    moved: Any
    if isinstance(value, enum.Enum):  # a status is a str too
        moved = value
    elif isinstance(value, str):
        moved = here(value)
    elif isinstance(value, PurePath):
        moved = type(value)(here(str(value)))
    elif isinstance(value, dict):
        moved = type(value)((_moved(k, here), _moved(v, here)) for k, v in value.items())
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        moved = type(value)(*(_moved(v, here) for v in value))
    elif isinstance(value, (list, tuple, set, frozenset)):
        moved = type(value)(_moved(v, here) for v in value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = copy.copy(value)
        for item in dataclasses.fields(value):
            object.__setattr__(moved, item.name, _moved(getattr(value, item.name), here))
    else:
        moved = value
    return moved  # type: ignore[no-any-return]


def _inputs(kind: str, extraction: Extraction, catalog: Catalog,
            arguments: Sequence[object], tree: Optional[Tuple[str, re.Pattern[str]]]) -> str:
    """The key: what decides the result. The tree's directory (@tree, ``_tree``) is not
    in it: the same code elsewhere (a review's private copy of a tree) is the same
    proof."""
    digest = hashlib.sha256()
    for part in (FORMAT, kind, _own_sources(), sys.version, z3.get_full_version(),
                 _version("tree-sitter"), _version("tree-sitter-c"), repr(extraction),
                 repr(catalog), repr(sorted(compiled_rates(extraction,
                                                           tuple(catalog.events)).items())),
                 *map(repr, arguments)):
        text = str(part)
        digest.update((tree[1].sub(TREE, text) if tree else text).encode() + b"\0")
    return digest.hexdigest()


def _remembered(kind: str, extraction: Extraction, catalog: Catalog,
                arguments: Sequence[object], compute: Callable[[], T],
                keep: Callable[[T], bool]) -> Tuple[T, bool]:
    """The result, from the cache's @kind directory if it was kept there before, and
    whether it was."""
    if not enabled():
        return compute(), False
    tree = _tree(extraction)
    inputs = _inputs(kind, extraction, catalog, arguments, tree)
    entry = cache.entry_dir(kind, inputs)
    problem = cache.check(entry, inputs, (FILE,))
    if problem is None:
        try:
            kept = pickle.loads((entry / FILE).read_bytes())
            if tree is not None:
                root = tree[0]
                kept = _moved(kept, lambda text: text.replace(TREE, root))
            return kept, True
        except Exception as error:  # noqa: BLE001 - a result of another build of Python
            problem = f"unreadable ({type(error).__name__})"
    if problem != cache.MISSING:
        cache.discard(entry, problem)
    result = compute()
    if keep(result):
        with cache.staging(kind) as work:
            stored = result
            if tree is not None:
                pattern = tree[1]
                stored = _moved(result, lambda text: pattern.sub(TREE, text))
            (work / FILE).write_bytes(pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL))
            cache.publish(work, entry, inputs, (FILE,))
    return result, False


def remembered_proof(extraction: Extraction, catalog: Catalog, name: str,
                     timeout_ms: int = DEFAULT_TIMEOUT_MS, runs: bool = True,
                     derived: Optional[DerivedPolicy] = None) -> ProofReport:
    """proofs.engine.prove, or its kept result; a kept one says so (ProofReport.cached).
    The run invariants are judged by the policy the code implements, derived here when
    not given (and kept too): `prove TREE` and `diff` then share a result."""
    if runs and derived is None:
        derived = remembered_policy(extraction, catalog, timeout_ms)
    report, kept = _remembered(  # the name is a label only: not in the key
        KIND, extraction, catalog,
        (timeout_ms, runs, derived and replace(derived, seconds=0.0)),
        lambda: prove(extraction, catalog, name, timeout_ms, runs=runs, derived=derived),
        lambda report: not report.unknown)
    report.target, report.cached = name, kept
    return report


def remembered_policy(extraction: Extraction, catalog: Catalog,
                      timeout_ms: int = DEFAULT_TIMEOUT_MS) -> DerivedPolicy:
    """proofs.policy.derive_policy, or its kept result (kept when no key is UNKNOWN)."""
    return _remembered(POLICY_KIND, extraction, catalog, (timeout_ms,),
                       lambda: derive_policy(extraction, catalog, timeout_ms),
                       lambda derived: not derived.unknown)[0]
