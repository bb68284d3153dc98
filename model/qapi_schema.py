"""Read a QEMU QAPI schema (qapi/*.json) into a catalog of events and enums.

The schema language is JSON-like: single (or double) quoted strings, ``#``
comments, ``true``/``false``, lists and dicts, one dict per top-level
expression, ``{ 'include': ... }`` directives relative to the including file.
This is an independent reader: a tokenizer and a recursive-descent parser that
keep line numbers, so every error says ``file:line: what is wrong``.

Conditions (``'if'``) are recorded, never evaluated: a member under a condition
is still a member.
"""

# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate these
# annotations with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from qthrottle.core import QthrottleError, read_input

_META_KEYS = ("include", "pragma", "enum", "struct", "union", "alternate", "command", "event")
_MAX_NESTING = 100  # real schemas nest a handful of levels; this keeps recursion bounded


class SchemaError(QthrottleError):
    """Unreadable or malformed schema; the message starts with ``FILE:LINE: ``."""


@dataclass(frozen=True)
class Member:
    """One member of an event's data.

    ``type`` is the QAPI type name, or ``list:T`` for the array type ``['T']``.
    ``enum_values`` is set when ``type`` names an enum.  ``condition`` is the
    member's unevaluated ``'if'`` (a string or a dict such as ``{'all': [...]}``).
    """

    name: str
    type: str
    optional: bool
    enum_values: Optional[tuple[str, ...]]
    # A dict condition is unhashable; equal members still hash equally without it.
    condition: Optional[object] = field(default=None, hash=False)


@dataclass(frozen=True)
class Event:
    name: str
    members: tuple[Member, ...]
    source: str  # "file:line" of the definition

    def member(self, name: str) -> Optional[Member]:
        return next((m for m in self.members if m.name == name), None)


@dataclass(frozen=True)
class Catalog:
    events: Mapping[str, Event]  # in schema order
    enums: Mapping[str, tuple[str, ...]]

    def event(self, name: str) -> Event:
        try:
            return self.events[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.events), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"no event {name!r} in the QAPI schema{hint}") from None


# The schemas read in this process, by the path asked for: the files each read, with a
# digest of their bytes (a file changed since means reading it all again), and the catalog.
_read: OrderedDict[str, tuple[tuple[tuple[Path, bytes], ...], Catalog]] = OrderedDict()
_READ_KEPT = 32


def _digest(path: Path) -> Optional[bytes]:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


def load_schema(path: Union[Path, str]) -> Catalog:
    """Read a qapi/ directory (its qapi-schema.json) or one schema file, with includes.

    Read again only if one of the files it read has changed (a real schema is a
    hundred files: commands that look at a tree several times read it once)."""
    asked = str(Path(path).absolute())
    kept = _read.get(asked)
    if kept is not None and all(_digest(file) == digest for file, digest in kept[0]):
        _read.move_to_end(asked)
        return kept[1]
    reader, catalog = _read_schema(path)
    _read[asked] = (tuple((file, hashlib.sha256(data).digest())
                          for file, data in reader.contents), catalog)
    if len(_read) > _READ_KEPT:
        _read.popitem(last=False)
    return catalog


def _read_schema(path: Union[Path, str]) -> tuple[_Reader, Catalog]:
    root = Path(path)
    if root.is_dir():
        root = root / "qapi-schema.json"
        if not root.is_file():
            raise SchemaError(f"{root}:1: no qapi-schema.json in directory {path}")
    try:
        tree = root.resolve().parent
    except (OSError, RuntimeError) as err:  # RuntimeError: a symbolic link loop
        raise SchemaError(f"{root}:1: cannot read {root}: {err}") from None
    reader = _Reader(tree)
    reader.read_file(root, including=None)
    return reader, reader.catalog()


# ---------------------------------------------------------------- tokenizer

@dataclass(frozen=True)
class _Node:
    """A parsed value and the line it starts on."""

    line: int
    value: _Value


_Value = Union[str, bool, list[_Node], dict[str, _Node]]
_Token = tuple[str, object, int]  # kind ("str", "bool" or the punctuation), value, line

_SKIP = re.compile(r"(?:[ \t\r\n\f\v]|#[^\n]*)*")
_TOKEN = re.compile(
    r"""(?P<punct>[{}\[\],:])
      | '(?P<sq>(?:[^'\\\n]|\\.)*)'
      | "(?P<dq>(?:[^"\\\n]|\\.)*)"
      | (?P<bool>true|false)\b""",
    re.VERBOSE,
)
_WORD = re.compile(r"\w+|.", re.DOTALL)
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "/": "/", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t"}


