"""One verdict per schema on every path: the compiled pre-check (fastjsonschema, draft-07)
and jsonschema's 2020-12 report agree on every story, or the schema is not compiled."""

from __future__ import annotations

import copy
import hashlib
import json
import marshal
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
import yaml
from jsonschema import Draft202012Validator

from storysync.check.schema import SchemaChecker, _draft7, _fastjsonschema_version, default_schema_path
from storysync.story.model import Location, Story
from storysync.story.parse import parse_story
from tests.conftest import Repo, run_cli_subprocess

EXAMPLES = Path(__file__).parent / "examples"
LOC = Location("backlog/web/WEB-1-x.md", "backlog", "backlog", "web", "WEB-1-x.md")
SHIPPED: dict[str, Any] = json.loads(default_schema_path().read_text(encoding="utf-8"))


def shipped(**extra: Any) -> dict[str, Any]:
    schema = copy.deepcopy(SHIPPED)
    schema.update(extra)
    return schema


def shipped_property(name: str, **keywords: Any) -> dict[str, Any]:
    schema = shipped()
    schema["properties"][name] = {**schema["properties"][name], **keywords}
    return schema


WEIRD_KEY = 'we"ird {key}\\'
# name: (schema, whether it is compiled)
SCHEMAS: dict[str, tuple[dict[str, Any], bool]] = {
    "shipped": (shipped(), True),
    "closed": (shipped(additionalProperties=False), True),
    "unevaluatedProperties": (shipped(unevaluatedProperties=False), False),
    "dependentRequired": (shipped(dependentRequired={"epic": ["assignee"], "points": ["priority"]}), False),
    "prefixItems": (shipped_property("tags", prefixItems=[{"const": "first"}]), False),
    "dependentSchemas": (
        shipped(dependentSchemas={"points": {"required": ["priority"], "properties": {"priority": {"const": "high"}}}}),
        False,
    ),
    "if-then-else": (
        shipped(
            **{
                "if": {"properties": {"priority": {"const": "critical"}}, "required": ["priority"]},
                "then": {"required": ["assignee"]},
                "else": {"properties": {"points": {"maximum": 13}}},
            }
        ),
        True,
    ),
    "$defs": (
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://storysync.invalid/defs.json",
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"$ref": "#/$defs/id", "maxLength": 6, "description": "see #/$defs/id"},
                "depends_on": {"type": "array", "items": {"$ref": "#/$defs/id"}},
                "tags": {"$ref": "#/$defs/tags"},
                "$defs": {"type": "string"},
            },
            "$defs": {
                "id": {"type": "string", "pattern": "^[A-Z]+-[0-9]+$"},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
                "tag": {"type": "string", "minLength": 2},
            },
        },
        True,
    ),
    "recursive $defs": (
        {
            "properties": {"meta": {"$ref": "#/$defs/tree"}},
            "$defs": {"tree": {"additionalProperties": {"$ref": "#/$defs/tree"}, "type": ["object", "integer"]}},
        },
        False,
    ),
    "combinators": (
        {
            "type": "object",
            "properties": {
                "title": {"not": {"pattern": "^T$"}},
                "tags": {"contains": {"const": "first"}},
                "points": {"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMaximum": 14}]},
                "epic": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "string", "pattern": "^[A-Z]"}]},
                "priority": {"enum": [["a"], "low", None]},
                "status": {"pattern": "^a\\$b$|^[$]$"},
            },
            "patternProperties": {"^x-.*$": {"type": "string"}},
            "propertyNames": {"maxLength": 12},
            "additionalProperties": {"type": ["string", "integer", "array", "null", "boolean"]},
            "minProperties": 2,
            "maxProperties": 6,
        },
        True,
    ),
    "awkward property names": (
        {"properties": {WEIRD_KEY: {"type": "string"}, "a-b": {"type": "integer"}, "ab": {"type": "string"}}},
        True,
    ),
    "annotations": (
        shipped(
            **{
                "$comment": "format, default, examples and content* are annotations in 2020-12",
                "properties": {
                    **SHIPPED["properties"],
                    "created": {"$ref": "#/$defs/iso8601", "format": "date", "examples": ["2026-01-05"]},
                    "priority": {**SHIPPED["properties"]["priority"], "default": "medium"},
                    "title": {**SHIPPED["properties"]["title"], "contentEncoding": "base64", "format": "email"},
                },
            }
        ),
        True,
    ),
    "numbers and booleans in enum and const": (
        {
            "properties": {
                "points": {"type": "integer", "enum": [0, 1, 2, 3, 5, 8, 13]},  # as docs/story-format.md has it
                "status": {"enum": [0, 1.5, "1", None, True]},
                "epic": {"const": False},
                "assignee": {"const": 1, "$ref": "#/$defs/any"},
            },
            "$defs": {"any": {}},
        },
        True,
    ),
    "a number in a list in enum": (shipped_property("tags", enum=[[1], ["a"]]), False),
    "uniqueItems": (shipped_property("tags", uniqueItems=True), False),
    "multipleOf": (shipped_property("points", multipleOf=0.5), False),
}

