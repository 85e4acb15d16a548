"""Split a story file into frontmatter and body; YAML → JSON-safe data with positions.

No git and no database here: bytes in, a ``Story`` or a list of ``Diagnostic`` out.
A file that cannot be read as a story is data (diagnostics), never an exception.

YAML is parsed by libyaml (PyYAML's C parser) when it is available, and values are
built here straight from its event stream, with every key's and value's position:
no node tree is composed.  Plain scalars are resolved by PyYAML's SafeLoader rules
(its resolver table), timestamps stay the strings the author wrote, duplicate keys
(also keys that collapse to the same JSON key, such as ``1`` and ``"1"``) are
refused, and no object is ever constructed from a tag.  Anchors, aliases and
nesting deeper than ``MAX_DEPTH`` stop the reading where they occur; frontmatter
over ``MAX_FRONTMATTER`` bytes and files over ``MAX_FILE`` bytes are refused before
any YAML is read.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable
from typing import Any

import yaml

from storysync.errors import Diagnostic
from storysync.story.model import KeyPath, Location, Mark, Story

try:  # the C loader is ~8x faster; fall back to pure Python where libyaml is missing
    from yaml import CSafeLoader as _Loader
    from yaml._yaml import CParser as _Parser  # _Loader's parser alone, without constructor and resolver
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

    _Parser = _Loader  # type: ignore[misc]

MAX_FILE = 1024 * 1024
MAX_FRONTMATTER = 64 * 1024
MAX_DEPTH = 32
INT_LIMIT = 2**63

BOM = "\ufeff"
_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP = (_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_SEQ, _MAP, _MERGE = _TAG + "seq", _TAG + "map", _TAG + "merge"
_ALLOWED_TAGS = frozenset((_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _SEQ, _MAP))
_COLLECTION_TAGS = frozenset((_SEQ, _MAP))
# the loader's implicit resolvers (YAML 1.1, as SafeLoader applies them) by a plain
# scalar's first character ("" for an empty one), each followed by those for any character
_RESOLVERS = _Loader.yaml_implicit_resolvers
_WILDCARD: tuple[tuple[str, re.Pattern[str]], ...] = tuple(_RESOLVERS.get(None, ()))
_IMPLICIT: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: (*resolvers, *_WILDCARD) for first, resolvers in _RESOLVERS.items() if first is not None
}
_ScalarEvent, _MappingEndEvent = yaml.ScalarEvent, yaml.MappingEndEvent
_CONFLICT = re.compile(r"^(<{7}|>{7})(?: |$)|^={7}$|^\|{7}(?: |$)", re.MULTILINE)
_INDENT = re.compile(r"^[ \t]*", re.MULTILINE)
# block indicators after a line's indentation ("- - - a", "? - a", ": - b"): each one
# after the first opens a collection at a column no line's indentation shows
_COMPACT = re.compile(r"^[ \t]*((?:[-?:](?:[ \t]+|$))+)", re.MULTILINE)
_constructor = yaml.constructor.SafeConstructor()


class _Refused(Exception):
    """A frontmatter problem found while building values; carries its position."""

    def __init__(self, mark: Mark, code: str, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.code = code
        self.message = message


def parse_story(location: Location, data: bytes) -> Story | list[Diagnostic]:
    """Parse one story file's bytes; a ``Story`` or every problem found in it."""
    path = location.path
    if len(data) > MAX_FILE:
        return [_diag(path, (1, 1), "file-too-large", f"file is {len(data)} bytes; the limit is {MAX_FILE} (1 MiB)")]
    text_or_diag = _decode(path, data)
    if isinstance(text_or_diag, Diagnostic):
        return [text_or_diag]
    text, bom = text_or_diag
    problems = _conflict_markers(path, text)
    split = _split(path, text)
    if isinstance(split, Diagnostic):
        return [*problems, split]
    fm_text, body = split
    if problems:
        return problems
    loaded = load_frontmatter(path, fm_text)
    if isinstance(loaded, list):
        return loaded
    data_map, value_marks, key_marks, written = loaded
    return Story(
        location=location,
        frontmatter=data_map,
        body=body,
        content_hash=hashlib.sha256(data).hexdigest(),
        bom=bom,
        value_marks=value_marks,
        key_marks=key_marks,
        written=written,
    )


def split_body(data: bytes) -> str:
    """The body of a file that already parsed once (used to stream bodies back in)."""
    text = data.decode("utf-8")
    text = text[1:] if text.startswith(BOM) else text
    split = _split("", text)
    assert not isinstance(split, Diagnostic)
    return split[1]


