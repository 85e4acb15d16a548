"""Load the story JSON Schema once and check a story against it.

The full jsonschema report (every error, with its position in the file) is what
a user sees.  ``check`` first asks a compiled validator (fastjsonschema) whether
the story is valid at all, which is ~10x cheaper, and only builds the full
report for a story that fails.

fastjsonschema speaks draft-07, the schema is 2020-12: a schema is compiled only
when every keyword in it is one whose draft-07 check gives 2020-12's verdict on
any frontmatter (``_draft7`` lists them); any other schema is judged by
jsonschema alone, so that a schema gives the same verdict on every path.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import math
import os
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from types import CodeType
from typing import Any

from storysync.errors import ConfigError, Diagnostic
from storysync.story.model import Story

SCHEMA_NAME = "story.schema.json"
MAX_MESSAGE = 240
# a cache file: sha256 of the rest, then marshal of (entry name, code object), imports replaced;
# keyed by the draft-07 rewrite, so bump this whenever _draft7 changes what it compiles
# (4: the allow-listed rewrite; 3 compiled any schema, also one using 2020-12 keywords)
CACHE_FORMAT = 4
# fastjsonschema's generated imports that _run provides instead (its exception classes)
_LOCAL_IMPORTS = ("from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException\n",)
# the end of jsonschema's additionalProperties message where patternProperties are given
_REGEXES = re.compile(r" (?:do|does) not match any of the regexes: .*", re.DOTALL)
_ENTRY = re.compile(r"^def (\w+)\(data, custom_formats=\{\}, name_prefix=None\):", re.MULTILINE)


def default_schema_path() -> Path:
    """The schema shipped with the package (wheel) or beside it (source tree)."""
    packaged = Path(__file__).resolve().parents[1] / "schemas" / SCHEMA_NAME  # the wheel force-includes it here
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_NAME


def cache_dir() -> Path:
    """Where compiled validators are kept: ``$STORYSYNC_CACHE_DIR``, else the user's cache."""
    explicit = os.environ.get("STORYSYNC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storysync"


class SchemaChecker:
    """A compiled schema; ``check(story)`` returns its diagnostics (empty when valid).

    A process that checks only valid stories never imports jsonschema, nor
    fastjsonschema: the compiled validator's code object comes from the cache
    (written once the schema passed jsonschema's own check; fastjsonschema's
    exception classes replaced by ``_Invalid``), and the full validator is built
    on the first story that fails the compiled check.  A schema ``_draft7`` does
    not compile is checked by jsonschema alone.
    """

    def __init__(self, schema: dict[str, Any], source: str, *, fast: bool = True) -> None:
        """``fast=False``: jsonschema alone, whatever the schema."""
        self.source = source
        self._schema = schema
        self._full: Any = None
        draft7 = _draft7(schema) if fast else None
        self._fast = _cached_fast(draft7) if draft7 is not None else None
        if self._fast is None:
            self._full = _full_validator(schema, source)
            self._fast = _compile_fast(draft7) if draft7 is not None else None

    @property
    def compiled(self) -> bool:
        """Whether a compiled validator pre-checks stories (else jsonschema judges each alone)."""
        return self._fast is not None

    def check(self, story: Story) -> list[Diagnostic]:
        """Every schema error of ``story``, each at the position of its key or value."""
        if self._fast is not None:
            try:
                self._fast(story.frontmatter)
                return []
            except Exception:  # noqa: S110 - any failure means: build the full report
                pass
        if self._full is None:
            self._full = _full_validator(self._schema, self.source)
        errors = sorted(self._full.iter_errors(story.frontmatter), key=lambda e: list(map(str, e.absolute_path)))
        return [_diagnostic(story, err) for err in errors]


def _full_validator(schema: dict[str, Any], source: str) -> Any:
    """jsonschema's validator, after checking that ``schema`` is a valid 2020-12 schema."""
    # local: jsonschema/fastjsonschema only when a schema is compiled or a story fails (hook path)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError as JSONSchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except JSONSchemaError as exc:
        raise ConfigError(f"{source}: not a valid JSON Schema: {exc.message}") from exc
    return Draft202012Validator(schema)


_DRAFT7 = "http://json-schema.org/draft-07/schema#"
# What fastjsonschema is given of a 2020-12 schema, keyword by keyword.  Each check must
# give jsonschema's verdict on every value frontmatter holds (string keys; strings, 64-bit
# integers, finite floats, booleans, null, and lists and mappings of these); a schema with
# any other keyword (unevaluatedProperties, dependentRequired, dependentSchemas, prefixItems,
# uniqueItems, multipleOf, $dynamicRef, $anchor, a nested $id or $defs, an unknown one, ...)
# is judged by jsonschema alone.
#
# Compiled as they are: the same test in draft-07 and 2020-12.
_AS_IS = frozenset(
    {
        "type",
        "required",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    }
)
# A subschema, a list of them, a mapping to them: the same test of subschemas rewritten in turn
# ("items" only as one schema: 2020-12 has no list form, prefixItems is not compiled).
_SUBSCHEMA = frozenset({"not", "if", "then", "else", "items", "contains", "additionalProperties", "propertyNames"})
_SUBSCHEMAS = frozenset({"allOf", "anyOf", "oneOf"})
# No verdict in 2020-12 (jsonschema is given no format checker), so left out of what is
# compiled: fastjsonschema would check a format, decode a content, write a default into the story.
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "$comment",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
    }
)
# Rewritten (see _Rewrite): properties and patternProperties (their names are data), pattern,
# enum and const; $ref to the root's $defs, inlined; and at the root only $schema, $id, $defs.
_ROOT_ONLY = ("$schema", "$id", "$defs")
_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})
_DEF_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_NODES = 10_000  # inlined $refs grow the rewrite; a larger one is not compiled


