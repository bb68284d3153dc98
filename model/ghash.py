"""The throttle's hash table as GLib's GHashTable implements it (glib/ghash.c).

What the throttle depends on, and what this model keeps:

* A key's hash is computed once, when it is stored. GLib reserves the hash
  values 0 (empty slot) and 1 (tombstone) and stores such a hash as 2.
* lookup, add and remove probe for a stored key whose stored hash equals the
  probe key's hash and for which ``equal_func(stored_key, probe_key)`` holds:
  the stored key is the FIRST argument, and with an equality callback set
  there is no pointer shortcut, so a key need not find itself.
* ``g_hash_table_add`` of a key equal to a stored one replaces the stored key
  in place; with no destroy callbacks the old key is simply orphaned.
* remove takes out the first matching key in probe order. GLib probes
  quadratically from the hash's bucket, so keys with one hash are met in the
  order they were stored; this model probes every key in insertion order,
  which agrees whenever only keys of equal hash can match.

Hash and equality are pluggable: plain Python functions, the C callbacks
through a harness Driver (``driver_callbacks``), or z3 terms (``matches``
builds the formula with the logic layer).
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

from typing import Any, Callable, Generic, Optional, Protocol, TypeVar

from qthrottle.model.logic import And, Bool, Eq, Ite, Or
from qthrottle.model.timeline import EventData

K = TypeVar("K")
HashFn = Callable[[K], Any]  # an int, or a z3 bit-vector
EqualFn = Callable[[K, K], Bool]  # called as equal(stored, lookup)
Record = tuple[str, EventData]  # a throttle record's key: event and data


def glib_hash(value: Any) -> Any:
    """The hash GLib stores for a hash function's value."""
    return Ite(Or(Eq(value, 0), Eq(value, 1)), 2, value)


def matches_hashed(stored_hash: Any, stored: K, key_hash: Any, key: K,
                   equal_fn: EqualFn[K]) -> Bool:
    """Does a probe for @key (hash @key_hash) stop at @stored (stored hash @stored_hash)?"""
    same_hash = Eq(glib_hash(stored_hash), glib_hash(key_hash))
    if same_hash is False:  # GLib calls no equality on a hash mismatch
        return False
    return And(same_hash, equal_fn(stored, key))


def matches(hash_fn: HashFn[K], equal_fn: EqualFn[K], stored: K, key: K) -> Bool:
    """The GLib match of a probe for @key against the stored key @stored."""
    return matches_hashed(hash_fn(stored), stored, hash_fn(key), key, equal_fn)


class GHashTableModel(Generic[K]):
    """A GHashTable used as a set (g_hash_table_add), over concrete keys."""

    def __init__(self, hash_fn: HashFn[K], equal_fn: EqualFn[K]) -> None:
        self.hash_fn = hash_fn
        self.equal_fn = equal_fn
        self._entries: list[tuple[Any, K]] = []  # (stored hash, key), in probe order

    def __repr__(self) -> str:
        return f"<GHashTableModel records={list(self.records)!r}>"

    @property
    def size(self) -> int:
        return len(self._entries)

    @property
    def records(self) -> tuple[K, ...]:
        return tuple(key for _, key in self._entries)

    def _find(self, key: K) -> tuple[Any, Optional[int]]:
        """The key's hash and the index of the first stored key it matches."""
        key_hash = self.hash_fn(key)
        for index, (stored_hash, stored) in enumerate(self._entries):
            if matches_hashed(stored_hash, stored, key_hash, key, self.equal_fn):
                return key_hash, index
        return key_hash, None

    def lookup(self, key: K) -> Optional[K]:
        """g_hash_table_lookup: the stored key @key matches, or None."""
        _, index = self._find(key)
        return None if index is None else self._entries[index][1]

    def add(self, record: K) -> Optional[K]:
        """g_hash_table_add; returns the stored key it replaced (now orphaned), if any."""
        key_hash, index = self._find(record)
        if index is None:
            self._entries.append((key_hash, record))
            return None
        stored_hash, orphan = self._entries[index]
        self._entries[index] = (stored_hash, record)
        return orphan

    def remove(self, key: K) -> Optional[K]:
        """g_hash_table_remove: takes out and returns the first stored key @key matches."""
        _, index = self._find(key)
        return None if index is None else self._entries.pop(index)[1]


class CallbackCrashed(Exception):
    """A C callback run through the driver crashed; ``crash`` says how."""

    def __init__(self, crash: object) -> None:
        super().__init__(str(crash))
        self.crash = crash


class _CallbackDriver(Protocol):
    def hash(self, event: str, data: EventData) -> Any: ...

    def equal(self, a: Record, b: Record) -> Any: ...


def driver_callbacks(driver: _CallbackDriver) -> tuple[HashFn[Record], EqualFn[Record]]:
    """The C's hash and equality callbacks, run by a harness Driver, as model callbacks.

    A crash raises CallbackCrashed. Each crash also ends the driver's run.
    """
    def hash_fn(record: Record) -> int:
        value = driver.hash(*record)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CallbackCrashed(value)
        return value

    def equal_fn(stored: Record, key: Record) -> bool:
        value = driver.equal(stored, key)
        if not isinstance(value, bool):
            raise CallbackCrashed(value)
        return value

    return hash_fn, equal_fn
