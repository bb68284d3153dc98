"""Symbolic QMP events: the event space of a target and the records the proofs quantify over.

A record is what the throttle keys on (event + data dict): the event is a
32-bit value numbered as QEMU's generated QAPIEvent enum (schema order, then
events only the code names, as the harness numbers them); each data member the
code or an invariant touches has a presence flag and one value per C getter
kind (String for str and enums, 64-bit for integers, Bool). ``valid`` states
the schema: which events carry the member, which must, enum values. An absent
member's values are pinned to a canonical default so that ``model.invariants``
functions reading the data (``is_stop_event``) see "not stop".
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple

import z3

from qthrottle.harness.build import compiled_rates
from qthrottle.harness.extract import Extraction
from qthrottle.model.ghash import Record
from qthrottle.model.members import (
    INTEGER_RANGES,
    KINDS,
    TYPICAL,
    filler,
    member_kind,
    string_values,
)
from qthrottle.model.qapi_schema import Catalog, Member

Term = Any  # a z3 expression; z3 ships no type information


def _default(kind: str) -> Term:
    if kind == "str":
        return z3.StringVal("")
    if kind == "int":
        return z3.BitVecVal(0, 64)
    return z3.BoolVal(False)


class EventSpace:
    """The events of one target (schema plus code) and where each member occurs."""

    def __init__(self, catalog: Catalog, extraction: Extraction) -> None:
        self.catalog = catalog
        self.names: List[str] = list(catalog.events)
        self.names += [e for e in extraction.events_named if e not in catalog.events]
        self.valid_count = len(catalog.events)  # only schema events can be queued
        self.index = {name: i for i, name in enumerate(self.names)}
        # The rate table as the compiler evaluates it (every event of the enum).
        self.rate_table = compiled_rates(extraction, tuple(catalog.events))
        self.rates = {self.index[e]: rate for e, rate in self.rate_table.items()
                      if e in self.index and rate}
        self._among: Dict[Tuple[int, Tuple[int, ...]], Term] = {}
        self.members: Dict[str, Dict[int, Member]] = {}
        for i, event in enumerate(catalog.events.values()):
            for member in event.members:
                self.members.setdefault(member.name, {})[i] = member

    def among(self, event: Term, indices: Sequence[int]) -> Term:
        key = (event.get_id(), tuple(indices))
        if key not in self._among:  # built once: z3's Python term construction is slow
            self._among[key] = z3.Or(*(event == i for i in indices)) if indices \
                else z3.BoolVal(False)
        return self._among[key]

    def events_with(self, member: str, kind: Optional[str] = None,
                    mandatory: bool = False) -> List[int]:
        found = self.members.get(member, {})
        return [i for i, m in found.items()
                if (kind is None or member_kind(m) == kind) and not (mandatory and m.optional)]

    def rate(self, event: Term) -> Term:
        """The rate table's entry for @event, in ns, as a 64-bit term (0: unthrottled)."""
        value: Term = z3.BitVecVal(0, 64)
        for i, rate in sorted(self.rates.items()):
            value = z3.If(event == i, z3.BitVecVal(rate, 64), value)
        return value


