"""The field-level three-way merge (storysync/story/merge.py), as properties over random
pairs of edits of one story, and the cases a reader checks by eye."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from storysync.story.merge import MISSING, SET_KEYS, Version, merge, merge_files, merge_text, same, with_markers
from storysync.story.model import Location
from storysync.story.render import Parts, clean_frontmatter

KEYS = ("title", "priority", "points", "assignee", "tags", "depends_on", "estimate")
WORDS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
LINE = st.sampled_from(["one\n", "two\n", "three\n", "four\n", "five\n", "\n", "six"])


def values(key: str) -> st.SearchStrategy[Any]:
    if key in ("tags", "depends_on"):
        return st.lists(WORDS, unique=True, max_size=4)
    if key == "points":
        return st.integers(0, 5)
    return st.sampled_from(["x", "y", "z", "low", "high"])


@st.composite
def frontmatters(draw: st.DrawFn) -> dict[str, Any]:
    fm: dict[str, Any] = {"id": "S-1"}
    for key in KEYS:
        if draw(st.booleans()):
            fm[key] = draw(values(key))
    return fm


@st.composite
def edited(draw: st.DrawFn, fm: dict[str, Any]) -> dict[str, Any]:
    """``fm`` with some keys changed, removed or added (``id`` stays)."""
    out = dict(fm)
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3)):
        if key in out and draw(st.booleans()):
            del out[key]
        else:
            out[key] = draw(values(key))
    return out


@st.composite
def edited_body(draw: st.DrawFn, body: list[str]) -> list[str]:
    out = list(body)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(out)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert" or at == len(out):
            out.insert(at, draw(LINE))
        elif op == "delete":
            del out[at]
        else:
            out[at] = draw(LINE)
    return out


@st.composite
def triples(draw: st.DrawFn) -> tuple[Version, Version, Version]:
    fm = draw(frontmatters())
    body = draw(st.lists(LINE, max_size=6))
    sides = [Version(draw(edited(fm)), "".join(draw(edited_body(body)))) for _ in range(2)]
    return Version(fm, "".join(body)), sides[0], sides[1]


def keys(*versions: Version) -> set[str]:
    return {k for v in versions for k in v.frontmatter}


def get(version: Version | Any, key: str) -> Any:
    return version.frontmatter.get(key, MISSING)


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def entries(value: Any) -> list[Any]:
    """A set field's entries: a missing key or null has none."""
    return [] if value is MISSING or value is None else list(value)


def result(merged: Any, key: str) -> Any:
    return merged.frontmatter.get(key, MISSING)


@given(triples())
def test_a_change_on_one_side_only_is_kept(t: tuple[Version, Version, Version]) -> None:
    base, ours, theirs = t
    merged = merge(base, ours, theirs)
    for key in keys(base, ours, theirs):
        b, o, th = get(base, key), get(ours, key), get(theirs, key)
        if same(b, th):
            assert same(result(merged, key), o), key
        elif same(b, o):
            assert same(result(merged, key), th), key
            assert key in merged.merged or same(o, th)
    if base.body == theirs.body:
        assert merged.body == ours.body
    elif base.body == ours.body:
        assert merged.body == theirs.body


@given(triples())
def test_the_merge_is_symmetric_up_to_the_file_wins_rule(t: tuple[Version, Version, Version]) -> None:
    base, ours, theirs = t
    one, other = merge(base, ours, theirs), merge(base, theirs, ours)
    assert sorted(one.conflicting) == sorted(other.conflicting)
    conflicting = set(one.conflicting)
    for key in keys(base, ours, theirs) - conflicting:
        a, b = result(one, key), result(other, key)
        if key in SET_KEYS and all(v is MISSING or v is None or isinstance(v, list) for v in (a, b)):
            # a set: no key, null and [] are all "no entries" (as the database stores them)
            assert sorted(map(str, entries(a))) == sorted(map(str, entries(b))), key
        elif isinstance(a, list) and isinstance(b, list):
            assert sorted(map(str, a)) == sorted(map(str, b)), key
        else:
            assert same(a, b), key
    for key in conflicting - {"body"}:  # the winning side's value, each way round
        assert same(result(one, key), get(ours, key))
        assert same(result(other, key), get(theirs, key))
    if "body" in conflicting:
        assert (one.body, other.body) == (ours.body, theirs.body)
    else:
        assert one.body == other.body


