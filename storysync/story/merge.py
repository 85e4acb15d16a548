"""Three-way merge of a story, field by field (SPEC §11).  Pure: no I/O.

``merge`` merges parsed values (sync and export use it in the database's terms);
``merge_files`` merges three story files' bytes for ``storysync merge-driver``.

``merge(base, ours, theirs)`` takes three versions of one story (frontmatter values
and body) and gives the merged story:

* a frontmatter key changed on one side only takes that side's value (a removed key
  stays removed);
* ``tags`` and ``depends_on`` changed on both sides merge as sets: every entry either
  side added is in, every entry either side removed is out, the rest stays, in
  ``ours``' order followed by ``theirs``' new entries;
* the body merges as text, diff3-style, line by line; hunks that overlap (or touch)
  are a conflict;
* a field changed differently on both sides is a conflict: the result keeps ``ours``
  (the winning side: the file on sync and export) and the conflict keeps ``theirs``.

The diff3 is a small one over ``difflib`` (the sync-region algorithm of GNU diff3 and
of the ``merge3`` package, which is GPL-licensed and so not a dependency of this MIT
package).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storysync.story.model import Location, Story
from storysync.story.parse import load_frontmatter, parse_story
from storysync.story.render import REMOVE, Parts, clean_frontmatter, splice, split_parts

BODY = "body"
SET_KEYS = ("tags", "depends_on")


class _Missing:
    """A key that one version does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Version:
    """One version of a story: its frontmatter values and its body."""

    frontmatter: Mapping[str, Any]
    body: str | None  # None: not known (only a base's)


@dataclass(frozen=True)
class FieldConflict:
    """A field both sides changed differently: ``ours`` won, ``theirs`` is kept here."""

    field: str
    base: Any
    ours: Any
    theirs: Any


@dataclass
class Merged:
    """The merged story, the fields that took a change from ``theirs``, and the conflicts."""

    frontmatter: dict[str, Any]
    body: str
    merged: list[str] = field(default_factory=list)
    conflicts: list[FieldConflict] = field(default_factory=list)

    @property
    def conflicting(self) -> list[str]:
        return [c.field for c in self.conflicts]


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values (``True`` is not ``1``; a missing key equals only a missing key)."""
    if a is MISSING or b is MISSING:
        return a is b
    return _key(a) == _key(b)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def merge(base: Version, ours: Version, theirs: Version) -> Merged:
    """``ours`` and ``theirs`` merged over ``base``; ``ours`` wins where both changed a field."""
    out = Merged({}, ours.body or "")
    keys = list(dict.fromkeys([*ours.frontmatter, *theirs.frontmatter, *base.frontmatter]))
    for key in keys:
        b, o, t = (v.frontmatter.get(key, MISSING) for v in (base, ours, theirs))
        value = _merge_field(key, b, o, t, out)
        if value is not MISSING:
            out.frontmatter[key] = value
    assert ours.body is not None
    assert theirs.body is not None
    if base.body is None:  # an unknown base: only agreeing bodies merge
        body = ours.body if ours.body == theirs.body else None
    else:
        body = merge_text(base.body, ours.body, theirs.body)
    if body is None:
        out.conflicts.append(FieldConflict(BODY, base.body, ours.body, theirs.body))
    else:
        out.body = body
        if body != ours.body:
            out.merged.append(BODY)
    return out


def _merge_field(key: str, b: Any, o: Any, t: Any, out: Merged) -> Any:
    if same(o, t) or same(b, t):
        return o
    if same(b, o):
        out.merged.append(key)
        return t
    if key in SET_KEYS:
        merged = merge_set(b, o, t)
        if merged is not None:
            if not same(merged, o):
                out.merged.append(key)
            return merged
    out.conflicts.append(FieldConflict(key, b, o, t))
    return o


def _entries(value: Any) -> list[Any] | None:
    """A list value's entries (a missing key or null is no entries); None if not a list."""
    if value is MISSING or value is None:
        return []
    return list(value) if isinstance(value, list) else None


