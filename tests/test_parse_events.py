"""Differential tests: the event-stream frontmatter reader against the compose-based one.

``storysync.story.parse`` builds values straight from libyaml's events; ``parse_reference``
keeps the reader it replaced (libyaml composes a node tree, PyYAML's resolver tags
each scalar, a walk builds the values).  On generated stories, on mutations of them,
on the tricky cases below and on Hypothesis' YAML-ish text, both must answer the same:
the same values (same types, same key order), the same key and value marks, the same
source text of non-string scalars, or the same diagnostics in the same order.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.generate import story_files
from storysync.story import parse
from storysync.story.parse import MAX_DEPTH, load_frontmatter
from tests.parse_reference import Problem, reference_load

Answer = tuple[str, str, str, str] | list[Problem]


def answer_of(result: Any) -> Answer:
    """A comparable form of a reader's answer: reprs keep types (1, 1.0, True) and order."""
    if isinstance(result, list):
        return [p if isinstance(p, tuple) else (p.line, p.col, p.code, p.message) for p in result]
    data, values, keys, written = result
    return repr(data), repr(list(values.items())), repr(list(keys.items())), repr(list(written.items()))


def assert_same(fm_text: str) -> Answer:
    expected = answer_of(reference_load(fm_text))
    assert answer_of(load_frontmatter("p", fm_text)) == expected, fm_text
    return expected


def frontmatters(n: int, seed: int) -> list[str]:
    """The frontmatter texts of the benchmark generator's stories."""
    texts = []
    for text in story_files(n, seed).values():
        split = parse._split("", text)
        assert isinstance(split, tuple)
        texts.append(split[0])
    return texts


def test_generated_stories_read_the_same() -> None:
    for fm_text in frontmatters(300, seed=7):
        answer = assert_same(fm_text)
        assert not isinstance(answer, list), answer


@pytest.mark.slow
def test_generated_stories_read_the_same_many() -> None:
    for fm_text in frontmatters(10_000, seed=11):
        assert_same(fm_text)


MUTATIONS = [
    "&a ", "*a", "!!str ", "!!int ", "!!float ", "!!bool ", "!!null ", "!!map ", "!!seq ", "!!timestamp ",
    "!x ", "! ", "<<: ", "? ", "- ", "- - ", "[", "]", "{", "}", ", ", ": ", "'", '"', "|\n  ", ">\n  ",
    "# c", "\n", "\n  ", "\t", "~", "1", ".nan", "-.inf", "0x1F", "1_000", "99999999999999999999", "NO",
    "2026-01-05T10:00:00+02:00", "\n--- ", "\n...\n", "é", "\U0001f600", "=", "\x07",
]  # fmt: skip


def mutants(count: int, seed: int) -> list[str]:
    """Generated frontmatters with a few tokens inserted at random places."""
    rng = random.Random(seed)
    texts = frontmatters(100, seed)
    found = []
    for _ in range(count):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(MUTATIONS) + text[at:]
        found.append(text)
    return found


def test_mutated_stories_answer_the_same() -> None:
    answers = [assert_same(text) for text in mutants(1500, seed=3)]
    refused = sum(isinstance(a, list) for a in answers)
    assert 300 < refused < 1400, refused  # the mutations reach both the values and the refusals


@pytest.mark.slow
def test_mutated_stories_answer_the_same_many() -> None:
    for text in mutants(50_000, seed=5):
        assert_same(text)


def nested(levels: int, flow: bool) -> str:
    """``x`` under ``levels`` collections, the root mapping included."""
    if flow:
        return "x: " + "[" * (levels - 1) + "a" + "]" * (levels - 1) + "\n"
    return "".join(f"{'  ' * i}- \n" if i else "x:\n" for i in range(levels)).rstrip(" \n") + " a\n"