@given(triples())
def test_no_value_is_lost(t: tuple[Version, Version, Version]) -> None:
    """Each side's value of a field is in the result, or its change was undone by nothing
    but the other side's set edit, or it is kept in the conflict."""
    base, ours, theirs = t
    merged = merge(base, ours, theirs)
    conflicts = {c.field: c for c in merged.conflicts}
    for key in keys(base, ours, theirs):
        b, o, th = get(base, key), get(ours, key), get(theirs, key)
        got = result(merged, key)
        if key in conflicts:
            assert same(conflicts[key].theirs, th)
            assert same(got, o)
        elif key in ("tags", "depends_on") and not (same(got, o) or same(got, th)):
            entries, before = set(listed(got)), set(listed(b))
            for side in (o, th):
                assert set(listed(side)) - before <= entries, key  # every entry a side added
                assert not (before - set(listed(side))) & entries, key  # no entry a side removed
        else:
            assert same(got, o) or same(got, th), key
    if "body" in conflicts:
        assert conflicts["body"].theirs == theirs.body
        assert merged.body == ours.body


def test_a_pm_sets_priority_while_a_developer_edits_the_body() -> None:
    base = Version({"id": "S-1", "title": "Login", "priority": "low"}, "Intro\n\nSteps\n")
    file = Version({"id": "S-1", "title": "Login", "priority": "low"}, "Intro\n\nSteps: 1, 2\n")
    db = Version({"id": "S-1", "title": "Login", "priority": "high"}, "Intro\n\nSteps\n")
    merged = merge(base, file, db)
    assert merged.frontmatter == {"id": "S-1", "title": "Login", "priority": "high"}
    assert merged.body == "Intro\n\nSteps: 1, 2\n"
    assert merged.merged == ["priority"]
    assert merged.conflicts == []


def test_tags_added_and_removed_on_both_sides_merge_as_sets() -> None:
    base = Version({"id": "S-1", "tags": ["ui", "auth"]}, "")
    file = Version({"id": "S-1", "tags": ["ui", "auth", "mobile"]}, "")
    db = Version({"id": "S-1", "tags": ["auth", "beta"]}, "")
    merged = merge(base, file, db)
    assert merged.frontmatter["tags"] == ["auth", "mobile", "beta"]
    assert merged.merged == ["tags"]
    assert not merged.conflicts


def test_the_same_field_changed_differently_is_a_conflict_the_file_wins() -> None:
    base = Version({"id": "S-1", "title": "Old"}, "")
    merged = merge(base, Version({"id": "S-1", "title": "File"}, ""), Version({"id": "S-1", "title": "DB"}, ""))
    assert merged.frontmatter["title"] == "File"
    assert [(c.field, c.base, c.ours, c.theirs) for c in merged.conflicts] == [("title", "Old", "File", "DB")]


def test_overlapping_body_hunks_conflict_and_separate_ones_merge() -> None:
    base = "a\nb\nc\nd\ne\n"
    assert merge_text(base, "A\nb\nc\nd\ne\n", "a\nb\nc\nd\nE\n") == "A\nb\nc\nd\nE\n"
    assert merge_text(base, "A\nb\nc\nd\ne\n", "X\nb\nc\nd\ne\n") is None
    assert merge_text("a\nb", "a\nb", "a\nb\n") == "a\nb\n"  # no final newline, byte for byte
    assert with_markers(base, "A\nb\nc\nd\ne\n", "X\nb\nc\nd\nE\n", ("ours", "base", "theirs")) == (
        "<<<<<<< ours\nA\n||||||| base\na\n=======\nX\n>>>>>>> theirs\nb\nc\nd\nE\n"
    )


LOCATION = Location("backlog/web/S-1-x.md", "backlog", "backlog", "web", "S-1-x.md")


def _file(version: Version) -> bytes:
    assert version.body is not None
    return Parts(False, "---\n", clean_frontmatter(version.frontmatter.items(), "\n"), "---\n", version.body).join()


@given(triples())
def test_a_merged_file_reads_as_the_merged_values(t: tuple[Version, Version, Version]) -> None:
    """The merge driver's file (merged values rendered onto ours) reads back as ``merge`` says,
    and where a field conflicts, the file has markers and says so."""
    base, ours, theirs = t
    merged = merge(base, ours, theirs)
    done = merge_files(LOCATION, _file(base), _file(ours), _file(theirs), ("ours", "base", "theirs"))
    assert done.conflicts == merged.conflicting
    if merged.conflicts:
        assert b"<<<<<<< ours\n" in done.data
        return
    assert done.story is not None
    assert done.story.frontmatter == merged.frontmatter
    assert done.story.body == merged.body
