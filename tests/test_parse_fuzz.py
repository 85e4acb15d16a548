"""Property-based tests: whatever bytes a story file holds, the parser answers with a
``Story`` or diagnostics; never an exception, never slowly, never with unbounded memory.

The default run is small (a couple of hundred examples each); ``-m slow`` runs many more.
"""

from __future__ import annotations

import tracemalloc
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storysync.check.rules import check_story
from storysync.check.schema import load_checker
from storysync.errors import Diagnostic
from storysync.story.model import Location, Story
from storysync.story.parse import parse_story

LOC = Location("backlog/web/WEB-1-fuzz.md", "backlog", "backlog", "web", "WEB-1-fuzz.md")
MEMORY_BASE = 16 * 1024 * 1024  # bytes of headroom for one parse, plus a factor of the input size
MEMORY_PER_BYTE = 64

FAST = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),  # a parse takes milliseconds; the margin is for a loaded CI machine
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SLOW = settings(FAST, max_examples=5000)

TOKENS = [
    "---",
    "id: WEB-1",
    "title: T",
    "title:",
    "- ",
    "-",
    ": ",
    ":",
    "? ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!null ",
    "!!map ",
    "!!seq ",
    "!!timestamp ",
    "- - ",
    "99999999999999999999999",
    "!!python/object:os.system ",
    "!tag ",
    "<<: ",
    "'",
    '"',
    "|",
    ">",
    "#",
    "%YAML 1.1",
    "...",
    ".nan",
    ".inf",
    "NO",
    "010",
    "12:30",
    "2026-01-05",
    "~",
    "null",
    "1",
    '"1"',
    "<<<<<<< HEAD",
    "=======",
    ">>>>>>> b",
    "\t",
    "  ",
    "\n",
    "\r\n",
    "\ufeff",
    "\x00",
    "\x07",
    "é",
    "\U0001f600",
    "\\x",
]

yamlish = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)),
    max_size=60,
).map("".join)

framed = st.builds(
    lambda head, text, tail, body: f"{head}{text}{tail}{body}",
    st.sampled_from(["---\n", "---\r\n", "\ufeff---\n", "", "--- \n"]),
    yamlish,
    st.sampled_from(["\n---\n", "\r\n---\r\n", "\n---", "", "\n"]),
    st.text(max_size=40),
)


def assert_answers(data: bytes) -> None:
    """Parse (and check) ``data`` within the memory bound; the answer is a Story or diagnostics."""
    tracemalloc.start()
    try:
        result = parse_story(LOC, data)
        problems = (load_checker().check(result) + check_story(result)) if isinstance(result, Story) else result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BASE + MEMORY_PER_BYTE * len(data)
    if not isinstance(result, Story):
        assert result, "a refusal must say why"
    for d in problems:
        assert isinstance(d, Diagnostic)
        assert d.path == LOC.path
        assert d.line >= 1
        assert d.col >= 1
        assert "\n" not in str(d), "a diagnostic is one line"
    if isinstance(result, Story):
        _assert_json_safe(result.frontmatter)
        assert data.decode("utf-8").endswith(result.body)


def _assert_json_safe(value: Any) -> None:
    import json

    assert json.loads(json.dumps(value, allow_nan=False)) == value


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    assert_answers(data)


@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_after_a_frontmatter_opening(data: bytes) -> None:
    assert_answers(b"---\n" + data)
    assert_answers(b"---\nid: WEB-1\ntitle: T\n" + data + b"\n---\n")


@FAST
@given(framed)
def test_arbitrary_yamlish_text(text: str) -> None:
    assert_answers(text.encode("utf-8", "surrogatepass"))


# PyYAML's emitter folds the Unicode line breaks NEL, LS and PS inside quoted scalars
# into spaces (an emitter quirk, not a reading one), so the round trip leaves them out.
plain_text = st.text(st.characters(exclude_characters="\x85\u2028\u2029", exclude_categories=["Cs"]), max_size=10)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # wider integers are refused on purpose (64-bit limit)
    | st.floats(allow_nan=False, allow_infinity=False)
    | plain_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(plain_text, children, max_size=4),
    max_leaves=30,
)


@FAST
@given(json_values)
def test_any_yaml_dump_round_trips_to_json_data(value: Any) -> None:
    """Whatever PyYAML can write, a story's frontmatter reads back as the same JSON data."""
    import yaml

    dumped = yaml.safe_dump({"id": "WEB-1", "title": "T", "x": value}, allow_unicode=True)
    result = parse_story(LOC, f"---\n{dumped}---\n".encode())
    if isinstance(result, Story):
        assert result.frontmatter["x"] == _json_keys(value)
    else:
        pytest.fail(f"valid YAML data refused: {result}")


def _json_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


@pytest.mark.slow
@SLOW
@given(st.binary(max_size=8192))
def test_arbitrary_bytes_many(data: bytes) -> None:
    assert_answers(data)


@pytest.mark.slow
@SLOW
@given(framed)
def test_arbitrary_yamlish_text_many(text: str) -> None:
    assert_answers(text.encode("utf-8", "surrogatepass"))


def _exact_depth(text: str) -> int | None:
    """The deepest collection nesting of ``text`` by libyaml's events (None if not YAML)."""
    import yaml

    depth = deepest = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return deepest


nested_values = st.recursive(
    st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, min_size=1, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=3), children, min_size=1, max_size=3)
    ),
    max_leaves=60,
)


@FAST
@given(nested_values, st.sampled_from([False, None]), st.sampled_from([2, 4]), st.booleans())
def test_cheap_depth_bound_is_an_upper_bound(value: Any, flow: bool | None, indent: int, compact: bool) -> None:
    """The bound that lets most files skip the event scan never underestimates the depth."""
    import yaml

    from storysync.story.parse import depth_bound

    text = yaml.safe_dump({"x": value}, default_flow_style=flow, indent=indent)
    if compact:  # PyYAML never writes "- - a"; people can
        text = text.replace("-\n" + " " * indent + "- ", "- - ")
    exact = _exact_depth(text)
    if exact is not None:
        assert depth_bound(text) >= exact, text


@FAST
@given(yamlish)
def test_cheap_depth_bound_holds_for_yamlish_text(text: str) -> None:
    from storysync.story.parse import depth_bound

    exact = _exact_depth(text)
    if exact is not None:
        assert depth_bound(text) >= exact, text
