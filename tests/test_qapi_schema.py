"""Tests for the QAPI schema reader (qthrottle.model.qapi_schema)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qthrottle.model.qapi_schema import Catalog, Event, Member, SchemaError, load_schema

REPO = Path(__file__).resolve().parents[1]


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def shape(event: Event) -> list[str]:
    """Members as QAPI spells them: '*name' for optional ones."""
    return [("*" if m.optional else "") + m.name for m in event.members]


# ------------------------------------------------------------------ constructs

EVERY_CONSTRUCT = """\
# A schema with one of everything.  # a comment after a comment
{ 'pragma': { 'doc-required': true } }

{ 'enum': 'BlockErrorAction', 'prefix': 'BLOCK_ERROR_ACTION',
  'data': [ 'ignore', 'report', 'stop' ] }
{ 'enum': 'Flavour',
  'data': [ 'plain', { 'name': 'fancy', 'if': 'CONFIG_FANCY' } ] }

{ 'struct': 'Base', 'data': { 'qom-path': 'str' } }
{ 'struct': 'Middle', 'base': 'Base', 'data': { '*flavour': 'Flavour' } }
{ 'struct': 'Info', 'base': 'Middle', 'data': { 'size': 'size' } }

{ 'union': 'Choice', 'base': { 'kind': 'Flavour', 'id': 'str' },
  'discriminator': 'kind',
  'data': { 'plain': 'Base', 'fancy': 'Info' } }
{ 'alternate': 'StrOrBool', 'data': { 's': 'str', 'b': 'bool' } }
{ 'command': 'do-it', 'data': { 'how': 'str' }, 'returns': [ 'Info' ] }

{ 'event': 'STOP' }
{ 'event': 'BLOCK_IO_ERROR',
  'data': { 'qom-path': 'str', 'device': 'str', '*node-name': 'str',
            'action': 'BlockErrorAction', '*nospace': 'bool',
            'reason': 'str' } }
{ 'event': 'SIZE_CHANGE', 'data': 'Info', 'boxed': true }
{ 'event': 'CHOSEN', 'data': 'Choice', 'boxed': true,
  'if': { 'all': [ 'CONFIG_A', 'CONFIG_B' ] }, 'features': [ 'unstable' ] }
{ 'event': 'FANCY',
  'data': { 'tags': [ 'str' ],
            '*later': 'Later',
            'tuned': { 'type': 'bool', 'if': 'CONFIG_TUNE',
                       'features': [ 'deprecated' ] },
            '*where': { 'type': [ 'Flavour' ],
                        'if': { 'not': { 'any': [ 'A', 'B' ] } } } } }
{ "event": "QUOTED", "data": { "text": 'str' } }   # double quotes also work
{ 'enum': 'Later', 'data': [ 'x', 'y' ] }   # defined after its first use
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    write(tmp_path, {"every.json": EVERY_CONSTRUCT})
    return load_schema(tmp_path / "every.json")


def test_events_in_schema_order_with_their_source(catalog: Catalog, tmp_path: Path) -> None:
    assert list(catalog.events) == [
        "STOP", "BLOCK_IO_ERROR", "SIZE_CHANGE", "CHOSEN", "FANCY", "QUOTED"]
    assert catalog.event("STOP").source == f"{tmp_path / 'every.json'}:19"
    assert catalog.event("BLOCK_IO_ERROR").source.endswith("every.json:20")


def test_event_without_data_has_no_members(catalog: Catalog) -> None:
    assert catalog.event("STOP").members == ()


def test_inline_members_and_optional_ones(catalog: Catalog) -> None:
    event = catalog.event("BLOCK_IO_ERROR")
    assert shape(event) == ["qom-path", "device", "*node-name", "action", "*nospace", "reason"]
    assert event.member("node-name") == Member("node-name", "str", True, None)
    assert event.member("qom-path") == Member("qom-path", "str", False, None)
    assert event.member("*node-name") is None
    assert event.member("absent") is None


def test_enum_values_of_enum_typed_members(catalog: Catalog) -> None:
    action = catalog.event("BLOCK_IO_ERROR").member("action")
    assert action is not None
    assert action.type == "BlockErrorAction"
    assert action.enum_values == ("ignore", "report", "stop")
    later = catalog.event("FANCY").member("later")
    assert later is not None and later.enum_values == ("x", "y")


def test_enums_keep_conditional_values(catalog: Catalog) -> None:
    assert catalog.enums == {
        "BlockErrorAction": ("ignore", "report", "stop"),
        "Flavour": ("plain", "fancy"),
        "Later": ("x", "y"),
    }


