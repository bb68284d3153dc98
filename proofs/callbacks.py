"""The target's hash, equality and throttle decision as functions over symbolic records.

These are the callables the model's invariants take (``HashFn``/``EqualFn``):
called on SymbolicRecords they return z3 terms, translated from the C once per
argument tuple. Every call also contributes its "defined" condition (no read
aborted): the callback properties are judged where the C returns, and the
inputs where it aborts are invariant 7's subject.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import z3

from qthrottle.harness.extract import Extraction

from .space import EventSpace, SymbolicRecord
from .translate import Context, Translation, translate
from .values import resize, to_int, truth

Term = Any


class Callbacks:
    """One proof's view of the C: records, and the translated calls made on them."""

    def __init__(self, space: EventSpace, extraction: Extraction) -> None:
        self.space = space
        self.ctx = Context(space, extraction)
        self.records: Dict[str, SymbolicRecord] = {}
        self._calls: Dict[Tuple[str, Tuple[int, ...]], Translation] = {}

    def record(self, name: str) -> SymbolicRecord:
        self.records[name] = SymbolicRecord(self.space, name)
        return self.records[name]

    def translation(self, role: str, *records: SymbolicRecord) -> Translation:
        key = (role, tuple(id(r) for r in records))
        if key not in self._calls:
            self._calls[key] = translate(self.ctx, role, records)
        return self._calls[key]

    def hash(self, record: SymbolicRecord) -> Term:
        """The hash callback's guint."""
        value = self.translation("hash", record).value
        assert value is not None
        return resize(to_int(value), 32, False).term

    def equal(self, stored: SymbolicRecord, key: SymbolicRecord) -> Term:
        """The equality callback's verdict, called as GLib does: stored key first."""
        value = self.translation("equal", stored, key).value
        assert value is not None
        return truth(value)

    def reaches_table(self, record: SymbolicRecord) -> Term:
        """The queue function looks the event up in the table (it is throttled)."""
        return self.translation("queue", record).decisions["lookup"]

    def held_back(self, record: SymbolicRecord) -> Term:
        """The queue function does not emit the event at once."""
        return z3.Not(self.translation("queue", record).decisions["emit"])

    def dropped(self, record: SymbolicRecord) -> Term:
        """The queue function returns without emitting or looking the event up."""
        return self.translation("queue", record).decisions["drop"]

    def domain(self, in_table: Sequence[SymbolicRecord]) -> List[Term]:
        """Assumptions of a proof: valid events, @in_table reached the table, no call aborted.

        Computed last: it translates the queue function for @in_table, and the
        records' schema facts cover every member the calls touched.
        """
        terms = [self.reaches_table(r) for r in in_table]
        return terms[:len(in_table)] + self.returning() + [r.valid()
                                                           for r in self.records.values()]

    def returning(self) -> List[Term]:
        """No translated call aborted."""
        return [call.defined() for call in self._calls.values()]

    def preferences(self) -> List[Tuple[Term, int]]:
        """Soft goals for a readable counterexample (see SymbolicRecord.preferences)."""
        goals: List[Tuple[Term, int]] = []
        for record in self.records.values():
            goals += record.preferences()
        hashed = self.ctx.hashed
        # Prefer models where a hash function does not collide: GLib's rarely do.
        for i, (name, a) in enumerate(hashed):
            function = self.ctx.hash_function(name, a.sort())
            for other, b in hashed[i + 1:]:
                if other == name and a.sort() == b.sort():
                    goals.append((z3.Implies(function(a) == function(b), a == b), 20))
        return goals