TRICKY = {
    "multi-line literal": "id: W-1\nd: |\n  one\n  two\n\n  three\ne: x\n",
    "multi-line folded": "d: >-\n  one\n  two\n\n  three\ne: |+\n  keep\n\nf: x\n",
    "multi-line plain": "d: one\n  two\n  three\ne: 'a\n  b'\nf: \"a\\\n  b\\tc\"\n",
    "block collections": "a:\n  - x\n  - y:\n      z: 1\n    w: [2]\nb:\n  c:\n    - - d\n",
    "flow collections": "a: [1, 2, {b: c, d: [e, f]}, [], {}]\nb: {c: , d}\nc: [a, b, ]\n",
    "quoted keys": '"a": 1\n\'b\': 2\n"c d": 3\n? e\n: 4\n? f\n',
    "empty values": "a:\nb: ''\nc: \"\"\nd: ~\ne: null\nf: []\ng: {}\nh: [~, '', null]\n",
    "comments": "# top\na: 1 # after\nb: [1, # inside\n  2]\n# end\n",
    "unicode": 'é: ü\nt: "\\u00e9\\U0001F600"\n日本: 語 text\nemoji: 😀 x\n😀: [é, 日本]\nz: a\u2028b\n',
    "windows line ends": "a: 1\r\nb:\r\n  - x\r\n  - y\r\nc: |\r\n  l1\r\n  l2\r\n",
    "compact sequences": "a:\n- - - x\n  - y\n- z\nb:\n- k: v\n  l: w\n",
    "compact nested indicators": "? - a\n  - b\n: - c\n",
    "deep block 32": nested(MAX_DEPTH, flow=False),
    "deep block 33": nested(MAX_DEPTH + 1, flow=False),
    "deep flow 32": nested(MAX_DEPTH, flow=True),
    "deep flow 33": nested(MAX_DEPTH + 1, flow=True),
    "deep in a skipped value": "a: 1\na: " + "[" * 40 + "]" * 40 + "\n",
    "deep in a complex key": "? " + "[" * 40 + "]" * 40 + "\n: b\n",
    "deep after a problem": "a: !!foo 1\nb: " + "[" * 40 + "]" * 40 + "\n",
    "anchor": "a: &x 1\nb: 2\n",
    "anchor on a key": "&k a: 1\n",
    "anchor on a collection": "a: &x [1]\n",
    "alias": "a: 1\nb: *x\n",
    "alias as key": "*x : 1\n",
    "anchor and alias": "a: &x {b: 1}\nc: *x\n",
    "anchor in a skipped value": "a: 1\na: &x 2\n",
    "anchor under a bad tag": "a: !foo [&x 1]\n",
    "anchor after a problem": "a: !!foo 1\nb: &x 2\n",
    "anchor in a second document": "a: 1\n...\n--- &x b\n",
    "alias in a second document": "a: 1\n--- \n- *x\n",
    "second document": "a: 1\n--- b\n",
    "second document with an ampersand": "a: '&'\n--- b\n",
    "syntax error in a second document": "a: 1\n--- [\n",
    "syntax error in a second document, scanned": "a: '*'\n--- [\n",
    "deep second document": "a: 1\n--- " + "[" * 40 + "]" * 40 + "\n",
    "explicit empty document": "--- \n",
    "explicit document": "--- \na: 1\n",
    "yaml directive": "%YAML 1.1\n--- \na: 1\n",
    "tag directive": "%TAG !e! tag:yaml.org,2002:\n--- \na: !e!int 12\nb: !e!binary aGk=\n",
    "document end": "a: 1\n...\n",
    "a list": "- a\n- b\n",
    "a scalar": "just text\n",
    "a quoted scalar": "'text'\n",
    "a list with an anchor": "- &a x\n",
    "a list with a syntax error": "- a\n- [b\n",
    "a tagged mapping": "!!str {a: 1}\n",
    "a tagged root": "!foo\na: 1\n",
    "empty": "",
    "only a comment": "# nothing\n",
    "blank lines": "\n\n\n",
    "value tags": (
        "a: !!str 1\nb: !!int \"12\"\nc: !!float 1\nd: !!bool yes\ne: !!null ''\nf: !!timestamp 2020-01-01\n"
        "g: ! 12\nh: ! '12'\ni: !!map {k: v}\nj: !!seq [k]\n"
    ),
    "refused value tags": (
        "a: !!binary aGk=\nb: !foo x\nc: !!python/object:os.system x\nd: !!seq a\ne: !!map a\n"
        "f: !!str [a]\ng: !!map [a]\nh: !!seq {a: 1}\ni: !!set {a}\nj: !!int abc\nk: !!float abc\nl: !!bool abc\n"
        "m: !!int\nn: !!float\no: !!int ''\np: !!float _\nq: !!int 1:x\n"
    ),
    "key tags": "!!int 1: a\n!!str 2: b\n!foo c: d\n!!seq e: f\n!!null '': g\n!!float 1.5: h\n!!bool yes: i\n",
    "merge keys": '<<: {a: 1}\nb: 2\n"<<": 3\n? <<\n: 4\n',
    "merge key lists": "a:\n  <<: [{b: 1}]\n  c: 2\n!!merge [x]: 1\n",
    "complex keys": "? [a]\n: b\n? {c: 1}\n: d\n[e, f]: g\n{h: i}: j\n",
    "duplicate keys": "a: 1\nb: 2\na: 3\nc: {d: 1, d: 2}\n",
    "colliding keys": '1: a\n"1": b\ntrue: c\n"true": d\n~: e\nnull: f\n1.0: g\n"1.0": h\n0x2: i\n2: j\n',
    "keys of every scalar kind": "1: a\n1.5: b\nyes: c\n~: d\n2020-01-01: e\n0o17: f\n0x1F: g\n",
    "one and quoted one": 'a: 1\nb: "1"\nc: \'1\'\nd: 1.0\ne: "1.0"\n',
    "not numbers": "a: .nan\nb: .inf\nc: -.inf\nd: .NaN\ne: +.INF\n",
    "not-number keys": ".nan: 1\n.inf: 2\n",
    "integers": (
        "a: 0x1F\nb: 1_000\nc: 0b101\nd: 017\ne: 09\nf: 190:20:30\ng: +12\nh: -0\ni: 0\nj: 9223372036854775807\n"
        "k: -9223372036854775808\nl: 0o17\nm: 0x_1F\n"
    ),
    "huge integers": (
        "a: 99999999999999999999999\nb: 9223372036854775808\nc: -9223372036854775809\n"
        "d: 0x8000000000000000\ne: 0x7FFFFFFFFFFFFFFF\nf: " + "9" * 5000 + "\n99999999999999999999: g\n"
    ),
    "floats": "a: 1.5\nb: -1.5e+3\nc: 1_000.5\nd: 190:20:30.15\ne: .5\nf: 1.\ng: 6.8523015e+5\nh: 1e3\n",
    "booleans": "a: yes\nb: No\nc: ON\nd: off\ne: True\nf: FALSE\ng: y\nh: n\ni: Yes please\n",
    "nulls": "a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: nULL\n",
    "timestamps": (
        "a: 2001-12-14t21:59:43.10-05:00\nb: 2001-12-14 21:59:43.10 -5\nc: 2002-12-14\n"
        "d: 2001-12-15T02:59:43.1Z\ne: 2001-12-14 21:59:43.10 +05:30\nf: 2026-13-45\ng: 2001-12-14T21:59:43\n"
    ),
    "value tag": "a: =\n",
    "empty tag": "a: !\n",
    "syntax error": "a: [b\nc: d\n",
    "mapping in a plain value": "a: b: c\n",
    "tab indentation": "a:\n\t- b\n",
    "control character": "a: ok\nb: x\x07y\n",
    "unterminated quote": "a: 'x\n",
    "problems in order": "a: !!foo 1\nb: .nan\nb: 2\n<<: x\n? [c]\n: d\ne: 99999999999999999999\n",
    "problems in a list": "a: [1, !!foo x, .inf, {b: 1, b: 2}]\n",
    "sequence of mappings": "a:\n  - b: 1\n    c: [x, y]\n  - {d: 2}\n  -\n  - - e\n",
}