def test_struct_data_includes_base_members_recursively(catalog: Catalog) -> None:
    event = catalog.event("SIZE_CHANGE")
    assert shape(event) == ["qom-path", "*flavour", "size"]
    flavour = event.member("flavour")
    assert flavour is not None and flavour.enum_values == ("plain", "fancy")


def test_union_data_has_its_common_base_members(catalog: Catalog) -> None:
    assert shape(catalog.event("CHOSEN")) == ["kind", "id"]


def test_list_types_and_conditional_members(catalog: Catalog) -> None:
    event = catalog.event("FANCY")
    assert shape(event) == ["tags", "*later", "tuned", "*where"]
    assert event.member("tags") == Member("tags", "list:str", False, None)
    assert event.member("tuned") == Member("tuned", "bool", False, None, "CONFIG_TUNE")
    where = event.member("where")
    assert where == Member("where", "list:Flavour", True, None,
                           {"not": {"any": ["A", "B"]}})
    assert hash(where) == hash(Member("where", "list:Flavour", True, None))


def test_double_quoted_strings(catalog: Catalog) -> None:
    assert shape(catalog.event("QUOTED")) == ["text"]


def test_a_schema_is_read_again_only_when_a_file_it_read_has_changed(tmp_path: Path) -> None:
    write(tmp_path, {"qapi/qapi-schema.json": "{ 'include': 'more.json' }",
                     "qapi/more.json": "{ 'event': 'ONE' }"})
    first = load_schema(tmp_path / "qapi")
    assert load_schema(tmp_path / "qapi") is first  # read once
    (tmp_path / "qapi" / "more.json").write_text("{ 'event': 'ONE' }\n{ 'event': 'TWO' }")
    again = load_schema(tmp_path / "qapi")
    assert list(again.events) == ["ONE", "TWO"] and list(first.events) == ["ONE"]


def test_hash_in_string_is_not_a_comment_and_escapes(tmp_path: Path) -> None:
    write(tmp_path, {"s.json": r"""{ 'event': 'E#1', 'data': { 'it\'s': 'str' } }"""})
    assert shape(load_schema(tmp_path / "s.json").event("E#1")) == ["it's"]


def test_unknown_event_is_a_clear_key_error(catalog: Catalog) -> None:
    with pytest.raises(KeyError, match="no event 'BLOCK_IO_EROR'.*did you mean BLOCK_IO_ERROR"):
        catalog.event("BLOCK_IO_EROR")


def test_models_repr_is_python(catalog: Catalog) -> None:
    event = catalog.event("FANCY")
    assert eval(repr(event), {"Event": Event, "Member": Member}) == event


# -------------------------------------------------------------------- includes

def test_directory_reads_qapi_schema_json_and_nested_relative_includes(tmp_path: Path) -> None:
    write(tmp_path, {
        "qapi/qapi-schema.json": "{ 'include': 'common.json' }\n"
                                 "{ 'include': 'sub/block.json' }\n"
                                 "{ 'include': 'common.json' }\n"
                                 "{ 'event': 'LAST' }\n",
        "qapi/common.json": "{ 'enum': 'Action', 'data': [ 'report', 'stop' ] }\n",
        # relative to sub/, so ../common.json is the file already read: no duplicates
        "qapi/sub/block.json": "{ 'include': '../common.json' }\n"
                               "{ 'include': 'deeper/io.json' }\n",
        "qapi/sub/deeper/io.json": "{ 'event': 'IO', 'data': { 'action': 'Action' } }\n",
    })
    catalog = load_schema(tmp_path / "qapi")
    assert list(catalog.events) == ["IO", "LAST"]
    assert catalog.event("IO").source == f"{tmp_path}/qapi/sub/deeper/io.json:1"
    member = catalog.event("IO").member("action")
    assert member is not None and member.enum_values == ("report", "stop")


def test_file_included_twice_is_read_once_at_its_first_include(tmp_path: Path) -> None:
    write(tmp_path, {
        "top.json": "{ 'include': 'a.json' }\n{ 'event': 'MIDDLE' }\n"
                    "{ 'include': 'b.json' }\n",
        "a.json": "{ 'include': 'shared.json' }\n{ 'event': 'A' }\n",
        "b.json": "{ 'include': 'shared.json' }\n{ 'event': 'B' }\n",
        "shared.json": "{ 'event': 'SHARED' }\n",
    })
    assert list(load_schema(str(tmp_path / "top.json")).events) == ["SHARED", "A", "MIDDLE", "B"]


# ---------------------------------------------------------------------- errors