def _draft7(schema: dict[str, Any]) -> dict[str, Any] | None:
    """What fastjsonschema compiles for ``schema``, or None: only a schema whose every keyword
    fastjsonschema judges as jsonschema does under 2020-12 is compiled."""
    defs = schema.get("$defs", {})
    if not isinstance(schema.get("$id", ""), str) or not isinstance(defs, dict):
        return None
    try:
        body = _Rewrite(defs).schema({k: v for k, v in schema.items() if k not in _ROOT_ONLY})
    except _NotCompiled:
        return None
    return {"$schema": _DRAFT7, **(body if isinstance(body, dict) else {"allOf": [body]})}


class _NotCompiled(Exception):
    """A keyword or value fastjsonschema is not known to judge as jsonschema does."""


class _Rewrite:
    """A 2020-12 schema as draft-07 with the same verdicts, or ``_NotCompiled``."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.inlining: list[str] = []  # the $defs being inlined: a $ref back to one is a cycle
        self.nodes = 0

    def schema(self, node: Any) -> Any:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _NotCompiled
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise _NotCompiled
        out: dict[str, Any] = {}
        beside: list[Any] = []  # subschemas that apply beside ``out``'s keywords
        for key, value in node.items():
            if key == "$ref":  # in 2020-12 it applies beside its siblings; draft-07 would ignore them
                beside.append(self.ref(value))
            elif key in ("enum", "const") and not _plain(value):
                beside.append(_by_kind(key, value))
            elif key not in _ANNOTATIONS:
                out[key] = self.keyword(key, value)
        if not beside:
            return out
        if not out and len(beside) == 1:
            return beside[0]
        return {"allOf": [*beside, out] if out else beside}

    def keyword(self, key: str, value: Any) -> Any:
        if key in _AS_IS:
            return _as_is(key, value)
        if key in _SUBSCHEMA:
            return self.schema(value)
        if key in _SUBSCHEMAS and isinstance(value, list) and value:
            return [self.schema(v) for v in value]
        if key == "properties" and isinstance(value, dict):
            return {name: self.schema(v) for name, v in value.items()}
        if key == "patternProperties" and isinstance(value, dict):
            patterns = {_pattern(name): self.schema(v) for name, v in value.items()}
            if len(patterns) == len(value):  # two names that read as one pattern: not compiled
                return patterns
        if key == "pattern":
            return _pattern(value)
        if key in ("enum", "const") and _plain(value):
            return value
        raise _NotCompiled

    def ref(self, ref: Any) -> Any:
        """The rewritten target of a ``$ref`` to one of the root's ``$defs``, inlined."""
        prefix = "#/$defs/"
        name = ref[len(prefix) :] if isinstance(ref, str) and ref.startswith(prefix) else ""
        if not _DEF_NAME.fullmatch(name) or name not in self.defs or name in self.inlining:
            raise _NotCompiled
        self.inlining.append(name)
        target = self.schema(self.defs[name])
        self.inlining.pop()
        return target


def _as_is(key: str, value: Any) -> Any:
    """``value`` when it has the shape jsonschema's metaschema gives ``key``."""
    if key == "type":
        types = value if isinstance(value, list) else [value]
        if types and all(isinstance(t, str) and t in _TYPES for t in types):
            return value
    elif key == "required":
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return value
    elif _number(value):
        return value
    raise _NotCompiled