def merge_set(base: Any, ours: Any, theirs: Any) -> Any:
    """Two list edits merged as set edits, or None when a side is not a list."""
    b, o, t = _entries(base), _entries(ours), _entries(theirs)
    if b is None or o is None or t is None:
        return None
    b_keys, o_keys, t_keys = ({_key(x) for x in v} for v in (b, o, t))
    removed = (b_keys - o_keys) | (b_keys - t_keys)
    result: list[Any] = []
    seen: set[str] = set()
    for entry in [*o, *t]:
        k = _key(entry)
        if k not in removed and k not in seen:
            seen.add(k)
            result.append(entry)
    if not result and not isinstance(ours, list):
        return ours  # nothing left: keep ours' way of writing "none" (absent or null)
    return result


def changed_fields(base: Version, merged: Merged) -> list[str]:
    """The fields whose merged value differs from the base (the body as ``body``)."""
    keys = dict.fromkeys([*merged.frontmatter, *base.frontmatter])
    changed = [k for k in keys if not same(merged.frontmatter.get(k, MISSING), base.frontmatter.get(k, MISSING))]
    return changed + ([BODY] if base.body is not None and merged.body != base.body else [])


# ---------------------------------------------------------------- a story as the database keeps it

# The row's fields that make up a story (SPEC §4), each a key of a ``Version`` as the
# database sees it: ``backlog`` for ``backlog_id``, ``extra``'s keys at the top level.
ROW_FIELDS = ("title", "status", "priority", "points", "epic", "assignee")


def body_sha(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8", errors="surrogatepass")).hexdigest()


def base_of(values: Mapping[str, Any], depends_on: Iterable[str]) -> dict[str, Any]:
    """What ``stories.base`` keeps of a row (or of the file it was synced from): every
    field, and the body's sha256 (``body_sha``), not the body: the row holds that body
    until a writer changes it, and the writer then keeps it here (``keep_base_body``)."""
    base = {k: values.get(k) for k in ROW_FIELDS}
    base["backlog_id"] = values.get("backlog_id")
    base["tags"] = list(values.get("tags") or [])
    base["extra"] = dict(values.get("extra") or {})
    base["depends_on"] = sorted(set(depends_on))
    base["body_sha"] = body_sha(values.get("body") or "")
    return base


def keep_base_body(base: Any, old_body: str) -> dict[str, Any] | None:
    """``base`` with the body it stands for, when a writer is about to replace ``old_body``
    (the row's body) and the base has only its hash; None when nothing needs keeping."""
    if not isinstance(base, dict) or "body" in base or base.get("body_sha") != body_sha(old_body):
        return None
    return {**base, "body": old_body}


def base_version(base: Mapping[str, Any], file_body: str, db_body: str) -> Version:
    """A stored base as a ``Version``.  Its body is the kept one, or whichever side's body
    still has the base's hash; if neither (a writer outside storysync changed the body
    without keeping it) it is unknown (None), and a body both sides changed is a conflict."""
    body = base.get("body")
    if body is None:
        sha = base.get("body_sha")
        body = next((b for b in (file_body, db_body) if body_sha(b) == sha), None)
    version = version_of(base)
    return Version(version.frontmatter, body)


def version_of(values: Mapping[str, Any], depends_on: Iterable[str] | None = None) -> Version:
    """A row (``stories`` columns) or a stored base as a ``Version`` to merge; ``depends_on``
    from the dependencies table for a row, from the base itself for a base."""
    fm: dict[str, Any] = {k: values.get(k) for k in ROW_FIELDS}
    fm["backlog"] = values.get("backlog_id")
    fm["tags"] = list(values.get("tags") or [])
    fm["depends_on"] = sorted(set(values.get("depends_on") or [] if depends_on is None else depends_on))
    for key, value in (values.get("extra") or {}).items():
        fm.setdefault(key, value)
    return Version(fm, values.get("body") or "")


def row_values(version: Version) -> dict[str, Any]:
    """A merged ``Version`` back as ``stories`` columns, with its ``depends_on``."""
    fm = version.frontmatter
    values: dict[str, Any] = {k: fm.get(k) for k in ROW_FIELDS}
    values["backlog_id"] = fm.get("backlog")
    values["tags"] = list(fm.get("tags") or [])
    values["extra"] = {k: v for k, v in fm.items() if k not in (*ROW_FIELDS, "backlog", "tags", "depends_on")}
    values["depends_on"] = sorted(set(fm.get("depends_on") or []))
    values["body"] = version.body
    return values


# ---------------------------------------------------------------- text


@dataclass(frozen=True)
class Chunk:
    """A stretch of the merge: agreed lines (``ours is theirs``) or a conflict."""

    base: Sequence[str]
    ours: Sequence[str]
    theirs: Sequence[str]

    @property
    def conflict(self) -> bool:
        return self.ours is not self.theirs


def lines(text: str) -> list[str]:
    """``text`` split into lines, each with its line ending (joined back byte for byte)."""
    return text.splitlines(keepends=True)


def _matches(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int, int]]:
    return [tuple(m) for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()]  # type: ignore[misc]