ERRORS = {
    "unterminated string": (
        {"s.json": "{ 'event': 'E',\n  'data': { 'id': 'str } }\n"},
        "s.json:2: ", "unterminated string"),
    "unterminated string at end of file": (
        {"s.json": "{ 'event': 'E' }\n{ 'event\n"}, "s.json:2: ", "unterminated string"),
    "stray character": (
        {"s.json": "{ 'event': 'E' }\n\n{ 'event': 'F'; }\n"}, "s.json:3: ", "stray ';'"),
    "stray word": ({"s.json": "{ 'event': 'E', 'boxed': True }\n"}, "s.json:1: ", "stray 'True'"),
    "number": ({"s.json": "{ 'event': 'E',\n 'x': 1 }"}, "s.json:2: ", "stray '1'"),
    "non-dict top level": (
        {"s.json": "# comment\n[ 'event', 'E' ]\n"}, "s.json:2: ", "must be a dict"),
    "string at top level": ({"s.json": "{ 'event': 'E' }\n'F'\n"}, "s.json:2: ", "must be a dict"),
    "missing comma": (
        {"s.json": "{ 'event': 'E'\n  'data': {} }\n"}, "s.json:2: ", "expected ',', found 'data'"),
    "trailing comma": (
        {"s.json": "{ 'event': 'E', }\n"}, "s.json:1: ", "expected a string, found '}'"),
    "unexpected end of file": (
        {"s.json": "{ 'event': 'E',\n  'data': {\n"}, "s.json:2: ", "found end of file"),
    "duplicate key": (
        {"s.json": "{ 'event': 'E',\n  'data': { 'a': 'str',\n 'a': 'int' } }\n"},
        "s.json:3: ", "duplicate key 'a'"),
    "unknown escape": ({"s.json": r"{ 'event': 'E\q' }"}, "s.json:1: ", r"unknown escape sequence \\q"),
    "no meta key": ({"s.json": "{ 'event': 'E' }\n{ 'type': 'T' }\n"}, "s.json:2: ",
                    "expected exactly one of"),
    "two meta keys": ({"s.json": "{ 'event': 'E', 'struct': 'E' }\n"}, "s.json:1: ",
                      "expected exactly one of"),
    "name not a string": ({"s.json": "{ 'event': [ 'E' ] }\n"}, "s.json:1: ",
                          "'event' must be a string"),
    "duplicate definition": (
        {"s.json": "{ 'event': 'E' }\n{ 'struct': 'E', 'data': {} }\n"}, "s.json:2: ",
        "'E' is already defined at .*s.json:1"),
    "bad member type": (
        {"s.json": "{ 'event': 'E',\n  'data': { 'a': [ 'str', 'int' ] } }\n"}, "s.json:2: ",
        "type of member 'a'"),
    "member dict without type": (
        {"s.json": "{ 'event': 'E',\n  'data': { 'a': { 'if': 'X' } } }\n"}, "s.json:2: ",
        "member 'a' has no 'type'"),
    "data not a dict": (
        {"s.json": "{ 'event': 'E',\n  'data': [ 'a' ] }\n"}, "s.json:2: ", "must be a dict"),
    "bad enum value": (
        {"s.json": "{ 'enum': 'E',\n  'data': [ 'a',\n { 'if': 'X' } ] }\n"}, "s.json:3: ",
        "enum value must be"),
    "event data names unknown struct": (
        {"s.json": "{ 'struct': 'S', 'data': {} }\n{ 'event': 'E', 'data': 'Missing' }\n"},
        "s.json:2: ", "the data of E is 'Missing', which is not defined"),
    "event data names an enum": (
        {"s.json": "{ 'enum': 'A', 'data': [] }\n{ 'event': 'E', 'data': 'A' }\n"},
        "s.json:2: ", "which is a enum, not a struct"),
    "struct base unknown": (
        {"s.json": "{ 'struct': 'S', 'base': 'Nope', 'data': {} }\n{ 'event': 'E', 'data': 'S' }"},
        "s.json:1: ", "the base of S is 'Nope'"),
    "struct base cycle": (
        {"s.json": "{ 'struct': 'S', 'base': 'T', 'data': {} }\n"
                   "{ 'struct': 'T', 'base': 'S', 'data': {} }\n{ 'event': 'E', 'data': 'S' }"},
        "s.json:2: ", "T is its own base"),
    "deep nesting": ({"s.json": "{ 'x': " + "[" * 500}, "s.json:1: ", "levels of nesting"),
    "not UTF-8": (
        {"s.json": b"{ 'event': 'E' }\n# caf\xe9\n"}, "s.json:2: ", "not UTF-8"),
    "binary content": ({"s.json": b"\x00\x01\x02\x03"}, "s.json:1: ", r"stray '\\x00'"),
    "missing include": (
        {"s.json": "{ 'event': 'E' }\n{ 'include': 'nope.json' }\n"}, "s.json:2: ",
        "cannot read .*nope.json: No such file"),
    "include of a directory": (
        {"s.json": "{ 'include': 'sub' }\n", "sub/x.json": ""}, "s.json:1: ", "cannot read"),
    "include cycle": (
        {"s.json": "{ 'include': 'sub/a.json' }\n",
         "sub/a.json": "# a\n{ 'include': 'b.json' }\n",
         "sub/b.json": "\n\n{ 'include': '../sub/a.json' }\n"},
        "sub/b.json:3: ", "include cycle: .*sub/a.json"),
    "self include": ({"s.json": "{ 'include': 's.json' }\n"}, "s.json:1: ", "include cycle"),
    "error inside an included file": (
        {"s.json": "{ 'include': 'sub/x.json' }\n", "sub/x.json": "\n{ 'event' 'E' }\n"},
        "sub/x.json:2: ", "expected ':'"),
}


