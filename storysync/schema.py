"""Load the story JSON Schema once and check a story against it.

The full jsonschema report (every error, with its position in the file) is what
a user sees.  ``check`` first asks a compiled validator (fastjsonschema) whether
the story is valid at all, which is ~10x cheaper, and only builds the full
report for a story that fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from storysync.errors import ConfigError, Diagnostic
from storysync.model import Story

SCHEMA_NAME = "story.schema.json"


def default_schema_path() -> Path:
    """The schema shipped with the package (wheel) or beside it (source tree)."""
    packaged = resources.files("storysync").joinpath("schemas", SCHEMA_NAME)
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "schemas" / SCHEMA_NAME


class SchemaChecker:
    """A compiled schema; ``check(story)`` returns its diagnostics (empty when valid)."""

    def __init__(self, schema: dict[str, Any], source: str) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError as JSONSchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except JSONSchemaError as exc:
            raise ConfigError(f"{source}: not a valid JSON Schema: {exc.message}") from exc
        self.source = source
        self._validator = Draft202012Validator(schema)
        self._fast = _compile_fast(schema)

    def check(self, story: Story) -> list[Diagnostic]:
        """Every schema error of ``story``, each at the position of its key or value."""
        if self._fast is not None:
            try:
                self._fast(story.frontmatter)
                return []
            except Exception:  # noqa: S110 - any failure means: build the full report
                pass
        errors = sorted(self._validator.iter_errors(story.frontmatter), key=lambda e: list(map(str, e.absolute_path)))
        return [_diagnostic(story, err) for err in errors]


def _compile_fast(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    """fastjsonschema speaks draft-07; our schemas use nothing newer, so compile as that."""
    try:
        import fastjsonschema

        draft7 = {k: v for k, v in schema.items() if k != "$schema"}
        draft7["$schema"] = "http://json-schema.org/draft-07/schema#"
        draft7 = json.loads(
            json.dumps(draft7).replace('"$defs"', '"definitions"').replace("#/$defs/", "#/definitions/")
        )
        compiled: Callable[[Any], Any] = fastjsonschema.compile(draft7)
        return compiled
    except Exception:  # an unsupported construct: the full validator alone is still correct
        return None


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