class SymbolicRecord:
    """One throttle key: an event and its data dict, both symbolic."""

    def __init__(self, space: EventSpace, name: str) -> None:
        self.space = space
        self.name = name
        self.event = z3.BitVec(f"{name}.event", 32)
        self._present: Dict[str, Term] = {}
        self._values: Dict[Tuple[str, str], Term] = {}

    def __repr__(self) -> str:
        return f"<record {self.name}>"

    def present(self, member: str) -> Term:
        if member not in self._present:
            self._present[member] = z3.Bool(f"{self.name}.{member}?")
        return self._present[member]

    def value(self, member: str, kind: str) -> Term:
        """The member's value as the getter of @kind reads it."""
        self.present(member)
        key = (member, kind)
        if key not in self._values:
            label = f"{self.name}.{member}"
            if kind == "str":
                self._values[key] = z3.String(label)
            elif kind == "int":
                self._values[key] = z3.BitVec(label, 64)
            else:
                self._values[key] = z3.Bool(label)
        return self._values[key]

    def kind_ok(self, member: str, kind: str) -> Term:
        """The schema types the member so that the getter of @kind can read it."""
        return self.space.among(self.event, self.space.events_with(member, kind))

    def has_data(self) -> Term:
        """The event has a data dict (qobject_to(QDict, qdict_get(qdict, "data")) != NULL)."""
        return self.space.among(self.event, [i for i, e in enumerate(
            self.space.catalog.events.values()) if e.members])

    def event_name(self) -> Term:
        """The event's name as a z3 string, for the model's invariants."""
        space = self.space
        name: Term = z3.StringVal(space.names[0] if space.names else "")
        for i in reversed(range(1, space.valid_count)):
            name = z3.If(self.event == i, z3.StringVal(space.names[i]), name)
        return name

    def data(self) -> SymbolicData:
        return SymbolicData(self)

    def valid(self, free: Optional[str] = None) -> Term:
        """A QMP event the schema allows; @free's presence is left to the solver."""
        space = self.space
        facts = [z3.ULT(self.event, space.valid_count)]
        for member, present in self._present.items():
            facts.append(z3.Implies(present, space.among(
                self.event, space.events_with(member))))
            if member != free:
                facts.append(z3.Implies(space.among(
                    self.event, space.events_with(member, mandatory=True)), present))
            for kind in KINDS:
                value = self._values.get((member, kind))
                if value is None:
                    continue
                facts.append(z3.Implies(z3.Not(present), value == _default(kind)))
                if kind == "str":
                    facts.append(z3.Not(z3.Contains(value, z3.StringVal("\x00"))))
                    facts += self._enum_facts(member, present, value)
                elif kind == "int":
                    facts += self._range_facts(member, present, value)
        return z3.And(*facts)

    def _range_facts(self, member: str, present: Term, value: Term) -> List[Term]:
        """An integer member holds a value of its QAPI type (read as int64_t)."""
        by_range: Dict[Tuple[int, int], List[int]] = {}
        for i, m in self.space.members.get(member, {}).items():
            if member_kind(m) == "int":
                by_range.setdefault(INTEGER_RANGES[m.type], []).append(i)
        return [z3.Implies(z3.And(present, self.space.among(self.event, indices)),
                           z3.And(value >= low, value <= high))
                for (low, high), indices in by_range.items() if (low, high) != (-2**63, 2**63 - 1)]

    def _enum_facts(self, member: str, present: Term, value: Term) -> List[Term]:
        by_enum: Dict[Tuple[str, ...], List[int]] = {}
        for i, m in self.space.members.get(member, {}).items():
            if m.enum_values is not None:
                by_enum.setdefault(m.enum_values, []).append(i)
        return [z3.Implies(z3.And(present, self.space.among(self.event, indices)),
                           z3.Or(*(value == v for v in values)) if values else False)
                for values, indices in by_enum.items()]

    def preferences(self) -> List[Tuple[Term, int]]:
        """Soft goals that make a counterexample readable: strings from the stateful
        engine's universe, shared between records unless they must differ; optional
        members absent; integers 0 or 1."""
        goals: List[Tuple[Term, int]] = [
            (z3.Not(present), 3) for member, present in self._present.items()
            if any(m.optional for m in self.space.members.get(member, {}).values())]
        for (member, kind), value in self._values.items():
            if kind == "str" and member in TYPICAL:
                goals.append((value == TYPICAL[member], 1))
            elif kind == "str":
                first, second = string_values(member)[:2]
                goals += [(value == first, 2), (value == second, 1)]
            elif kind == "int":
                goals += [(value == 0, 2), (value == 1, 1)]
        return goals

    def concrete(self, model: z3.ModelRef) -> Record:
        """The record as a concrete QMP event (name, data) under @model."""
        space = self.space
        index = model.eval(self.event, model_completion=True).as_long()
        name = space.names[index]
        event = space.catalog.events[name]
        if not event.members:
            return name, None
        data: Dict[str, Any] = {}
        for member in event.members:
            present = self._present.get(member.name)
            if present is None:
                if not member.optional:
                    data[member.name] = filler(member)
                continue
            if not z3.is_true(model.eval(present, model_completion=True)):
                continue
            value = self._values.get((member.name, member_kind(member)))
            data[member.name] = filler(member) if value is None else _python(
                model.eval(value, model_completion=True))
        return name, data


def _python(value: Term) -> Any:
    if z3.is_string_value(value):
        return value.as_string()
    if z3.is_bv_value(value):
        return value.as_signed_long()
    return z3.is_true(value)


class SymbolicData(Mapping[str, Any]):
    """A record's data as the model's invariants read it: member -> z3 value."""

    def __init__(self, record: SymbolicRecord) -> None:
        self.record = record

    def __getitem__(self, member: str) -> Any:
        kinds = {member_kind(m) for m in self.record.space.members.get(member, {}).values()}
        kind = next((k for k in KINDS if k in kinds), None)
        if kind is None:
            raise KeyError(member)
        return self.record.value(member, kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self.record.space.members)

    def __len__(self) -> int:
        return len(self.record.space.members)
