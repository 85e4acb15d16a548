"""The story JSON Schema: packaged, loaded once, every error at its key's or value's position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from storysync.check.schema import SchemaChecker, default_schema_path, load_checker
from storysync.errors import ConfigError
from storysync.story.model import Location, Story
from storysync.story.parse import parse_story

ROOT = Path(__file__).resolve().parent.parent
PATH = "backlog/web/WEB-1-story.md"
LOC = Location(PATH, "backlog", "backlog", "web", "WEB-1-story.md")
EXAMPLES = Path(__file__).parent / "examples"


def story(text: str) -> Story:
    parsed = parse_story(LOC, text.encode())
    assert isinstance(parsed, Story), parsed
    return parsed


def report(text: str, checker: SchemaChecker | None = None) -> list[str]:
    return [str(d) for d in (checker or load_checker()).check(story(text))]


def test_packaged_schema_is_the_repository_schema() -> None:
    assert json.loads(default_schema_path().read_text()) == json.loads((ROOT / "schemas/story.schema.json").read_text())
    Draft202012Validator.check_schema(json.loads(default_schema_path().read_text()))


def test_checker_loaded_once() -> None:
    assert load_checker() is load_checker()


def test_valid_story_has_no_errors() -> None:
    assert report("---\nid: WEB-1\ntitle: T\npriority: low\npoints: 0\ntags: [a]\ncreated: 2026-01-05\n---\n") == []


def test_errors_at_the_value_nested_and_all_reported() -> None:
    text = (
        "---\n"
        "id: WEB-1\n"
        "title: T\n"
        "points: -2\n"  # 4
        "tags:\n"  # 5
        "  - ok\n"  # 6
        "  - {not: a string}\n"  # 7
        "depends_on: [API-1, api-2]\n"  # 8
        "priority: urgent\n"  # 9
        "---\n"
    )
    assert report(text) == [
        f"{PATH}:8:21: depends_on.1: 'api-2' is not valid here: The id of another story, e.g. API-3.",
        f"{PATH}:4:9: points: -2 is less than the minimum of 0",
        f"{PATH}:9:11: priority: 'urgent' is not one of low, medium, high, critical, null",
        f"{PATH}:7:5: tags.1: {{'not': 'a string'}} is not of type 'string'",
    ]


def test_missing_required_keys_at_the_frontmatter_start() -> None:
    assert report("---\npriority: low\n---\n") == [
        f"{PATH}:2:1: missing required key 'id'",
        f"{PATH}:2:1: missing required key 'title'",
    ]


@pytest.mark.parametrize(
    ("written", "read_as"),
    [
        ("NO", "false"),
        ("yes", "true"),
        ("off", "false"),
        ("010", "8"),
        ("12:30", "750"),
        ("1.50", "1.5"),
        ("0x1F", "31"),
        ("~", "null"),
    ],
)
def test_yaml_11_coercions_where_a_string_is_wanted(written: str, read_as: str) -> None:
    assert report(f"---\nid: WEB-1\ntitle: {written}\n---\n") == [
        f"{PATH}:3:8: title: {written!r} is read by YAML as {read_as}, not as the string that title must be;"
        " put it in quotes"
    ]


def test_quoted_look_alikes_are_strings() -> None:
    assert report("---\nid: WEB-1\ntitle: 'NO'\nepic: \"010\"\nassignee: '12:30'\n---\n") == []


@pytest.mark.parametrize("value", ["2026-01-05", "2026-01-05T10:30:00Z", "2026-01-05 10:30:00+02:00", "'2026-01-05'"])
def test_dates_accepted_as_written(value: str) -> None:
    assert report(f"---\nid: WEB-1\ntitle: T\ncreated: {value}\n---\n") == []


@pytest.mark.parametrize("value", ["2026-13-01", "05/01/2026", "tomorrow", "2026-01-05T25:00"])
def test_bad_dates_refused(value: str) -> None:
    assert report(f"---\nid: WEB-1\ntitle: T\ncreated: {value}\n---\n") == [
        f"{PATH}:4:10: created: {value!r} is not valid here: An ISO 8601 date (2026-11-25) or date-time"
        " (2026-11-25T10:30:00Z)."
    ]


def test_repository_schema_refusing_extra_keys_points_at_the_key(tmp_path: Path) -> None:
    schema = json.loads(default_schema_path().read_text())
    schema["additionalProperties"] = False
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(schema))
    checker = load_checker(str(path))
    lines = report("---\nid: WEB-1\ntitle: T\n\nsurprise: 1\n---\n", checker)
    assert lines == [f"{PATH}:5:1: frontmatter: Additional properties are not allowed ('surprise' was unexpected)"]


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (
            {"allOf": [{"properties": {"reviewer": {}}}], "unevaluatedProperties": False},
            "Unevaluated properties are not allowed ('surprise' was unexpected)",
        ),
        (
            {"patternProperties": {"^rev": {}}, "additionalProperties": False},
            "'surprise' does not match any of the regexes: '^rev'",
        ),
    ],
)
def test_the_unexpected_key_is_pointed_at_not_one_a_subschema_allows(
    tmp_path: Path, keywords: dict[str, object], message: str
) -> None:
    schema = {**json.loads(default_schema_path().read_text()), **keywords}
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(schema))
    lines = report("---\nid: WEB-1\ntitle: T\nreviewer: ada\nsurprise: 1\n---\n", load_checker(str(path)))
    assert lines == [f"{PATH}:5:1: frontmatter: {message}"]


def test_invalid_schema_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "no-such-type"}')
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        load_checker(str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot load schema"):
        load_checker(str(broken))
    with pytest.raises(ConfigError, match="cannot load schema"):
        load_checker(str(tmp_path / "missing.json"))
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_checker(str(listed))


def _all_example_stories() -> list[Story]:
    out = []
    for path in sorted((EXAMPLES / "valid").glob("*.md")) + sorted((EXAMPLES / "invalid").rglob("*.md")):
        parsed = parse_story(LOC, path.read_bytes())
        if isinstance(parsed, Story):
            out.append(parsed)
    return out


def test_fast_path_agrees_with_the_full_validator() -> None:
    """The compiled pre-check says "valid" exactly when jsonschema finds no error."""
    checker = load_checker()
    full = Draft202012Validator(json.loads(default_schema_path().read_text()))
    stories = _all_example_stories()
    assert len(stories) > 20
    for s in stories:
        assert (checker.check(s) == []) == full.is_valid(s.frontmatter), s.frontmatter


def test_empty_value_where_a_string_is_wanted() -> None:
    assert report("---\nid: WEB-1\ntitle:\n---\n") == [f"{PATH}:3:7: title: no value; title must be a string"]


def test_points_fit_the_database_column() -> None:
    assert report("---\nid: WEB-1\ntitle: T\npoints: 2147483647\n---\n") == []
    assert report("---\nid: WEB-1\ntitle: T\npoints: 2147483648\n---\n") == [
        f"{PATH}:4:9: points: 2147483648 is greater than the maximum of 2147483647"
    ]


def test_long_values_are_cut_in_messages() -> None:
    [line] = report("---\nid: WEB-1\ntitle: " + "x" * 5000 + "\n---\n")
    assert line.startswith(f"{PATH}:3:8: title: 'xxxx")
    assert line.endswith("…")
    assert len(line) < 300


def test_json_names_in_messages_not_python_reprs() -> None:
    assert report("---\nid: WEB-1\ntitle: T\ntags: null\npoints: true\npriority: 5\n---\n") == [
        f"{PATH}:5:9: points: true is not of type 'integer', 'null'",
        f"{PATH}:6:11: priority: 5 is not one of low, medium, high, critical, null",
        f"{PATH}:4:7: tags: null is not of type 'array'",
    ]
