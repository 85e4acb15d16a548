"""Property tests: export changes only the changed key's lines, and reads back as the DB.

Story files are generated with varied formatting (quoting styles, comments after
values and between keys, flow and block lists, CRLF, BOM, odd bodies); one field
changes, and the rendered file must (1) parse to exactly the new values, (2) differ
from the old file only in that key's lines, and (3) keep BOM, line endings and body.
The first property runs the renderer directly (many examples); the second runs the
whole path through a real git repository, SQLite, ``update_story`` and ``export``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from storysync.config import load_config
from storysync.db.database import Database
from storysync.db.writer import update_story
from storysync.export.run import export
from storysync.git.repo import open_repo
from storysync.ingest.run import sync
from storysync.ingest.types import SyncOptions
from storysync.story.model import Location
from storysync.story.parse import load_frontmatter, parse_story
from storysync.story.render import Wanted, render_existing, render_new
from tests.conftest import make_repo

LOCATION = Location("backlog/web/WEB-1-story.md", "backlog", "backlog", "web", "WEB-1-story.md")
MISSING: Any = object()

words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=24,
).filter(lambda s: s.strip() == s and s != "")
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "title": words,
    "priority": st.sampled_from(["low", "medium", "high", "critical"]),
    "points": st.integers(0, 1000),
    "epic": words,
    "assignee": words,
    "tags": st.lists(words, max_size=4),
    "created": st.sampled_from(["2026-01-05", "2025-12-31T10:30:00Z"]),
    "custom": st.one_of(
        words,
        st.integers(-5, 5),
        st.booleans(),
        st.lists(words, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(words, st.integers(0, 9)), max_size=3),
    ),
    "notes": st.lists(words, min_size=1, max_size=3).map(lambda ws: "\n".join(ws) + "\n"),
}
OPTIONAL = [k for k in VALUES if k != "title"]


def _reads(text: str, value: Any) -> bool:
    loaded = load_frontmatter("", f"k: {text}\n")
    return not isinstance(loaded, list) and loaded[0] == {"k": value}


def _scalar(draw: st.DrawFn, value: Any) -> str:
    options = []
    if isinstance(value, str):
        options += [value, yaml.safe_dump(value, default_style="'", width=1e9, allow_unicode=True).strip()]
        options.append(yaml.safe_dump(value, default_style='"', width=1e9, allow_unicode=True).strip())
    else:
        flow = yaml.safe_dump(value, default_flow_style=True, width=1e9, allow_unicode=True)
        options.append(flow.removesuffix("...\n").strip())
    options = [o for o in options if "\n" not in o and _reads(o, value)]
    return draw(st.sampled_from(options))


def _value_lines(draw: st.DrawFn, key: str, value: Any, eol: str) -> str:
    comment = draw(st.sampled_from(["", "", "  # a note", " #x"]))
    if draw(st.integers(0, 6)) == 0:
        key = f'"{key}"'  # a quoted key
    if isinstance(value, dict) and value and draw(st.booleans()):
        lines = [f"  {k}: {_scalar(draw, v)}" for k, v in value.items()]
        return f"{key}:{comment}{eol}" + eol.join(lines) + eol
    if isinstance(value, str) and " " in value.strip() and draw(st.integers(0, 3)) == 0:
        first, rest = value.split(" ", 1)
        if _reads(f"{first}\n  {rest}", value) and not rest.startswith(" "):  # a multi-line plain scalar
            return f"{key}: {first}{eol}  {rest}{comment}{eol}"
    if key == "notes" and isinstance(value, str) and value.endswith("\n") and draw(st.booleans()):
        lines = [f"  {line}" for line in value[:-1].split("\n")]
        return f"{key}: |{comment}{eol}" + eol.join(lines) + eol
    if isinstance(value, list) and value and draw(st.booleans()):
        indent = draw(st.sampled_from(["", "  ", "    "]))
        items = [f"{indent}- {_scalar(draw, v)}" for v in value]
        return f"{key}:{comment}{eol}" + eol.join(items) + eol
    if isinstance(value, list):
        text = "[" + ", ".join(_scalar(draw, v) for v in value) + "]"
        if not _reads(text, value):
            text = yaml.safe_dump(value, default_flow_style=True, width=1e9, allow_unicode=True).strip()
        return f"{key}: {text}{comment}{eol}"
    space = draw(st.sampled_from([" ", " ", "   "]))
    return f"{key}:{space}{_scalar(draw, value)}{comment}{eol}"


@st.composite
def story_files(draw: st.DrawFn) -> tuple[bytes, dict[str, Any], str]:
    """A story file's bytes, its frontmatter values and its body."""
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    fm: dict[str, Any] = {"id": "WEB-1", "title": draw(VALUES["title"])}
    for key in draw(st.lists(st.sampled_from(OPTIONAL), unique=True, max_size=len(OPTIONAL))):
        fm[key] = draw(VALUES[key])
    keys = list(fm)
    order = draw(st.permutations(keys))
    lines = []
    for key in order:
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["# comment", "", "#"])) + eol)
        lines.append(_value_lines(draw, key, fm[key], eol))
    body = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60))
    body = draw(st.sampled_from(["", eol])) + body
    bom = "\ufeff" if draw(st.booleans()) else ""
    text = f"{bom}---{eol}" + "".join(lines) + f"---{eol}" + body
    return text.encode("utf-8"), {k: fm[k] for k in order}, body


