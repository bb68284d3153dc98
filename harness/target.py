"""What the user points qthrottle at: a case study, a QEMU tree, or a monitor.c."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, FrozenSet, List, Optional, Tuple

from qthrottle.cases import EXPECTED, SCHEMA_DIR, case_path

from .build import Build, build
from .extract import Extraction, ExtractionError, extract

if TYPE_CHECKING:  # the model imports the harness: no import cycle at run time
    from qthrottle.model.qapi_schema import Catalog


@dataclass(frozen=True)
class Target:
    """A monitor.c to check, the schema of its events, and what it should give."""

    name: str
    monitor_c: Path
    qapi_dir: Optional[Path]
    expected_broken: Optional[FrozenSet[int]] = None  # case studies only

    def extract(self) -> Extraction:
        return extract(self.monitor_c)

    def schema_events(self) -> Tuple[str, ...]:
        return () if self.qapi_dir is None else tuple(self.catalog().events)

    def catalog(self, missing: str = "pass --qapi-dir") -> Catalog:
        """The target's QAPI schema; a missing or unreadable one is an input error."""
        from qthrottle.model.qapi_schema import SchemaError, load_schema

        if self.qapi_dir is None:
            raise ExtractionError(f"{self.name}: no QAPI schema found: {missing}")
        try:
            return load_schema(self.qapi_dir)
        except SchemaError as error:
            raise ExtractionError(f"cannot read the QAPI schema: {error}") from None

    def build(self) -> Build:
        return build(self.extract(), self.schema_events())


def bundled_cases() -> List[Target]:
    return [Target(name, case_path(name), SCHEMA_DIR, broken)
            for name, broken in EXPECTED.items()]


def resolve(spec: str, qapi_dir: Optional[Path] = None) -> Target:
    """A case-study name, a QEMU tree, or a monitor.c (schema from --qapi-dir or its tree)."""
    if spec in EXPECTED:
        return Target(spec, case_path(spec), qapi_dir or SCHEMA_DIR, EXPECTED[spec])
    path = Path(spec)
    if not path.exists():
        known = ", ".join(EXPECTED)
        raise ExtractionError(f"{spec}: no such file or directory (and not a case study: {known})")
    if path.is_dir():
        monitor_c = path / "monitor" / "monitor.c"
        if not monitor_c.is_file():
            raise ExtractionError(f"{spec}: not a QEMU tree (no monitor/monitor.c)")
        tree_qapi: Optional[Path] = path / "qapi"
        return Target(str(path), monitor_c, qapi_dir or _existing(tree_qapi))
    # A monitor.c inside a tree: the schema is ../qapi beside monitor/.
    return Target(str(path), path, qapi_dir or _existing(path.resolve().parent.parent / "qapi"))


def _existing(qapi: Optional[Path]) -> Optional[Path]:
    return qapi if qapi is not None and (qapi / "qapi-schema.json").is_file() else None


def describe(extraction: Extraction) -> Dict[str, str]:
    """Role -> 'function at file:line', for reports."""
    return {role: f"{name} at {extraction.location(name)}"
            for role, name in extraction.roles.items()}