def _sync_regions(base: Sequence[str], ours: Sequence[str], theirs: Sequence[str]) -> Iterator[tuple[int, ...]]:
    """Stretches of ``base`` that both sides kept: (base_start, base_end, ours_start, theirs_start)."""
    am, bm = _matches(base, ours), _matches(base, theirs)
    ia = ib = 0
    while ia < len(am) and ib < len(bm):
        abase, amatch, alen = am[ia]
        bbase, bmatch, blen = bm[ib]
        start, end = max(abase, bbase), min(abase + alen, bbase + blen)
        if start < end:
            yield start, end, amatch + start - abase, bmatch + start - bbase
        if abase + alen < bbase + blen:
            ia += 1
        else:
            ib += 1
    yield len(base), len(base), len(ours), len(theirs)


def chunks(base: Sequence[str], ours: Sequence[str], theirs: Sequence[str]) -> Iterator[Chunk]:
    """The diff3 of three line lists: agreed chunks and conflicting ones, in order."""
    z = zo = zt = 0
    for start, end, o_start, t_start in _sync_regions(base, ours, theirs):
        b_part, o_part, t_part = base[z:start], ours[zo:o_start], theirs[zt:t_start]
        if o_part or t_part or b_part:
            if list(o_part) == list(t_part) or list(t_part) == list(b_part):
                yield Chunk(b_part, o_part, o_part)
            elif list(o_part) == list(b_part):
                yield Chunk(b_part, t_part, t_part)
            else:
                yield Chunk(b_part, o_part, t_part)
        if end > start:
            same_part = base[start:end]
            yield Chunk(same_part, same_part, same_part)
        z, zo, zt = end, o_start + end - start, t_start + end - start


def merge_text(base: str, ours: str, theirs: str) -> str | None:
    """The three-way merge of a text, or None where both sides changed overlapping lines."""
    if ours == theirs or theirs == base:
        return ours
    if ours == base:
        return theirs
    out: list[str] = []
    for chunk in chunks(lines(base), lines(ours), lines(theirs)):
        if chunk.conflict:
            return None
        out.extend(chunk.ours)
    return "".join(out)


def with_markers(base: str, ours: str, theirs: str, labels: tuple[str, str, str], eol: str = "\n") -> str:
    """The merged text with git's diff3-style conflict markers around every conflicting
    hunk; ``labels`` name ours, base and theirs."""
    out: list[str] = []
    for chunk in chunks(lines(base), lines(ours), lines(theirs)):
        if not chunk.conflict:
            out.extend(chunk.ours)
            continue
        out += [f"<<<<<<< {labels[0]}{eol}", *_closed(chunk.ours, eol)]
        out += [f"||||||| {labels[1]}{eol}", *_closed(chunk.base, eol)]
        out += [f"======={eol}", *_closed(chunk.theirs, eol), f">>>>>>> {labels[2]}{eol}"]
    return "".join(out)


