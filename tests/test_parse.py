"""The story parser: frontmatter/body split, YAML → data with positions, and every refusal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from storysync.errors import Diagnostic
from storysync.story import parse
from storysync.story.model import Location, Story
from storysync.story.parse import MAX_DEPTH, MAX_FILE, MAX_FRONTMATTER, parse_story, split_body

PATH = "backlog/web/WEB-1-story.md"
LOC = Location(PATH, "backlog", "backlog", "web", "WEB-1-story.md")


def ok(data: str | bytes) -> Story:
    parsed = parse_story(LOC, data.encode() if isinstance(data, str) else data)
    assert isinstance(parsed, Story), parsed
    return parsed


def bad(data: str | bytes) -> list[str]:
    """The rendered diagnostics (``line:col: message`` without the path)."""
    parsed = parse_story(LOC, data.encode() if isinstance(data, str) else data)
    assert isinstance(parsed, list), parsed
    assert all(isinstance(d, Diagnostic) and d.path == PATH for d in parsed)
    return [str(d)[len(PATH) + 1 :] for d in parsed]


def codes(data: str | bytes) -> list[str]:
    parsed = parse_story(LOC, data.encode() if isinstance(data, str) else data)
    assert isinstance(parsed, list), parsed
    return [d.code for d in parsed]


# --- positions -------------------------------------------------------------------------------


def test_positions_of_keys_and_values_top_level_and_nested() -> None:
    story = ok(
        "---\n"  # line 1
        "id: WEB-1\n"  # 2
        "title:   Spaced out\n"  # 3
        "meta:\n"  # 4
        "  owner: ada\n"  # 5
        "  links: [one, {href: two}]\n"  # 6
        "tags:\n"  # 7
        "  - a\n"  # 8
        "  - 'b'\n"  # 9
        "---\n"
        "body\n"
    )
    assert story.key_mark("id") == (2, 1)
    assert story.mark(("id",)) == (2, 5)
    assert story.key_mark("title") == (3, 1)
    assert story.mark(("title",)) == (3, 10)
    assert story.key_marks[("meta", "owner")] == (5, 3)
    assert story.mark(("meta", "owner")) == (5, 10)
    assert story.mark(("meta", "links", 0)) == (6, 11)
    assert story.mark(("meta", "links", 1)) == (6, 16)
    assert story.key_marks[("meta", "links", 1, "href")] == (6, 17)
    assert story.mark(("meta", "links", 1, "href")) == (6, 23)
    assert story.mark(("tags", 0)) == (8, 5)
    assert story.mark(("tags", 1)) == (9, 5)
    # a path below a scalar falls back to the nearest ancestor; the root is line 2
    assert story.mark(("meta", "owner", "deeper")) == (5, 10)
    assert story.mark(()) == (2, 1)


def test_positions_count_from_line_two_after_a_bom_and_with_crlf() -> None:
    story = ok(b"\xef\xbb\xbf---\r\nid: WEB-1\r\ntitle: T\r\n---\r\n")
    assert story.mark(("title",)) == (3, 8)
    assert story.bom


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("---\nid: WEB-1\ntitle: [open\n---\n", "4:1"),  # unclosed flow sequence: found at the end
        ("---\nid: WEB-1\ntitle: x\n  bad: indent\n---\n", "4:6"),
        ("---\nid: WEB-1\ntitle: 'unterminated\n---\n", "4:1"),
        ("---\nid: WEB-1\n\n\ntitle: {a: b\n---\n", "6:1"),
        ("---\nid: WEB-1\ntitle: a\tb: c\n---\n", "3:11"),
        ("---\nid: WEB-1\ntitle: ok\nbell: a\x07\n---\n", "4:8"),
    ],
)
def test_yaml_syntax_errors_at_the_file_line_and_column(text: str, where: str) -> None:
    [line] = bad(text)
    assert line.startswith(where + ": invalid YAML: "), line


def test_c_loader_in_use_when_libyaml_is_available() -> None:
    if yaml.__with_libyaml__:
        assert parse._Loader is yaml.CSafeLoader
    else:  # pragma: no cover - depends on the PyYAML build
        assert parse._Loader is yaml.SafeLoader


# --- values keep their JSON meaning ------------------------------------------------------------


def test_timestamps_stay_the_strings_written() -> None:
    story = ok(
        "---\nid: WEB-1\ntitle: T\ncreated: 2026-01-05\nupdated: 2026-01-05T10:30:00Z\n"
        "seen: 2026-01-05 10:30:00.5 +02:00\nshort: 2026-1-5\n---\n"
    )
    fm = story.frontmatter
    assert fm["created"] == "2026-01-05"
    assert fm["updated"] == "2026-01-05T10:30:00Z"
    assert fm["seen"] == "2026-01-05 10:30:00.5 +02:00"
    assert fm["short"] == "2026-1-5"


def test_scalars_map_to_json_types_and_written_text_is_kept_for_non_strings() -> None:
    story = ok("---\nid: WEB-1\ntitle: NO\npoints: 010\nat: 12:30\nf: 1.5\nn: ~\nq: 'NO'\n---\n")
    fm = story.frontmatter
    assert fm == {"id": "WEB-1", "title": False, "points": 8, "at": 750, "f": 1.5, "n": None, "q": "NO"}
    assert story.written[("title",)] == "NO"
    assert story.written[("points",)] == "010"
    assert story.written[("at",)] == "12:30"
    assert ("q",) not in story.written


@pytest.mark.parametrize(
    "value", ["9223372036854775808", "-9223372036854775809", "0x" + "f" * 5000, "9" * 5000, ":".join(["59"] * 40)]
)
def test_integers_beyond_64_bits_refused(value: str) -> None:
    shown = value if len(value) <= 24 else value[:20] + "…"
    assert bad(f"---\nid: WEB-1\ntitle: T\nx: {value}\n---\n") == [
        f"4:4: integer {shown} does not fit in 64 bits; quote it if you mean text"
    ]


def test_64_bit_integers_accepted() -> None:
    story = ok("---\nid: WEB-1\ntitle: T\nbig: 9223372036854775807\nsmall: -9223372036854775808\n---\n")
    assert story.frontmatter["big"] == 2**63 - 1
    assert story.frontmatter["small"] == -(2**63)


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "+.INF"])
def test_nan_and_infinity_refused(value: str) -> None:
    assert bad(f"---\nid: WEB-1\ntitle: T\nx: {value}\n---\n") == [
        f"4:4: {value!r} has no JSON equivalent; quote it if you mean text"
    ]


# --- duplicate and collapsing keys --------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "key"),
    [
        ("title", "title", "title"),
        ("1", '"1"', "1"),
        ("'2'", "2", "2"),
        ("true", '"true"', "true"),
        ("~", "null", "null"),
        ("0x10", "16", "16"),
    ],
)
def test_duplicate_and_collapsing_keys_refused_with_both_positions(first: str, second: str, key: str) -> None:
    assert bad(f"---\nid: WEB-1\ntitle: T\nx:\n  {first}: a\n  {second}: b\n---\n")[-1] == (
        f"6:3: duplicate key {key!r} (first at line 5, column 3); keep one of them"
    )


def test_same_key_in_different_mappings_is_fine() -> None:
    story = ok("---\nid: WEB-1\ntitle: T\na: {k: 1}\nb: {k: 2}\n---\n")
    assert story.frontmatter["a"] == {"k": 1}


# --- refused constructs ---------------------------------------------------------------------------


def test_anchor_and_alias_refused() -> None:
    assert bad("---\nid: &i WEB-1\ntitle: T\n---\n") == ["2:5: YAML anchors (&name) are not allowed in frontmatter"]
    assert bad("---\nid: WEB-1\ntitle: *t\n---\n") == ["3:8: YAML aliases (*name) are not allowed in frontmatter"]


def test_alias_bomb_refused_fast() -> None:
    lines = ["---", "id: WEB-1", "title: T", 'a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 30)]
    started = time.perf_counter()
    assert codes("\n".join([*lines, "---", ""])) == ["anchor"]
    assert time.perf_counter() - started < 1.0


def test_tags_and_merge_keys_refused() -> None:
    assert codes("---\nid: WEB-1\ntitle: !!python/object:os.system x\n---\n") == ["tag"]
    assert codes("---\nid: WEB-1\ntitle: T\nx: !!binary aGk=\n---\n") == ["tag"]
    assert codes("---\nid: WEB-1\ntitle: T\nx: !custom y\n---\n") == ["tag"]
    assert codes("---\nid: WEB-1\ntitle: T\n<<: {a: 1}\n---\n") == ["merge-key"]
    assert codes("---\nid: WEB-1\ntitle: T\n? [a, b]\n: c\n---\n") == ["complex-key"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!int abc", "'abc' is not an integer; drop the !!int tag"),
        ("!!int 09", "'09' is not an integer; drop the !!int tag"),  # a leading 0 is octal: not '64 bits'
        ("!!float abc", "'abc' is not a number; drop the !!float tag"),
        ("!!bool maybe", "'maybe' is not a boolean; drop the !!bool tag"),
        ("!!str [1]", "YAML tag 'tag:yaml.org,2002:str' does not fit this value"),
        ("!!map [1]", "YAML tag 'tag:yaml.org,2002:map' does not fit this value"),
        ("!!seq {a: 1}", "YAML tag 'tag:yaml.org,2002:seq' does not fit this value"),
    ],
)
def test_explicit_tags_that_do_not_fit_are_refused(value: str, expected: str) -> None:
    assert bad(f"---\nid: WEB-1\ntitle: T\nx: {value}\n---\n") == [f"4:4: {expected}"]


def test_explicit_tags_that_fit_are_fine() -> None:
    story = ok("---\nid: WEB-1\ntitle: !!str 5\nn: !!int '7'\nf: !!float 1\nm: !!map {a: 1}\ns: !!seq [1]\n---\n")
    assert story.frontmatter == {"id": "WEB-1", "title": "5", "n": 7, "f": 1.0, "m": {"a": 1}, "s": [1]}


def nested(depth: int) -> str:
    """Frontmatter whose deepest collection is at ``depth`` (the top mapping is 1)."""
    return "---\nid: WEB-1\ntitle: T\nx: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n---\n"


def test_depth_limit_exact() -> None:
    ok(nested(MAX_DEPTH))
    assert bad(nested(MAX_DEPTH + 1)) == [f"4:{3 + MAX_DEPTH}: frontmatter nests deeper than 32 levels"]


def test_block_nesting_limit() -> None:
    deep = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH)) + "  " * MAX_DEPTH + "leaf: 1\n"
    assert codes(f"---\nid: WEB-1\ntitle: T\n{deep}---\n") == ["too-deep"]
    shallow = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH - 2)) + "  " * (MAX_DEPTH - 2) + "leaf: 1\n"
    assert ok(f"---\nid: WEB-1\ntitle: T\n{shallow}---\n").frontmatter["k0"]


def test_compact_nesting_on_one_line_counts() -> None:
    """``- - - a`` nests without brackets or new indentation."""
    assert ok("---\nid: WEB-1\ntitle: T\nx:\n" + "- " * (MAX_DEPTH - 2) + "a\n---\n").frontmatter["x"]
    assert bad("---\nid: WEB-1\ntitle: T\nx:\n" + "- " * MAX_DEPTH + "a\n---\n") == [
        f"5:{2 * MAX_DEPTH - 1}: frontmatter nests deeper than 32 levels"
    ]
    assert codes("---\nid: WEB-1\ntitle: T\n? " + "- " * 40 + "a\n: b\n---\n") == ["too-deep"]


def test_huge_compact_nesting_neither_recurses_nor_crashes() -> None:
    """In a child process: a C stack overflow would kill it, not the test run."""
    import subprocess
    import sys

    code = (
        "from storysync.story.parse import parse_story\n"
        "from storysync.story.model import Location\n"
        "loc = Location('backlog/web/WEB-1-x.md', 'backlog', 'backlog', 'web', 'WEB-1-x.md')\n"
        "text = '---\\nid: WEB-1\\ntitle: T\\nx:\\n' + '- ' * 30000 + 'a\\n---\\n'\n"
        "print([d.code for d in parse_story(loc, text.encode())])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['too-deep']"


def test_very_deep_nesting_is_refused_without_recursion_error() -> None:
    """Refused at the first collection too deep, or at an anchor before it, whatever limit the
    installed libyaml has of its own: 0.2.6 (PyYAML 6.0.4's wheels) stops at 1000 open
    collections while it looks ahead along a line such as this one, before that event."""
    too_deep = "frontmatter nests deeper than 32 levels"
    assert bad("---\nx: " + "[" * 60_000 + "\n---\n") == [f"2:35: {too_deep}"]  # the 32nd "[" opens level 33
    assert bad("---\nx: " + "{[" * 2_000 + "\n---\n") == [f"2:35: {too_deep}"]
    assert bad("---\nx: " + "{a: " * 15_000 + "\n---\n") == [f"2:128: {too_deep}"]  # 4 + 4 * 31
    assert bad("---\nx: [a, &b " + "[" * 2_000 + "\n---\n") == [
        "2:8: YAML anchors (&name) are not allowed in frontmatter"
    ]


def test_frontmatter_size_limit_exact() -> None:
    head = "---\nid: WEB-1\ntitle: T\npad: "
    fits = head + "x" * (MAX_FRONTMATTER - len(head) + 3) + "\n---\n"  # 64 KiB of frontmatter exactly
    assert len(fits.split("\n---\n")[0]) - 3 == MAX_FRONTMATTER
    ok(fits)
    too_big = head + "x" * (MAX_FRONTMATTER - len(head) + 4) + "\n---\n"
    assert bad(too_big) == ["1:1: frontmatter is over 64 KiB"]


def test_unclosed_huge_frontmatter_stops_at_the_limit() -> None:
    text = "---\n" + "k: v\n" * 200_000
    assert codes(text[: MAX_FILE - 1]) == ["frontmatter-too-large"]


def test_file_size_limit_exact() -> None:
    head = b"---\nid: WEB-1\ntitle: T\n---\n"
    ok(head + b"a" * (MAX_FILE - len(head)))
    assert bad(head + b"a" * (MAX_FILE - len(head) + 1)) == ["1:1: file is 1048577 bytes; the limit is 1048576 (1 MiB)"]


# --- encodings and the body ------------------------------------------------------------------------


def test_bom_accepted_and_kept() -> None:
    story = ok(b"\xef\xbb\xbf---\nid: WEB-1\ntitle: T\n---\nbody\n")
    assert story.bom
    assert story.body == "body\n"


@pytest.mark.parametrize(
    "body",
    [
        "\r\nCRLF body\r\nsecond\r\n",
        "\nleading blank line\n",
        "trailing spaces   \n\t\n",
        "no final newline",
        "",
        "---\nlooks like frontmatter\n---\n",
        "unicode ✓ — ünïcödé\n",
    ],
)
def test_body_kept_byte_for_byte(body: str) -> None:
    for newline in ("\n", "\r\n"):
        head = newline.join(["---", "id: WEB-1", "title: T", "---"]) + newline
        data = (head + body).encode()
        story = ok(data)
        assert story.body == body
        assert split_body(data) == body
        assert story.frontmatter == {"id": "WEB-1", "title": "T"}


def test_closing_line_without_newline_gives_empty_body() -> None:
    assert ok("---\nid: WEB-1\ntitle: T\n---").body == ""


def test_content_hash_is_sha256_of_the_bytes() -> None:
    import hashlib

    data = b"---\nid: WEB-1\ntitle: T\n---\nx"
    assert ok(data).content_hash == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"---\nid: WEB-1\ntitle: caf\xe9\n---\n", "3:11: not valid UTF-8 (byte 0xe9); save the file as UTF-8"),
        (b"---\nid: WEB-1\n---\n\xff\n", "4:1: not valid UTF-8 (byte 0xff); save the file as UTF-8"),
        ("---\nid: WEB-1\n---\n".encode("utf-16-le").join([b"\xff\xfe", b""]), "1:1: file is UTF-16; save it as UTF-8"),
        ("---\nid: WEB-1\n---\n".encode("utf-16-be").join([b"\xfe\xff", b""]), "1:1: file is UTF-16; save it as UTF-8"),
        ("---\nid: WEB-1\n---\n".encode("utf-16-le"), "1:1: file is UTF-16; save it as UTF-8"),
        ("---\nid: WEB-1\n---\n".encode("utf-16-be"), "1:1: file is UTF-16; save it as UTF-8"),
        (b"---\nid: WEB-1\ntitle: T\x00\n---\n", "3:9: file contains NUL bytes; a story is UTF-8 text"),
        (b"\x7fELF\x02\x01\x01\x00\x00", "1:8: file contains NUL bytes; a story is UTF-8 text"),
    ],
)
def test_not_utf8_text_refused(data: bytes, expected: str) -> None:
    assert bad(data) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("---\nid: WEB-1\ntitle: T\n", "1:1: frontmatter has no closing '---' line"),
        ("---\nid: WEB-1\n--- \ntitle: T\n", "1:1: frontmatter has no closing '---' line"),
        ("", "1:1: first line must be '---' to open the YAML frontmatter"),
        ("id: WEB-1\n---\n", "1:1: first line must be '---' to open the YAML frontmatter"),
        (" ---\nid: WEB-1\n---\n", "1:1: first line must be '---' to open the YAML frontmatter"),
        ("---\n- a\n- b\n---\n", "2:1: frontmatter is a list; it must be a mapping of keys to values"),
        ("---\nplain words\n---\n", "2:1: frontmatter is a scalar; it must be a mapping of keys to values"),
        ("---\n\n# only a comment\n---\n", "2:1: frontmatter is empty; it needs at least 'id' and 'title'"),
        ("---\n---\n", "2:1: frontmatter is empty; it needs at least 'id' and 'title'"),
    ],
)
def test_missing_or_non_mapping_frontmatter_refused(text: str, expected: str) -> None:
    assert bad(text) == [expected]


def test_conflict_markers_refused_in_frontmatter_and_body() -> None:
    assert bad("---\nid: WEB-1\n<<<<<<< HEAD\ntitle: A\n=======\ntitle: B\n>>>>>>> b\n---\n") == [
        "3:1: git conflict marker; resolve the merge conflict in this file",
        "5:1: git conflict marker; resolve the merge conflict in this file",
        "7:1: git conflict marker; resolve the merge conflict in this file",
    ]
    assert bad("---\nid: WEB-1\ntitle: T\n---\n<<<<<<< ours\na\n||||||| base\n=======\nb\n>>>>>>> theirs\n") == [
        "5:1: git conflict marker; resolve the merge conflict in this file",
        "7:1: git conflict marker; resolve the merge conflict in this file",
        "8:1: git conflict marker; resolve the merge conflict in this file",
        "10:1: git conflict marker; resolve the merge conflict in this file",
    ]


def test_conflict_marker_in_unclosed_file_reports_both() -> None:
    assert codes("---\nid: WEB-1\n<<<<<<< HEAD\n") == ["conflict-marker", "no-closing-delimiter"]


def test_setext_heading_is_not_a_conflict_marker() -> None:
    assert ok("---\nid: WEB-1\ntitle: T\n---\nHeading\n=======\n<<<<<<<< eight is not seven\n").body
    assert ok("---\nid: WEB-1\ntitle: T\n---\nHeading\n=======\n\n> > > quoted\n").body
    assert codes("---\nid: WEB-1\ntitle: T\n---\nHeading\n=======\n>>>>>>> stray end\n") == ["conflict-marker"]


def test_every_frontmatter_problem_is_collected() -> None:
    assert codes(
        "---\nid: WEB-1\ntitle: A\ntitle: B\nx: .nan\ny: !!binary aGk=\nz:\n  k: 1\n  k: 2\n<<: {m: 1}\n---\n"
    ) == ["duplicate-key", "not-json", "tag", "duplicate-key", "merge-key"]


def test_work_tree_source_does_not_follow_a_file_swapped_for_a_symlink(tmp_path: Path) -> None:
    """Listed as a regular file, replaced by a symlink before it is read: refused, not followed."""
    from storysync.check.sources import WorkTreeSource
    from storysync.config import Config

    story_file = tmp_path / "backlog" / "web" / "WEB-1-a.md"
    story_file.parent.mkdir(parents=True)
    story_file.write_text("---\nid: WEB-1\ntitle: T\n---\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the database")
    source = WorkTreeSource(Config(repo=tmp_path))
    [entry] = source.entries()
    assert not entry.symlink
    story_file.unlink()
    story_file.symlink_to(secret)
    read = source.read(entry)
    assert isinstance(read, Diagnostic)
    assert read.code == "symlink"
