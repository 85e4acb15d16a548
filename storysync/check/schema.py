"""Load the story JSON Schema once and check a story against it.

The full jsonschema report (every error, with its position in the file) is what
a user sees.  ``check`` first asks a compiled validator (fastjsonschema) whether
the story is valid at all, which is ~10x cheaper, and only builds the full
report for a story that fails.
"""

from __future__ import annotations

import hashlib
import json
import marshal
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
CACHE_FORMAT = 3  # a cache file: sha256 of the rest, then marshal of (entry name, code object), imports replaced
# fastjsonschema's generated imports that _run provides instead (its exception classes)
_LOCAL_IMPORTS = ("from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException\n",)
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
    on the first story that fails the compiled check.
    """

    def __init__(self, schema: dict[str, Any], source: str) -> None:
        self.source = source
        self._schema = schema
        self._full: Any = None
        self._fast = _cached_fast(schema)
        if self._fast is None:
            self._full = _full_validator(schema, source)
            self._fast = _compile_fast(schema)

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
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError as JSONSchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except JSONSchemaError as exc:
        raise ConfigError(f"{source}: not a valid JSON Schema: {exc.message}") from exc
    return Draft202012Validator(schema)


def _draft7(schema: dict[str, Any]) -> dict[str, Any]:
    """fastjsonschema speaks draft-07; our schemas use nothing newer, so compile as that."""
    draft7 = {k: v for k, v in schema.items() if k != "$schema"}
    draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
    converted: dict[str, Any] = json.loads(
        json.dumps(draft7).replace('"$defs"', '"definitions"').replace("#/$defs/", "#/definitions/")
    )
    return converted


def _cache_file(schema: dict[str, Any]) -> Path:
    key = json.dumps([CACHE_FORMAT, schema, _fastjsonschema_version(), sys.implementation.cache_tag], sort_keys=True)
    return cache_dir() / f"validator-{hashlib.sha256(key.encode()).hexdigest()[:32]}.bin"


def _fastjsonschema_version() -> str:
    """fastjsonschema's version file, read without importing the package (its import is ~3 ms)."""
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


def _cached_fast(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    """The compiled validator from the cache, or None (no cache yet, or unusable)."""
    try:
        path = _cache_file(schema)
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


def _compile_fast(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    """Compile ``schema`` (already checked by jsonschema) and keep the code for next time."""
    try:
        import fastjsonschema

        compiled = _compiled(fastjsonschema.compile_to_code(_draft7(schema)))
        if compiled is None:
            return None
        func = _run(*compiled)
    except Exception:  # an unsupported construct: the full validator alone is still correct
        return None
    payload = marshal.dumps(compiled)
    _store(_cache_file(schema), hashlib.sha256(payload).digest() + payload)
    return func


def _store(path: Path, data: bytes) -> None:
    """Write the cache file atomically; a cache that cannot be written is simply skipped."""
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