def _closed(part: Sequence[str], eol: str) -> list[str]:
    """A hunk's lines with the last one ended, so a marker line starts a line."""
    if part and not part[-1].endswith(("\n", "\r")):
        return [*part[:-1], part[-1] + eol]
    return list(part)


# ---------------------------------------------------------------- story files (the git merge driver)


@dataclass(frozen=True)
class FileMerge:
    """A story file merged from three versions: its bytes, and whether markers were left."""

    data: bytes
    conflicts: list[str]  # the fields left with conflict markers ("body" for the body)
    story: Story | None  # the merged story when it is clean (None: markers, or not a story)


def merge_files(location: Location, base: bytes, ours: bytes, theirs: bytes, labels: tuple[str, str, str]) -> FileMerge:
    """Three versions of a story file merged field by field onto ``ours`` (its key order,
    comments and quoting kept; only merged values change), the body as text.  A field
    both sides changed differently gets git's conflict markers around its lines; a side
    that is not a story file gives git's plain line merge of the whole file."""
    stories = [parse_story(location, data) for data in (base, ours, theirs)]
    if not all(isinstance(s, Story) for s in stories):
        return merge_plain(base, ours, theirs, labels)
    b, o, t = (s for s in stories if isinstance(s, Story))
    result = merge(Version(b.frontmatter, b.body), Version(o.frontmatter, o.body), Version(t.frontmatter, t.body))
    parts = split_parts(ours)
    conflicted = [c for c in result.conflicts if c.field != BODY]

    def onto_ours(pick: str) -> str | None:
        wanted = dict(result.frontmatter)
        for c in conflicted:
            value = getattr(c, pick)
            wanted.pop(c.field, None)
            if value is not MISSING:
                wanted[c.field] = value
        return _frontmatter_onto(o.frontmatter, parts.frontmatter, wanted, parts.eol)

    texts = [onto_ours(pick) for pick in ("base", "ours", "theirs")]
    if any(text is None for text in texts):
        return merge_plain(base, ours, theirs, labels)
    fb, fo, ft = (text or "" for text in texts)
    frontmatter = with_markers(fb, fo, ft, labels, parts.eol) if conflicted else fo
    body_conflict = any(c.field == BODY for c in result.conflicts)
    body = with_markers(b.body, o.body, t.body, labels, parts.eol) if body_conflict else result.body
    data = Parts(parts.bom, parts.head, frontmatter, parts.closing, body).join()
    merged = None if result.conflicts else parse_story(location, data)
    return FileMerge(data, result.conflicting, merged if isinstance(merged, Story) else None)


def _frontmatter_onto(have: Mapping[str, Any], fm_text: str, wanted: Mapping[str, Any], eol: str) -> str | None:
    """``fm_text`` (holding ``have``) with only the keys whose values differ from ``wanted``
    changed, added or removed; checked to read back as ``wanted``."""
    edits: dict[str, Any] = {k: v for k, v in wanted.items() if not same(have.get(k, MISSING), v)}
    edits |= {k: REMOVE for k in have if k not in wanted}
    out = splice(fm_text, edits, eol) if edits else fm_text
    if out is None:
        out = clean_frontmatter(
            [(k, wanted[k]) for k in have if k in wanted] + [(k, v) for k, v in wanted.items() if k not in have], eol
        )
    loaded = load_frontmatter("", out)
    return out if not isinstance(loaded, list) and same(loaded[0], dict(wanted)) else None


def merge_plain(base: bytes, ours: bytes, theirs: bytes, labels: tuple[str, str, str]) -> FileMerge:
    """Git's own line merge of the whole file (with markers where lines overlap)."""
    b, o, t = (data.decode("utf-8", errors="surrogateescape") for data in (base, ours, theirs))
    clean = merge_text(b, o, t)
    text = clean if clean is not None else with_markers(b, o, t, labels)
    return FileMerge(text.encode("utf-8", errors="surrogateescape"), [] if clean is not None else ["file"], None)