def _number(value: Any) -> bool:
    """A JSON number (not a boolean, not NaN or infinity, which ``json`` reads too)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _plain(value: Any) -> bool:
    """Strings, null and lists of them: Python's ``==`` is JSON's equality there (elsewhere
    ``true == 1``, and fastjsonschema's enum and const have compared with ``==``)."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str)


def _by_kind(key: str, value: Any) -> Any:
    """``enum`` or ``const`` with numbers or booleans, as one check a kind of value: among
    numbers alone, or booleans alone, ``==`` is JSON's equality."""
    values = [value] if key == "const" else value
    if not isinstance(values, list):
        raise _NotCompiled
    numbers = [v for v in values if _number(v)]
    booleans = [v for v in values if isinstance(v, bool)]
    plain = [v for v in values if _plain(v)]
    if len(numbers) + len(booleans) + len(plain) < len(values):
        raise _NotCompiled  # a list or mapping that holds a number or a boolean, say
    kinds: list[dict[str, Any]] = [{"enum": plain}] if plain else []
    kinds += [{"type": "number", "enum": numbers}] if numbers else []
    kinds += [{"type": "boolean", "enum": booleans}] if booleans else []
    return kinds[0] if len(kinds) == 1 else {"anyOf": kinds}


_GROUPS = (":", "=", "!", "<=", "<!", ">")  # after "(?": non-capturing, lookaround and atomic groups


def _pattern(pattern: Any) -> str:
    """``pattern`` with no "$" left, matching what jsonschema's ``re.search`` matches.

    fastjsonschema turns an unescaped "$" into "\\Z", where Python's "$" also matches before
    a final newline; so an anchor "$" becomes its exact meaning, ``(?=\\n?\\Z)``, and a literal
    "$" becomes ``\\x24``.  Inline flags ("(?m)" changes "$"), comments, named groups,
    backreferences and conditionals are not compiled: jsonschema also joins patternProperties'
    names into one regex with "|", which renumbers groups.
    """
    if not isinstance(pattern, str):
        raise _NotCompiled
    out: list[str] = []
    i, end, in_class, class_first = 0, len(pattern), False, 0
    while i < end:
        c = pattern[i]
        nxt = pattern[i + 1 : i + 2]
        if c == "\\":
            if nxt.isdigit() or not nxt:
                raise _NotCompiled
            out.append("\\x24" if nxt == "$" else c + nxt)
            i += 2
            continue
        if in_class:
            in_class = c != "]" or i == class_first  # a "]" first in the class is literal
            out.append("\\x24" if c == "$" else c)
        elif c == "[":
            in_class = True
            class_first = i + 2 if nxt == "^" else i + 1
            out.append(c)
        elif c == "$":
            if nxt and nxt in "*+?{":
                raise _NotCompiled
            out.append("(?=\\n?\\Z)")
        elif c == "(" and nxt == "?" and not pattern.startswith(_GROUPS, i + 2):
            raise _NotCompiled
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _cache_file(draft7: dict[str, Any]) -> Path:
    key = json.dumps([CACHE_FORMAT, draft7, _fastjsonschema_version(), sys.implementation.cache_tag], sort_keys=True)
    return cache_dir() / f"validator-{hashlib.sha256(key.encode()).hexdigest()[:32]}.bin"


def _fastjsonschema_version() -> str:
    """fastjsonschema's version file, read without importing the package (its import is ~3 ms)."""
    # local: jsonschema/fastjsonschema only when a schema is compiled or a story fails (hook path)
    from importlib.util import find_spec

    spec = find_spec("fastjsonschema")
    places = spec.submodule_search_locations if spec is not None else None
    if not places:
        return ""
    return (Path(next(iter(places))) / "version.py").read_text(encoding="utf-8")


class _Invalid(ValueError):
    """What the compiled validator raises for invalid data, without importing fastjsonschema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args)


class _NoDecimal:
    """Stands for ``decimal.Decimal`` where the compiled code only tests ``isinstance``: parsed
    frontmatter never holds a Decimal, and ``decimal`` costs ~1.5 ms to import."""


def _compiled(code: str) -> tuple[str, CodeType] | None:
    """The validator's entry name and its code, with fastjsonschema's own imports replaced."""
    entry = _ENTRY.search(code)
    if entry is None:
        return None
    for line in _LOCAL_IMPORTS:
        code = code.replace(line, "")
    if "Decimal(" not in code:  # Decimal only in isinstance tests: _NoDecimal stands for it
        code = code.replace("from decimal import Decimal\n", "")
    return entry.group(1), compile(code, "<storysync compiled schema>", "exec")


def _run(entry: str, code: CodeType) -> Callable[[Any], Any]:
    namespace: dict[str, Any] = {"JsonSchemaValueException": _Invalid, "JsonSchemaValuesException": _Invalid}
    namespace["Decimal"] = _NoDecimal
    exec(code, namespace)  # noqa: S102 - code fastjsonschema generated
    func: Callable[[Any], Any] = namespace[entry]
    return func


def _cached_fast(draft7: dict[str, Any]) -> Callable[[Any], Any] | None:
    """The compiled validator of ``_draft7``'s rewrite from the cache, or None (no cache yet, or unusable)."""
    try:
        path = _cache_file(draft7)
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
                return None  # only run code this user wrote and nobody else can change
            stored = fh.read()
        digest, payload = stored[:32], stored[32:]
        if hashlib.sha256(payload).digest() != digest:
            return None  # torn or corrupted: marshal is not safe on damaged data, so it never sees it
        entry, code = marshal.loads(payload)  # noqa: S302 - our own file, owner-only, checked above
        if not isinstance(entry, str) or not isinstance(code, CodeType):
            return None
        return _run(entry, code)
    except Exception:  # a missing, unreadable or broken cache is compiled afresh
        return None


def _compile_fast(draft7: dict[str, Any]) -> Callable[[Any], Any] | None:
    """Compile ``_draft7``'s rewrite of a schema jsonschema checked, and keep the code for next time."""
    try:
        # local: jsonschema/fastjsonschema only when a schema is compiled or a story fails (hook path)
        import fastjsonschema

        compiled = _compiled(fastjsonschema.compile_to_code(draft7))
        if compiled is None:
            return None
        func = _run(*compiled)
    except Exception:  # an unsupported construct: the full validator alone is still correct
        return None
    payload = marshal.dumps(compiled)
    _store(_cache_file(draft7), hashlib.sha256(payload).digest() + payload)
    return func


def _store(path: Path, data: bytes) -> None:
    """Write the cache file atomically; a cache that cannot be written is simply skipped."""
    # local: jsonschema/fastjsonschema only when a schema is compiled or a story fails (hook path)
    import tempfile

    tmp: str | None = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".validator-", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _json_repr(value: Any) -> str:
    """A value as a message shows it: strings quoted as usual, the rest as JSON."""
    return repr(value) if isinstance(value, str) else json.dumps(value, default=str)


def _diagnostic(story: Story, err: Any) -> Diagnostic:
    path = tuple(err.absolute_path)
    if err.validator == "required" and not path:
        line, col = story.mark(())
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return Diagnostic(story.path, line, col, "schema", f"missing required key '{missing}'")
    line, col = story.mark(path)
    if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(err.instance, dict):
        known = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        extra = [k for k in err.instance if k not in known]
        named = _REGEXES.sub("", err.message)  # the keys it names (a subschema may know the others)
        extra = [k for k in extra if repr(k) in named] or extra
        if extra:  # point at the first unexpected key, not at its mapping
            line, col = story.key_marks.get((*path, extra[0]), (line, col))
    where = ".".join(str(p) for p in path) or "frontmatter"
    message = err.message
    if err.validator == "enum" and isinstance(err.validator_value, list):  # JSON names, not Python reprs
        choices = ", ".join(v if isinstance(v, str) else json.dumps(v) for v in err.validator_value)
        message = f"{_json_repr(err.instance)} is not one of {choices}"
    elif err.validator == "type" and (err.instance is None or isinstance(err.instance, bool)):
        message = json.dumps(err.instance) + message[len(repr(err.instance)) :]
    if err.validator == "pattern" and isinstance(err.schema, dict) and err.schema.get("description"):
        message = f"{err.instance!r} is not valid here: {err.schema['description']}"
    if (
        err.validator == "type"
        and (err.instance is None or isinstance(err.instance, (bool, int, float)))
        and "string" in str(err.validator_value)
    ):
        written = story.written.get(path)
        if written == "":
            message = f"no value; {where} must be a string"
        elif written is not None:
            message = (
                f"{written!r} is read by YAML as {json.dumps(err.instance)}, not as the string that "
                f"{where} must be; put it in quotes"
            )
        else:
            message += " (YAML read this unquoted value as a non-string; put it in quotes)"
    if len(message) > MAX_MESSAGE:  # jsonschema quotes the whole value; a report line stays readable
        message = message[: MAX_MESSAGE - 1] + "…"
    return Diagnostic(story.path, line, col, "schema", f"{where}: {message}")


@lru_cache(maxsize=4)
def load_checker(schema_path: str | None = None) -> SchemaChecker:
    """The checker for a schema file (the packaged one when None), loaded once."""
    path = Path(schema_path) if schema_path else default_schema_path()
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load schema: {exc}") from exc
    if not isinstance(schema, dict):
        raise ConfigError(f"{path}: a schema must be a JSON object")
    return SchemaChecker(schema, str(path))