@pytest.mark.parametrize("files, location, message", ERRORS.values(), ids=ERRORS.keys())
def test_bad_input_is_a_schema_error_with_file_and_line(
        tmp_path: Path, files: dict[str, str | bytes], location: str, message: str) -> None:
    write(tmp_path, files)
    with pytest.raises(SchemaError) as raised:
        load_schema(tmp_path / "s.json")
    text = str(raised.value)
    assert text.startswith(f"{tmp_path}/{location}"), text
    assert re.search(message, text), text


SCHEMA_PIECES = [
    "{", "}", "[", "]", ",", ":", "'event'", "'data'", "'E'", "'*a'", "'str'", "'enum'",
    "'struct'", "'union'", "'base'", "'S'", "'type'", "'if'", "'include'", "'s.json'",
    "true", "\"x\"", "#", "\n", " ", "'", "\\", "1", "\x00", "\u00e9"]


@given(st.lists(st.sampled_from(SCHEMA_PIECES), max_size=40).map("".join))
def test_any_text_gives_a_catalog_or_a_schema_error(text: str) -> None:
    # A directory per example: hypothesis does not reset function-scoped fixtures.
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "s.json"
        path.write_text(text, encoding="utf-8")
        try:
            load_schema(path)
        except SchemaError as error:
            assert re.match(rf"{re.escape(str(path))}:\d+: ", str(error)), error


def test_directory_without_qapi_schema_json(tmp_path: Path) -> None:
    write(tmp_path, {"qapi/block.json": "{ 'event': 'E' }\n"})
    with pytest.raises(SchemaError, match=r"^.*qapi/qapi-schema\.json:1: no qapi-schema\.json"):
        load_schema(tmp_path / "qapi")


def test_missing_schema_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"^.*nope\.json:1: cannot read"):
        load_schema(tmp_path / "nope.json")


# ------------------------------------------------------------- real schemas

def test_bundled_case_study_schema() -> None:
    catalog = load_schema(REPO / "cases" / "qapi")
    assert shape(catalog.event("BLOCK_IO_ERROR")) == [
        "qom-path", "device", "*node-name", "operation", "action", "*nospace", "reason"]


@pytest.mark.real_qemu
@pytest.mark.parametrize("fixture, has_qom_path", [("qemu_tree_72", False),
                                                   ("qemu_tree_100", True)])
def test_real_qemu_qapi_dirs(fixture: str, has_qom_path: bool,
                             request: pytest.FixtureRequest) -> None:
    qapi_dir = request.getfixturevalue(fixture) / "qapi"
    catalog = load_schema(qapi_dir)
    # An independent count: every top-level event definition line in the directory.
    pattern = re.compile(r"^\{\s*'event':\s*'([^']+)'", re.MULTILINE)
    defined = {name for path in qapi_dir.glob("*.json")
               for name in pattern.findall(path.read_text(encoding="utf-8"))}
    assert set(catalog.events) == defined, qapi_dir

    block_io_error = catalog.event("BLOCK_IO_ERROR")
    expected = ["device", "*node-name", "operation", "action", "*nospace", "reason"]
    if has_qom_path:  # added to BLOCK_IO_ERROR along with its throttle (QEMU 9.2)
        expected.insert(0, "qom-path")
    assert shape(block_io_error) == expected, qapi_dir
    operation, action = block_io_error.member("operation"), block_io_error.member("action")
    assert operation is not None and operation.enum_values == ("read", "write")
    assert action is not None and action.enum_values == ("ignore", "report", "stop")

    assert shape(catalog.event("VSERPORT_CHANGE")) == ["id", "open"]
    assert shape(catalog.event("MEMORY_DEVICE_SIZE_CHANGE")) == ["*id", "size", "qom-path"]
    assert catalog.event("RTC_CHANGE").member("qom-path") is not None