@pytest.mark.parametrize("fm_text", list(TRICKY.values()), ids=list(TRICKY))
def test_tricky_cases_answer_the_same(fm_text: str) -> None:
    assert_same(fm_text)


def test_pure_python_parser_answers_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where PyYAML is built without libyaml, both readers use its pure-Python parser."""
    monkeypatch.setattr(parse, "_Parser", yaml.SafeLoader)
    for fm_text in TRICKY.values():
        expected = answer_of(reference_load(fm_text, loader=yaml.SafeLoader))
        assert answer_of(load_frontmatter("p", fm_text)) == expected, fm_text


def test_depth_limit_is_where_it_was() -> None:
    for flow in (False, True):
        assert not isinstance(assert_same(nested(MAX_DEPTH, flow)), list)
        answer = assert_same(nested(MAX_DEPTH + 1, flow))
        assert isinstance(answer, list)
        assert [code for _, _, code, _ in answer] == ["too-deep"]


def test_empty_int_and_float_tags_are_refused_not_a_crash() -> None:
    """The compose-based reader raised IndexError on ``!!int`` with no digits; now a diagnostic."""
    for text, message in [
        ("a: !!int\n", "'' is not an integer; drop the !!int tag"),
        ("a: !!int _\n", "'_' is not an integer; drop the !!int tag"),
        ("a: !!float ''\n", "'' is not a number; drop the !!float tag"),
    ]:
        assert assert_same(text) == [(2, 4, "tag", message)]


TOKENS = [
    "a", "b", "1", '"1"', "'x'", ": ", ":", "- ", "-", "? ", "[", "]", "{", "}", ", ", "\n", "\n  ", "\n    ",
    "# c", "&a ", "*a", "!!str ", "!!int ", "!!float ", "!!map ", "!!seq ", "!x ", "! ", "<<", "~", "null",
    "yes", ".nan", "0x1F", "1_0", "2026-01-05", "12:30", "99999999999999999999", "|", ">", "--- ", "...", "é",
]  # fmt: skip
yamlish = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@settings(max_examples=400, deadline=timedelta(seconds=2), database=None, suppress_health_check=[HealthCheck.too_slow])
@given(yamlish)
def test_yamlish_text_answers_the_same(text: str) -> None:
    assert_same(text)


@settings(max_examples=200, deadline=timedelta(seconds=2), database=None, suppress_health_check=[HealthCheck.too_slow])
@given(yamlish)
def test_yamlish_values_under_a_story_answer_the_same(text: str) -> None:
    assert_same("id: WEB-1\ntitle: T\nx: " + text.replace("\n", "\n  ") + "\ny: 1\n")