@st.composite
def changes(draw: st.DrawFn, fm: dict[str, Any]) -> tuple[str, Any]:
    key = draw(st.sampled_from(["title", *OPTIONAL]))
    if key != "title" and key in fm and draw(st.integers(0, 3)) == 0:
        return key, MISSING
    value = draw(VALUES[key])
    if key == "tags" and not value:
        value = ["x"]
    return key, value


def _wanted(fm: dict[str, Any], body: str) -> Wanted:
    columns = {k: fm.get(k) for k in ("priority", "points", "epic", "assignee")}
    extra = {k: v for k, v in fm.items() if k in ("created", "custom", "notes")}
    return Wanted("WEB-1", fm["title"], "backlog", "web", body, columns, list(fm.get("tags") or []), [], extra)


def _key_lines(data: bytes, key: str) -> set[int]:
    """0-based line numbers (of the whole file) a top-level key and its value occupy."""
    text = data.decode("utf-8").removeprefix("\ufeff")
    fm = text.split("\n", 1)[1]
    root = yaml.compose(fm.split("\n---")[0] + "\n", Loader=yaml.CSafeLoader)
    for k, v in root.value:
        if k.value == key:
            return set(range(k.start_mark.line + 1, _last_line(fm, v) + 2))
    return set()


def _last_line(fm: str, node: yaml.Node) -> int:
    """The last line of a value's own text: a block collection ends with its last value (libyaml
    counts the comments and blank lines before the next key into it), a scalar without its
    trailing blank lines."""
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return _last_line(fm, last[1] if isinstance(last, tuple) else last)
    span = fm[node.start_mark.index : node.end_mark.index]
    header = span.split("\n", 1)[0]
    if not (isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") and "+" in header.split("#", 1)[0]):
        span = span.rstrip()  # clip or strip chomping: the blank lines after it are the file's
    return fm.count("\n", 0, node.start_mark.index + len(span.removesuffix("\n")))


def _without(data: bytes, lines: set[int]) -> list[str]:
    return [line for i, line in enumerate(data.decode("utf-8").split("\n")) if i not in lines]


def _json(value: Any) -> str:
    """Equality as JSON (``True`` is not ``1``)."""
    return json.dumps(value, sort_keys=True)


def _normal(fm: dict[str, Any]) -> dict[str, Any]:
    """A null column and an empty tag list mean the same as an absent key (as in the DB)."""
    columns = ("priority", "points", "epic", "assignee", "tags")
    return {k: v for k, v in fm.items() if not (k in columns and v in (None, []))}


def check_minimal(old: bytes, new: bytes, key: str, want_fm: dict[str, Any], body: str) -> None:
    """The properties every export must have."""
    story = parse_story(LOCATION, new)
    assert not isinstance(story, list), story
    assert _json(_normal(story.frontmatter)) == _json(_normal(want_fm))
    assert story.body == body
    assert new.startswith(b"\xef\xbb\xbf") == old.startswith(b"\xef\xbb\xbf")
    assert _without(old, _key_lines(old, key)) == _without(new, _key_lines(new, key))
    if b"\r\n" in old.split(b"\n", 1)[0] + b"\n":
        head = new.split(b"\n---", 1)[0]
        assert head.count(b"\n") == head.count(b"\r\n")


@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_render_changes_only_the_changed_key(data: st.DataObject) -> None:
    old, fm, body = data.draw(story_files())
    assume(not isinstance(parse_story(LOCATION, old), list))  # e.g. a body with a conflict marker
    key, value = data.draw(changes(fm))
    want_fm = dict(fm)
    if value is MISSING:
        del want_fm[key]
    else:
        want_fm[key] = value
    new = render_existing(old, _wanted(want_fm, body), LOCATION)
    if _json(want_fm) == _json(fm):
        assert new == old
    check_minimal(old, new, key, want_fm, body)


def test_removing_a_block_sequence_keeps_the_blank_line_after_it() -> None:
    """Found by the property above: libyaml ends a block sequence at the next key, past
    the blank line; that line is the file's, not the sequence's (only a block scalar keeps one)."""
    old = b"---\nid: WEB-1\ntitle: T\ncustom:\n- '0'\n\nassignee: a\ncreated: 2026-01-05\n---\n"
    fm = {"id": "WEB-1", "title": "T", "custom": ["0"], "assignee": "a", "created": "2026-01-05"}
    want_fm = {k: v for k, v in fm.items() if k != "custom"}
    new = render_existing(old, _wanted(want_fm, ""), LOCATION)
    check_minimal(old, new, "custom", want_fm, "")
    assert new == old.replace(b"custom:\n- '0'\n", b"")


def test_removing_a_block_scalar_keeps_the_blank_line_after_it_unless_the_scalar_keeps_it() -> None:
    """Found by the property above: a clipped block scalar's trailing blank line is the file's
    (as after a sequence), a kept one's (``|+``) is the value's and goes with its key."""
    for header, gone in ((b"|", b"notes: |\n  0\n"), (b"|+", b"notes: |+\n  0\n\n")):
        old = b"---\nid: WEB-1\ntitle: T\nnotes: " + header + b"\n  0\n\nassignee: a\n---\n"
        want_fm = {"id": "WEB-1", "title": "T", "assignee": "a"}
        new = render_existing(old, _wanted(want_fm, ""), LOCATION)
        check_minimal(old, new, "notes", want_fm, "")
        assert new == old.replace(gone, b"")


def test_removing_a_block_mapping_keeps_the_comment_after_it() -> None:
    """Found by the property below (seed 505): a comment between a block mapping and the next
    key is left in place; the check counts the mapping's lines up to its last value, as render does."""
    old = b"---\ncustom:\n  a: '0'\n# comment\ntitle: T\nid: WEB-1\n---\n"
    want_fm = {"title": "T", "id": "WEB-1"}
    new = render_existing(old, _wanted(want_fm, ""), LOCATION)
    check_minimal(old, new, "custom", want_fm, "")
    assert new == b"---\n# comment\ntitle: T\nid: WEB-1\n---\n"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_update_then_export_changes_only_that_key(data: st.DataObject) -> None:
    old, fm, body = data.draw(story_files())
    key, value = data.draw(changes(fm))
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "r")
        repo.write(LOCATION.path, old)
        repo.commit("story")
        config = load_config(repo.path, db_flag=repo.db_url)
        db = Database(repo.db_url)
        try:
            git_repo = open_repo(repo.path)
            assert sync(config, db, git_repo, SyncOptions()).exit_code == 0
            update_story(db, "WEB-1", **{key: None if value is MISSING else value})
            result = export(config, db, git_repo)
            assert result.exit_code == 0
            new = (repo.path / LOCATION.path).read_bytes()
            want_fm = dict(fm)
            if value is MISSING:
                del want_fm[key]
            elif key == "tags" or value is not None:
                want_fm[key] = value
            check_minimal(old, new, key, want_fm, body)
            assert export(config, db, git_repo).actions == []
        finally:
            db.dispose()