KEYS = ["status", "priority", "points", "epic", "assignee", "tags", "depends_on", "created", "meta", "x-note"]
KEYS += [WEIRD_KEY, "a-b", "ab", "$defs", "a_very_long_key_name"]
VALUES: list[Any] = [
    *("WEB-1", "WEB-1\n", "web-1", "ABCDEFG-1", "", "T", "T\n", "low", "critical", "high", "urgent", "first"),
    *("2026-01-05", "2026-13-01", "a$b", "$", "x", "AB", "x" * 600),
    *(0, 1, -1, 3, 13, 14, 2147483648, 1.0, 1.5, 2.0, 0.0, "1", True, False, None),
    *([], ["a"], ["first"], ["first", "b"], ["a", "a"], ["API-1"], ["api-2"], [1], [True], [True, 1], ["a"] * 3),
    *({}, {"a": 1}, {"a": {"b": "c"}}, {"x-1": "v"}, {"a": True}),
]


def _story(frontmatter: dict[str, Any]) -> Story:
    text = "---\n" + yaml.safe_dump(frontmatter, sort_keys=False, allow_unicode=True, width=1000) + "---\nBody.\n"
    parsed = parse_story(LOC, text.encode())
    assert isinstance(parsed, Story), parsed
    assert parsed.frontmatter == frontmatter, text
    return parsed


def _generated(count: int) -> list[Story]:
    rnd = random.Random(20260112)
    stories = []
    for _ in range(count):
        frontmatter: dict[str, Any] = {}
        if rnd.random() < 0.9:
            frontmatter["id"] = rnd.choice(["WEB-1", "WEB-1", "API-22", *VALUES[:6]])
        if rnd.random() < 0.9:
            frontmatter["title"] = copy.deepcopy(rnd.choice(["A title", "A title", *VALUES]))
        for key in rnd.sample(KEYS, rnd.randint(0, 4)):
            frontmatter[key] = copy.deepcopy(rnd.choice(VALUES))  # shared, they would dump as aliases
        stories.append(_story(frontmatter))
    return stories


def _examples() -> list[Story]:
    found = []
    for path in sorted((EXAMPLES / "valid").glob("*.md")) + sorted((EXAMPLES / "invalid").rglob("*.md")):
        parsed = parse_story(LOC, path.read_bytes())
        if isinstance(parsed, Story):
            found.append(parsed)
    return found


CORPUS = _examples() + _generated(400)


def _compiles(schema: dict[str, Any]) -> bool:
    """Whether the installed fastjsonschema compiles ``_draft7``'s rewrite of ``schema``
    (2.19 writes a property name holding a quote into its code unescaped)."""
    try:
        fastjsonschema.compile(_draft7(schema))
    except Exception:
        return False
    return True