def _unescape(raw: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        char = match.group(1)
        if char not in _ESCAPES:
            raise SchemaError(f"{where}: unknown escape sequence \\{char} in string")
        return _ESCAPES[char]

    return _ESCAPE.sub(replace, raw)


def _tokens(text: str, file: str) -> Iterator[_Token]:
    pos, line = 0, 1
    while True:
        skipped = _SKIP.match(text, pos)
        assert skipped is not None  # the pattern matches the empty string
        line += text.count("\n", pos, skipped.end())
        pos = skipped.end()
        if pos == len(text):
            return
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] in "'\"":
                raise SchemaError(f"{file}:{line}: unterminated string")
            word = _WORD.match(text, pos)
            assert word is not None
            raise SchemaError(f"{file}:{line}: stray {word.group()!r}")
        if match.group("punct"):
            yield match.group("punct"), None, line
        elif match.group("bool"):
            yield "bool", match.group("bool") == "true", line
        else:
            raw = match.group("sq") if match.group("sq") is not None else match.group("dq")
            yield "str", _unescape(raw, f"{file}:{line}"), line
        pos = match.end()


# ------------------------------------------------------------------- parser

class _Parser:
    """Recursive descent over the tokens of one file: a sequence of dicts."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.tokens = list(_tokens(text, file))
        self.pos = 0

    def expressions(self) -> Iterator[_Node]:
        while self.pos < len(self.tokens):
            kind, _, line = self.tokens[self.pos]
            if kind != "{":
                raise SchemaError(f"{self.file}:{line}: top-level expression must be a dict")
            yield self.value(depth=0)

    def error(self, expected: str) -> SchemaError:
        if self.pos < len(self.tokens):
            kind, value, line = self.tokens[self.pos]
            found = {"str": repr(value), "bool": str(value).lower()}.get(kind, repr(kind))
            return SchemaError(f"{self.file}:{line}: expected {expected}, found {found}")
        last = self.tokens[-1][2] if self.tokens else 1
        return SchemaError(f"{self.file}:{last}: expected {expected}, found end of file")

    def take(self, kind: str) -> _Token:
        if self.pos >= len(self.tokens) or self.tokens[self.pos][0] != kind:
            raise self.error("a string" if kind == "str" else repr(kind))
        self.pos += 1
        return self.tokens[self.pos - 1]

    def peek(self) -> str:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else ""

    def value(self, depth: int) -> _Node:
        if depth > _MAX_NESTING:
            raise self.error(f"at most {_MAX_NESTING} levels of nesting")
        if self.peek() == "{":
            return self.dict_(depth)
        if self.peek() == "[":
            return self.list_(depth)
        if self.peek() in ("str", "bool"):
            _, value, line = self.tokens[self.pos]
            self.pos += 1
            assert isinstance(value, (str, bool))
            return _Node(line, value)
        raise self.error("a value")

    def dict_(self, depth: int) -> _Node:
        line = self.take("{")[2]
        entries: dict[str, _Node] = {}
        while self.peek() != "}":
            if entries:
                self.take(",")
            _, key, key_line = self.take("str")
            assert isinstance(key, str)
            if key in entries:
                raise SchemaError(f"{self.file}:{key_line}: duplicate key {key!r}")
            self.take(":")
            entries[key] = self.value(depth + 1)
        self.take("}")
        return _Node(line, entries)

    def list_(self, depth: int) -> _Node:
        line = self.take("[")[2]
        items: list[_Node] = []
        while self.peek() != "]":
            if items:
                self.take(",")
            items.append(self.value(depth + 1))
        self.take("]")
        return _Node(line, items)


# ---------------------------------------------------------------- semantics

@dataclass(frozen=True)
class _Definition:
    meta: str
    name: str
    body: dict[str, _Node]
    file: str
    line: int

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"


def _plain(node: _Node) -> object:
    """A node as plain Python data (for conditions)."""
    if isinstance(node.value, list):
        return [_plain(item) for item in node.value]
    if isinstance(node.value, dict):
        return {key: _plain(item) for key, item in node.value.items()}
    return node.value


class _Reader:
    """Reads a schema file and its includes, all inside the directory @tree (symbolic
    links resolved: an include that leads out of the tree is refused, so that a patch
    cannot make the reader quote a file from elsewhere)."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.definitions: dict[str, _Definition] = {}
        self.done: set[Path] = set()  # files already read: later includes are no-ops
        self.contents: list[tuple[Path, bytes]] = []  # every file read, and its bytes
        self.active: list[Path] = []  # include stack, for cycle detection

    def read_file(self, path: Path, including: Optional[str]) -> None:
        where = including or f"{path}:1"
        try:
            key = path.resolve()
            if including is not None and not key.is_relative_to(self.tree):
                raise SchemaError(f"{where}: the include {path} leads to {key}, outside the "
                                  f"schema's directory {self.tree}: refused")
            if key in self.active:
                raise SchemaError(f"{where}: include cycle: {path} is already being read")
            if key in self.done:
                return
            data = read_input(path, "a QAPI schema file")
        except (OSError, ValueError, RuntimeError) as err:  # NUL in the name; link loop
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise SchemaError(f"{where}: cannot read {path}: {reason}") from None
        except SchemaError:
            raise
        except QthrottleError as err:  # not a regular file, or too large
            raise SchemaError(f"{where}: {err}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise SchemaError(f"{path}:{line}: not UTF-8 text (byte {err.start})") from None
        self.done.add(key)
        self.contents.append((path.absolute(), data))
        self.active.append(key)
        for expr in _Parser(text, str(path)).expressions():
            self.add(expr, path)
        self.active.pop()

    def add(self, expr: _Node, path: Path) -> None:
        assert isinstance(expr.value, dict)
        body, where = expr.value, f"{path}:{expr.line}"
        metas = [key for key in _META_KEYS if key in body]
        if len(metas) != 1:
            raise SchemaError(f"{where}: expected exactly one of {', '.join(_META_KEYS)}")
        meta = metas[0]
        if meta == "pragma":
            return
        target = body[meta].value
        if not isinstance(target, str):
            raise SchemaError(f"{path}:{body[meta].line}: '{meta}' must be a string")
        if meta == "include":
            self.read_file(Path(os.path.normpath(path.parent / target)), including=where)
            return
        if target in self.definitions:
            first = self.definitions[target].source
            raise SchemaError(f"{where}: {target!r} is already defined at {first}")
        self.definitions[target] = _Definition(meta, target, body, str(path), expr.line)

    def catalog(self) -> Catalog:
        enums = {d.name: self.enum_values(d) for d in self.definitions.values()
                 if d.meta == "enum"}
        events = {d.name: Event(d.name, self.event_members(d, enums), d.source)
                  for d in self.definitions.values() if d.meta == "event"}
        return Catalog(events=events, enums=enums)

    def enum_values(self, enum: _Definition) -> tuple[str, ...]:
        data = enum.body.get("data")
        if data is None or not isinstance(data.value, list):
            raise SchemaError(f"{enum.source}: enum {enum.name} needs a 'data' list")
        values = []
        for item in data.value:
            value = item.value
            if isinstance(value, dict) and "name" in value:
                value = value["name"].value
            if not isinstance(value, str):
                raise SchemaError(f"{enum.file}:{item.line}: enum value must be a string "
                                  "or a dict with a 'name'")
            values.append(value)
        return tuple(values)

    def event_members(self, event: _Definition,
                      enums: Mapping[str, tuple[str, ...]]) -> tuple[Member, ...]:
        data = event.body.get("data")
        if data is None:
            return ()
        if isinstance(data.value, str):
            return self.type_members(data.value, event, enums)
        return self.members(data, event.file, enums)

    def type_members(self, name: str, user: _Definition,
                     enums: Mapping[str, tuple[str, ...]]) -> tuple[Member, ...]:
        """Members of struct ``name``, base members first; of a union, its base's only.

        A union's variant members depend on its discriminator, so none of them is
        present in every event.
        """
        chain: list[_Definition] = []  # name, its base, the base's base, ...
        while True:
            definition = self.definitions.get(name)
            if definition is None or definition.meta not in ("struct", "union"):
                what = f"a {definition.meta}" if definition else "not defined"
                role = "data" if user.meta == "event" else "base"
                raise SchemaError(f"{user.source}: the {role} of {user.name} is {name!r}, "
                                  f"which is {what}, not a struct")
            if any(seen.name == name for seen in chain):
                raise SchemaError(f"{user.source}: {user.name} is its own base (via {name})")
            chain.append(definition)
            base = definition.body.get("base")
            if base is None or not isinstance(base.value, str):
                break
            user, name = definition, base.value
        members: list[Member] = []
        for definition in reversed(chain):
            base = definition.body.get("base")
            if base is not None and not isinstance(base.value, str):  # an inline base
                members += self.members(base, definition.file, enums)
            if definition.meta == "struct":
                data = definition.body.get("data")
                if data is None:
                    raise SchemaError(f"{definition.source}: struct {definition.name} needs 'data'")
                members += self.members(data, definition.file, enums)
        return tuple(members)

    @staticmethod
    def members(data: _Node, file: str,
                enums: Mapping[str, tuple[str, ...]]) -> tuple[Member, ...]:
        if not isinstance(data.value, dict):
            raise SchemaError(f"{file}:{data.line}: members must be a dict")
        members = []
        for key, spec in data.value.items():
            condition: Optional[_Node] = None
            type_node = spec
            if isinstance(spec.value, dict):
                if "type" not in spec.value:
                    raise SchemaError(f"{file}:{spec.line}: member {key!r} has no 'type'")
                type_node, condition = spec.value["type"], spec.value.get("if")
            type_name = _type_name(type_node, f"{file}:{type_node.line}", key)
            members.append(Member(
                name=key.removeprefix("*"),
                type=type_name,
                optional=key.startswith("*"),
                enum_values=enums.get(type_name),
                condition=None if condition is None else _plain(condition),
            ))
        return tuple(members)


def _type_name(node: _Node, where: str, member: str) -> str:
    """``'T'`` -> ``T``; ``['T']`` -> ``list:T``."""
    if isinstance(node.value, str):
        return node.value
    if (isinstance(node.value, list) and len(node.value) == 1
            and isinstance(node.value[0].value, str)):
        return f"list:{node.value[0].value}"
    raise SchemaError(f"{where}: type of member {member!r} must be a name or ['name']")