def test_quoting_style_of_a_replaced_value_is_kept() -> None:
    old = b'---\nid: WEB-1\ntitle: "Old"\nepic: \'e1\'\ntags: ["a"]\n---\n'
    want = Wanted("WEB-1", "New", "backlog", "web", "", {"epic": "e2"}, ["a", "b"], [], {})
    assert render_existing(old, want, LOCATION) == b"---\nid: WEB-1\ntitle: \"New\"\nepic: 'e2'\ntags: [a, b]\n---\n"


def test_a_frontmatter_that_cannot_be_spliced_is_rewritten_cleanly() -> None:
    old = b"---\n{id: WEB-1, title: Old, custom: 1}\n---\nBody\n"
    want = Wanted("WEB-1", "New", "backlog", "web", "Body\n", {"points": 2}, [], [], {"custom": 1})
    assert render_existing(old, want, LOCATION) == b"---\nid: WEB-1\ntitle: New\ncustom: 1\npoints: 2\n---\nBody\n"


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_new_file_reads_back_as_the_row(data: st.DataObject) -> None:
    fm: dict[str, Any] = {"id": "WEB-1", "title": data.draw(VALUES["title"])}
    for key in data.draw(st.lists(st.sampled_from(OPTIONAL), unique=True)):
        fm[key] = data.draw(VALUES[key])
    body = data.draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
    new = render_new(_wanted(fm, body), LOCATION)
    story = parse_story(LOCATION, new)
    assert not isinstance(story, list), story
    assert _json(_normal(story.frontmatter)) == _json(_normal(fm))
    assert list(story.frontmatter)[:2] == ["id", "title"]
    assert story.body == body