def _accepts(validate: Any, data: Any) -> bool:
    try:
        validate(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYSYNC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_story_gets_the_same_report_on_both_paths(name: str) -> None:
    """The same diagnostics, at the same positions, whether or not a compiled validator pre-checks."""
    schema, compiled = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    checker = SchemaChecker(copy.deepcopy(schema), name)
    jsonschema_alone = SchemaChecker(copy.deepcopy(schema), name, fast=False)
    assert (_draft7(schema) is not None) is compiled
    assert checker.compiled is (compiled and _compiles(schema))
    assert not jsonschema_alone.compiled
    verdicts = set()
    for story in CORPUS:
        before = copy.deepcopy(story.frontmatter)
        report = [str(d) for d in checker.check(story)]
        assert report == [str(d) for d in jsonschema_alone.check(story)], story.frontmatter
        assert story.frontmatter == before  # nothing written into the story (a "default", say)
        verdicts.add(not report)
    assert verdicts == {True, False}  # the corpus has valid and invalid stories for each schema


@pytest.mark.parametrize("name", [name for name, (_, compiled) in SCHEMAS.items() if compiled])
def test_the_compiled_validator_alone_judges_as_jsonschema(name: str) -> None:
    """Both ways: it neither accepts what jsonschema refuses nor refuses what it accepts
    (under "not", "if" or "anyOf", a stricter check would accept too much)."""
    schema = SCHEMAS[name][0]
    draft7 = _draft7(schema)
    assert draft7 is not None
    if not _compiles(schema):  # an older fastjsonschema cannot: jsonschema alone judges, as above
        return
    fast = fastjsonschema.compile(draft7)
    full = Draft202012Validator(schema)
    for story in CORPUS:
        assert _accepts(fast, story.frontmatter) == full.is_valid(story.frontmatter), story.frontmatter


def _draft7_by_text(schema: dict[str, Any]) -> dict[str, Any]:
    """What was compiled before: any schema, relabelled draft-07 and its $defs renamed."""
    text = json.dumps({**schema, "$schema": "http://json-schema.org/draft-07/schema#"})
    converted: dict[str, Any] = json.loads(
        text.replace('"$defs"', '"definitions"').replace("#/$defs/", "#/definitions/")
    )
    return converted


@pytest.mark.parametrize("name", ["unevaluatedProperties", "dependentRequired", "prefixItems", "dependentSchemas"])
def test_the_corpus_finds_what_a_draft7_compile_gets_wrong(name: str) -> None:
    """Why these schemas are not compiled, and that the corpus above would tell."""
    schema = SCHEMAS[name][0]
    fast = fastjsonschema.compile(_draft7_by_text(schema))
    full = Draft202012Validator(schema)
    wrong = [s.frontmatter for s in CORPUS if _accepts(fast, s.frontmatter) and not full.is_valid(s.frontmatter)]
    assert wrong


def test_a_pattern_dollar_matches_before_a_final_newline_as_in_jsonschema() -> None:
    """Python's "$" (what jsonschema runs) also matches before a final newline; fastjsonschema's
    rewrite of "$" as "\\Z" did not, which "not" turned into accepting a refused title."""
    schema = shipped_property("title", **{"not": {"pattern": "^T$"}})
    title = _story({"id": "WEB-1", "title": "T\n"})
    assert not Draft202012Validator(schema).is_valid(title.frontmatter)
    assert _accepts(fastjsonschema.compile(_draft7_by_text(schema)), title.frontmatter)  # as it was
    report = [str(d) for d in SchemaChecker(schema, "s.json").check(title)]
    assert report == [f"{LOC.path}:3:8: title: 'T\\n' should not be valid under {{'pattern': '^T$'}}"]


def test_a_cache_written_before_is_not_used(tmp_path: Path) -> None:
    """A validator cached by the previous storysync (keyed by the schema's text, compiled from
    any schema) that accepts everything is not run, for a compiled schema nor for another."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    accept_all = compile("def validate(data, custom_formats={}, name_prefix=None):\n    return data\n", "old", "exec")
    payload = marshal.dumps(("validate", accept_all))
    extra = _story({"id": "WEB-1", "title": "T", "points": -1, "surprise": 1})
    for name in ("shipped", "unevaluatedProperties"):
        schema = SCHEMAS[name][0]
        key = json.dumps([3, schema, _fastjsonschema_version(), sys.implementation.cache_tag], sort_keys=True)
        old = cache / f"validator-{hashlib.sha256(key.encode()).hexdigest()[:32]}.bin"
        old.write_bytes(hashlib.sha256(payload).digest() + payload)
        old.chmod(0o600)
        assert SchemaChecker(schema, name).check(extra) != []


# --- the user's story: a repository schema that refuses keys no subschema evaluated -----------


@pytest.fixture
def strict_repo(repo: Repo) -> Repo:
    schema = shipped(
        allOf=[{"properties": {"reviewer": {"type": "string"}}}],
        unevaluatedProperties=False,
    )
    repo.write("story.schema.json", json.dumps(schema, indent=2))
    repo.write("storysync.toml", 'schema = "story.schema.json"\n')
    repo.story("backlog", "web", "WEB-1", "login", title="Login", reviewer="ada")
    repo.commit("a story the strict schema accepts")
    return repo


def test_an_unevaluated_key_is_refused_by_validate_staged_and_sync_alike(strict_repo: Repo) -> None:
    path = "backlog/web/WEB-2-signup.md"
    text = "---\nid: WEB-2\ntitle: Signup\nreviewer: bob\nsurprise: 1\n---\nBody.\n"
    strict_repo.write(path, text)
    expected = f"{path}:5:1: frontmatter: Unevaluated properties are not allowed ('surprise' was unexpected)"

    validate = run_cli_subprocess(strict_repo, "validate")
    assert (validate.returncode, validate.stdout.splitlines()) == (1, [expected]), validate.stderr

    strict_repo.git("add", path)
    staged = run_cli_subprocess(strict_repo, "validate", "--staged")
    assert (staged.returncode, staged.stdout.splitlines()) == (1, [expected]), staged.stderr

    strict_repo.commit("the surprise")
    synced = run_cli_subprocess(strict_repo, "sync")
    assert (synced.returncode, synced.stdout.splitlines()) == (1, [expected]), synced.stderr
    with sqlite3.connect(strict_repo.db_path) as db:
        assert db.execute("select id from stories").fetchall() == []  # nothing written

    strict_repo.write(path, text.replace("surprise: 1\n", ""))
    strict_repo.commit("no surprise")
    assert run_cli_subprocess(strict_repo, "sync").returncode == 0