def _diag(path: str, mark: Mark, code: str, message: str) -> Diagnostic:
    return Diagnostic(path, mark[0], mark[1], code, message)


def _position(data: bytes, offset: int) -> Mark:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _decode(path: str, data: bytes) -> tuple[str, bool] | Diagnostic:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(data):
        return _diag(path, (1, 1), "not-utf8", "file is UTF-16; save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        return _diag(path, _position(data, nul), "binary", "file contains NUL bytes; a story is UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _diag(
            path,
            _position(data, exc.start),
            "not-utf8",
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
        )
    if text.startswith(BOM):
        return text[1:], True
    return text, False


def _utf16_without_bom(data: bytes) -> bool:
    """ASCII text saved as UTF-16: every other byte of the start is NUL ("-\\0-\\0-\\0")."""
    head = data[:8]
    return len(head) == 8 and (head[1::2] == b"\0" * 4 or head[0::2] == b"\0" * 4)


def _conflict_markers(path: str, text: str) -> list[Diagnostic]:
    """Lines git writes for a conflict.  ``=======`` and ``|||||||`` count only inside a
    ``<<<<<<<`` block: alone, ``=======`` is a Markdown heading underline."""
    if "<<<<<<<" not in text and ">>>>>>>" not in text:
        return []
    found: list[Diagnostic] = []
    inside = False
    for m in _CONFLICT.finditer(text):
        marker = m.group(0)[0]
        if marker == "<":
            inside = True
        elif marker == ">":
            inside = False
        elif not inside:
            continue
        line = text.count("\n", 0, m.start()) + 1
        found.append(
            _diag(path, (line, 1), "conflict-marker", "git conflict marker; resolve the merge conflict in this file")
        )
    return found


def _split(path: str, text: str) -> tuple[str, str] | Diagnostic:
    first_end = text.find("\n")
    first = text if first_end < 0 else text[:first_end]
    if first.rstrip("\r") != "---":
        return _diag(path, (1, 1), "no-frontmatter", "first line must be '---' to open the YAML frontmatter")
    too_large = _diag(path, (1, 1), "frontmatter-too-large", f"frontmatter is over {MAX_FRONTMATTER // 1024} KiB")
    newline = first_end
    while newline >= 0:  # jump from one line starting with '---' to the next, not line by line
        newline = text.find("\n---", newline)
        if newline < 0:
            break
        pos = newline + 1
        if pos - first_end > MAX_FRONTMATTER + 8:
            return too_large
        end = text.find("\n", pos)
        if (text[pos:] if end < 0 else text[pos:end]).rstrip("\r") == "---":
            fm = text[first_end + 1 : pos]
            if len(fm.encode("utf-8")) > MAX_FRONTMATTER:
                return too_large
            return fm, ("" if end < 0 else text[end + 1 :])
        newline = pos
    if first_end >= 0 and text.rfind("\n") + 1 - first_end > MAX_FRONTMATTER + 8:
        return too_large
    return _diag(path, (1, 1), "no-closing-delimiter", "frontmatter has no closing '---' line")


Loaded = tuple[dict[str, Any], dict[KeyPath, Mark], dict[KeyPath, Mark], dict[KeyPath, str]]
Event = Any  # a PyYAML event; read by its class and attributes only


def load_frontmatter(path: str, fm_text: str) -> Loaded | list[Diagnostic]:
    """YAML frontmatter text (which starts on line 2 of the file) → data and marks."""
    try:
        return _read(fm_text)
    except _Refused as exc:
        return [_diag(path, exc.mark, exc.code, exc.message)]
    except _Problems as exc:  # every problem of the frontmatter, not only the first
        return [_diag(path, p.mark, p.code, p.message) for p in exc.problems]
    except RecursionError:  # defence in depth: the depth is bounded while reading
        return [_diag(path, (2, 1), "too-deep", f"frontmatter nests deeper than {MAX_DEPTH} levels")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 2, mark.column + 1) if mark else (2, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        return [_diag(path, where, "yaml-syntax", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:  # reader errors (control characters) carry a position too
        mark = getattr(exc, "position", None)
        where = _position(fm_text.encode(), mark) if isinstance(mark, int) else (1, 1)
        return [_diag(path, (where[0] + 1, where[1]), "yaml-syntax", f"invalid YAML: {exc}".splitlines()[0])]


class _Problems(Exception):
    """Every value-level problem of a frontmatter that otherwise read as YAML."""

    def __init__(self, problems: list[_Refused]) -> None:
        super().__init__(problems[0].message)
        self.problems = problems


def _read(fm_text: str) -> Loaded:
    """``_load`` with libyaml, and a refusal that comes first whatever libyaml's version.

    libyaml 0.2.6 (PyYAML 6.0.4's wheels) stops at its own nesting limit (1000 open
    collections) while its scanner looks ahead for a possible key, which on a line such
    as ``x: [[[[...`` is before it hands out the event that nests too deep here.  So
    where libyaml fails on frontmatter that may nest deeper than ``MAX_DEPTH``, PyYAML's
    pure-Python parser (the same events, no such limit) reads it again: a refusal it
    meets first (too deep, an anchor, an alias) is the answer, as it is where libyaml
    has no limit; anything else keeps libyaml's error.
    """
    try:
        return _load(fm_text, _Parser)
    except yaml.YAMLError as exc:
        if depth_bound(fm_text) <= MAX_DEPTH:
            raise
        error = exc
    try:
        _load(fm_text, yaml.SafeLoader)
    except _Refused:
        raise
    except Exception:  # noqa: S110 - the pure-Python parser's own error: libyaml's stands
        pass
    raise error


def _load(fm_text: str, parser: Callable[[str], Any]) -> Loaded:
    """Read the single YAML document of ``fm_text`` into data and marks, or raise.

    Precedence, as a reader that composes the whole document first would have it:
    YAML errors, anchors, aliases and too-deep nesting (in the order they occur), then
    a second document, then a document that is not a mapping, then value problems.
    The later documents are read for the first group only where the old reader's
    event pre-scan would have reached them (an ``&`` or ``*``, or a deep bound).
    """
    get: Callable[[], Event] = parser(fm_text).get_event
    get()  # stream start
    if get().__class__ is yaml.StreamEndEvent:  # no document at all: only comments or blank
        raise _Refused((2, 1), "empty-frontmatter", "frontmatter is empty; it needs at least 'id' and 'title'")
    builder = _Builder(get)
    root = get()
    data = None
    if root.__class__ is yaml.MappingStartEvent:
        data = builder.value(root, (), 0)
    else:
        builder.skip(root, 0)
    get()  # document end
    second = get()
    if second.__class__ is not yaml.StreamEndEvent:
        if "&" in fm_text or "*" in fm_text or depth_bound(fm_text) > MAX_DEPTH:
            builder.check_rest()  # the later documents' anchors, aliases, depth and syntax come first
        raise yaml.composer.ComposerError(
            "expected a single document in the stream", root.start_mark, "but found another document", second.start_mark
        )
    if root.__class__ is not yaml.MappingStartEvent:
        kind = "a list" if root.__class__ is yaml.SequenceStartEvent else "a scalar"
        raise _Refused(_mark(root), "not-a-mapping", f"frontmatter is {kind}; it must be a mapping of keys to values")
    if builder.problems:
        raise _Problems(builder.problems)
    assert isinstance(data, dict)
    return data, builder.values, builder.keys, builder.written


def depth_bound(fm_text: str) -> int:
    """An upper bound of the nesting depth of ``fm_text``'s YAML, without parsing it.

    Along any path a collection opens with a flow bracket, or at a line's
    indentation (at most two per indentation: a mapping and the block sequence
    that is its value), or after a block indicator on its line ("- - a").
    """
    brackets = fm_text.count("[") + fm_text.count("{")
    indents = len(set(_INDENT.findall(fm_text)))
    leads: list[str] = _COMPACT.findall(fm_text)
    compact = sum(m.count("-") + m.count("?") + m.count(":") - 1 for m in leads)
    return brackets + 2 * indents + compact + 2


def _mark(event: Event) -> Mark:
    mark = event.start_mark
    return (mark.line + 2, mark.column + 1) if mark is not None else (2, 1)


def _resolve(text: str) -> str:
    """The tag PyYAML's SafeLoader gives an untagged plain scalar (YAML 1.1 rules)."""
    return _match(_IMPLICIT.get(text[:1], _WILDCARD), text)


_key_tag = functools.lru_cache(maxsize=1024)(_resolve)  # keys repeat from file to file


def _match(resolvers: tuple[tuple[str, re.Pattern[str]], ...], text: str) -> str:
    for tag, regexp in resolvers:
        if regexp.match(text):
            return tag
    return _STR


def _refuse_node(event: Event) -> None:
    """Anchors and aliases are refused wherever they are, even in values skipped otherwise."""
    if event.__class__ is yaml.AliasEvent:
        raise _Refused(_mark(event), "alias", "YAML aliases (*name) are not allowed in frontmatter")
    if event.anchor:
        raise _Refused(_mark(event), "anchor", "YAML anchors (&name) are not allowed in frontmatter")


def _too_deep(event: Event) -> _Refused:
    return _Refused(_mark(event), "too-deep", f"frontmatter nests deeper than {MAX_DEPTH} levels")


class _Builder:
    """Builds JSON-safe values from libyaml's events, with the position of every key and value.

    ``depth`` is the number of collections open around an event; problems that leave
    the YAML readable are collected (all of them), the others are raised.
    """

    __slots__ = ("get", "keys", "problems", "values", "written")

    def __init__(self, get: Callable[[], Event]) -> None:
        self.get = get
        self.values: dict[KeyPath, Mark] = {}
        self.keys: dict[KeyPath, Mark] = {}
        self.written: dict[KeyPath, str] = {}  # the text of scalars YAML did not read as strings
        self.problems: list[_Refused] = []

    def value(self, event: Event, path: KeyPath, depth: int) -> Any:
        """The value that starts with ``event``; its events are consumed."""
        cls = event.__class__
        if cls is not _ScalarEvent or event.anchor:
            _refuse_node(event)  # raises for an alias or an anchor
            return self._collection(event, path, depth + 1)
        start = event.start_mark
        self.values[path] = (start.line + 2, start.column + 1)
        text = event.value
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return text
            resolvers = _IMPLICIT.get(text[:1], _WILDCARD)
            if not resolvers:
                return text
            tag = _match(resolvers, text)
        if tag == _STR:
            return text
        return self._scalar(event, tag, path)

    def _scalar(self, event: Event, tag: str, path: KeyPath) -> Any:
        if tag not in _ALLOWED_TAGS:
            self._problem(_mark(event), "tag", f"YAML tag {tag!r} is not allowed; write a plain value")
            return None
        if tag in _COLLECTION_TAGS:  # e.g. !!seq on a plain value
            self._problem(_mark(event), "tag", f"YAML tag {tag!r} does not fit this value")
            return None
        try:
            value = _convert(tag, event.value, event)
        except _Refused as exc:
            self.problems.append(exc)
            return None
        if not isinstance(value, str):
            self.written[path] = event.value
        return value

    def _collection(self, event: Event, path: KeyPath, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _too_deep(event)
        mark = _mark(event)
        self.values[path] = mark
        mapping = event.__class__ is yaml.MappingStartEvent
        tag = event.tag
        if tag is not None and tag != "!":
            if tag not in _ALLOWED_TAGS:
                self.skip(event, depth - 1)
                self._problem(mark, "tag", f"YAML tag {tag!r} is not allowed; write a plain value")
                return None
            if tag != (_MAP if mapping else _SEQ):  # e.g. !!str on a list
                self.skip(event, depth - 1)
                self._problem(mark, "tag", f"YAML tag {tag!r} does not fit this value")
                return None
        return self._mapping(path, depth) if mapping else self._sequence(path, depth)

    def _sequence(self, path: KeyPath, depth: int) -> list[Any]:
        items: list[Any] = []
        get = self.get
        event = get()
        while event.__class__ is not yaml.SequenceEndEvent:
            items.append(self.value(event, (*path, len(items)), depth))
            event = get()
        return items

    def _mapping(self, path: KeyPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        get = self.get
        keys = self.keys
        event = get()
        while event.__class__ is not _MappingEndEvent:
            key: str | None
            cls = event.__class__
            if cls is _ScalarEvent and event.tag is None and not event.anchor:  # a plain or quoted key
                key = event.value
                if event.implicit[0] and _key_tag(key) != _STR:
                    key = self._key(event, depth)
            else:
                key = self._key(event, depth)
            value_event = get()
            if key is not None:
                key_path = (*path, key)
                if key not in result:
                    start = event.start_mark
                    keys[key_path] = (start.line + 2, start.column + 1)
                    result[key] = self.value(value_event, key_path, depth)
                    event = get()
                    continue
                first = keys[key_path]
                self._problem(
                    _mark(event),
                    "duplicate-key",
                    f"duplicate key {key!r} (first at line {first[0]}, column {first[1]}); keep one of them",
                )
            self.skip(value_event, depth)
            event = get()
        return result

    def _key(self, event: Event, depth: int) -> str | None:
        """The JSON key a mapping key becomes, or None (a problem, recorded) to skip its value."""
        _refuse_node(event)
        tag = event.tag
        if event.__class__ is not yaml.ScalarEvent:
            self.skip(event, depth)
            if tag == _MERGE:
                self._problem(_mark(event), "merge-key", "YAML merge keys (<<) are not allowed")
                return None
            self._problem(_mark(event), "complex-key", "a key must be a plain value, not a list or mapping")
            return None
        text: str = event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return text
            tag = _resolve(text)
        if tag == _STR:
            return text
        if tag == _MERGE:
            self._problem(_mark(event), "merge-key", "YAML merge keys (<<) are not allowed")
            return None
        try:
            return _json_key(_convert(tag, text, event))
        except _Refused as exc:
            self.problems.append(exc)
            return None

    def _problem(self, mark: Mark, code: str, message: str) -> None:
        self.problems.append(_Refused(mark, code, message))

    def skip(self, event: Event, depth: int) -> None:
        """Consume the value that starts with ``event`` without building it (checks only)."""
        level = depth
        while True:
            cls = event.__class__
            if cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
                level -= 1
            else:
                _refuse_node(event)
                if cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
                    level += 1
                    if level > MAX_DEPTH:
                        raise _too_deep(event)
            if level == depth:
                return
            event = self.get()

    def check_rest(self) -> None:
        """Read the rest of the stream for the refusals that come before a second document's."""
        event = self.get()
        while event is not None and event.__class__ is not yaml.StreamEndEvent:
            if event.__class__ is yaml.DocumentStartEvent or event.__class__ is yaml.DocumentEndEvent:
                event = self.get()
                continue
            self.skip(event, 0)
            event = self.get()


def _json_key(value: Any) -> str:
    """The JSON object key a YAML key becomes (so ``1`` and ``"1"`` collide)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _convert(tag: str, text: str, event: Event) -> Any:
    """A scalar's value for its tag, as PyYAML's SafeConstructor reads it (timestamps stay text)."""
    if tag in (_STR, _TIMESTAMP):
        return text  # timestamps stay exactly as written
    if tag == _INT:
        return _integer(text, event)
    if tag == _FLOAT:
        return _float(text, event)
    if tag == _BOOL:
        try:
            return _constructor.construct_yaml_bool(yaml.ScalarNode(tag, text))
        except KeyError:  # an explicit !!bool on text that is not a boolean
            raise _Refused(_mark(event), "tag", f"{_shown(text)!r} is not a boolean; drop the !!bool tag") from None
    if tag == _NULL:
        return None
    raise _Refused(_mark(event), "tag", f"YAML tag {tag!r} is not allowed")


def _integer(text: str, event: Event) -> int:
    """A YAML integer that fits 64 bits (what JSON readers and SQL columns can hold)."""
    if len(text) < 19 and text.isascii() and text.isdigit() and text[0] != "0":
        return int(text)  # plain decimal, what SafeConstructor would do with it
    try:
        value = _constructor.construct_yaml_int(yaml.ScalarNode(_INT, text))
    except (ValueError, IndexError):  # not digits (an explicit !!int), or over Python's digit limit
        digits = text.lstrip("+-").replace("_", "")
        if not digits.isdigit() or digits.startswith("0"):  # "09": a leading 0 reads as octal
            raise _Refused(_mark(event), "tag", f"{_shown(text)!r} is not an integer; drop the !!int tag") from None
        value = INT_LIMIT
    if not -INT_LIMIT <= value < INT_LIMIT:
        shown = _shown(text)
        raise _Refused(_mark(event), "int-range", f"integer {shown} does not fit in 64 bits; quote it if you mean text")
    return int(value)


def _float(text: str, event: Event) -> float:
    try:
        value: float = _constructor.construct_yaml_float(yaml.ScalarNode(_FLOAT, text))
    except (ValueError, IndexError):  # an explicit !!float on text that is not a number
        raise _Refused(_mark(event), "tag", f"{_shown(text)!r} is not a number; drop the !!float tag") from None
    if math.isnan(value) or math.isinf(value):
        raise _Refused(_mark(event), "not-json", f"{text!r} has no JSON equivalent; quote it if you mean text")
    return value


def _shown(text: str) -> str:
    """A scalar's text, cut short for a message."""
    return text if len(text) <= 24 else text[:20] + "…"
