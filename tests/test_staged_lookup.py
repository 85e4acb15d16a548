"""``validate --staged`` asks git for the ids it needs instead of listing the whole index.

Each test builds a real repository and compares the hook's report with the one
built from the whole index listing (``validate_paths`` over the index without its
``named`` lookups, so ``SourceKnown`` lists every entry and groups the names),
and checks the exact diagnostics for the tricky cases: ids that differ only in
case or Unicode form, names with glob characters, a root with glob characters,
dependency chains through unstaged stories deeper than the batched walk.  A
commit's tree is searched the same way (``GitTreeSource.named``, for the tree an
``export --commit`` leaves) and compared with the tree listed whole.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from storysync.check import index as staged
from storysync.check.index import IndexSource, validate_index
from storysync.check.sources import Entry, GitTreeSource, RawListing, WorkTreeSource
from storysync.check.validate import validate_paths
from storysync.config import load_config
from storysync.errors import Diagnostic
from storysync.git.runner import open_repo
from tests.conftest import Repo, story_text


class Listed:
    """The index or a commit's tree as a plain ``Source``: listed whole, never asked for names."""

    label = "listed"

    def __init__(self, source: IndexSource | GitTreeSource | WorkTreeSource) -> None:
        self.source = source

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        return self.source.entries(paths)

    def read(self, entry: Entry) -> bytes | Diagnostic:
        return self.source.read(entry)

    def read_many(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
        return self.source.read_many(entries)


def _both(repo: Repo, paths: list[str]) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """The hook's diagnostics for ``paths``, and those from the whole index listing."""
    config = load_config(repo.path)
    source = IndexSource(config)
    try:
        looked_up, _ = validate_index(config, source, paths)
    finally:
        source.close()
    listed = IndexSource(config)
    try:
        whole = validate_paths(config, Listed(listed), paths).diagnostics
    finally:
        listed.close()
    return looked_up, whole


def _index_stories(repo: Repo) -> list[str]:
    return [p for p in repo.git("ls-files", "-z").split("\0") if p.endswith(".md") and p.count("/") == 2]


def _messages(diags: list[Diagnostic], path: str) -> list[str]:
    return [f"{d.code}: {d.message}" for d in diags if d.path == path]


@pytest.fixture
def tricky(repo: Repo) -> Repo:
    """Ids differing in case and Unicode form, odd names, a cycle deeper than the batched walk."""
    repo.story("backlog", "web", "WEB-1", "login", title="Login", depends_on=["API-1", "NOPE-1", "web-9"])
    repo.story("backlog", "api", "API-1", "auth", title="Auth")
    repo.write("active/web/web-1-lower.md", story_text("WEB-1", title="Same id, other case"))
    repo.story("backlog", "web", "WEB-2", "x", title="Two")
    repo.write("refinements/web/\uff37\uff25\uff22-2-wide.md", story_text("WEB-2", title="Fullwidth name"))
    repo.story("backlog", "ops", "OPS-3", "plain", title="Three")
    repo.write("completed/ops/O\uff30S-3-mixed.md", story_text("OPS-3", title="One fullwidth letter inside"))
    repo.write("completed/ops/OPS-4.md", story_text("OPS-4", title="No slug"))
    repo.story("backlog", "ops", "OPS-5", "caf\u00e9", title="Non-ASCII slug", depends_on=["OPS-4"])
    repo.write("backlog/web/extra/WEB-9-deep.md", story_text("WEB-9", title="Not at story depth"))
    repo.write("backlog/web/README.md", "# not a story\n")
    repo.story("backlog", "glob", "G-1", "star", title="Glob deps", depends_on=['"G-*"', '"G-[12]"', '"G-?"'])
    repo.story("backlog", "glob", "G-2", "two", title="Two")
    chain = [f"CH-{i}" for i in range(1, 13)]
    for i, sid in enumerate(chain):
        repo.story("backlog", "chain", sid, "link", title=sid, depends_on=[chain[(i + 1) % len(chain)]])
    repo.story("backlog", "loop", "X-1", "a", title="A", depends_on=["X-2"])
    repo.story("active", "loop", "X-2", "b", title="B", depends_on=["X-1", "OPS-4"])
    repo.commit("stories")
    return repo


@pytest.mark.parametrize(("rounds", "walk_by_listing"), [(0, True), (1, True), (1, False), (100, False)])
def test_every_story_alone_reports_as_the_whole_index_does(
    tricky: Repo, rounds: int, walk_by_listing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looked up by pathspec queries, by searching one listing, or first one then the other."""
    monkeypatch.setattr(staged, "LOOKUP_ROUNDS", rounds)
    monkeypatch.setattr(staged, "WALK_BY_LISTING", walk_by_listing)
    for path in _index_stories(tricky):
        looked_up, whole = _both(tricky, [path])
        assert looked_up == whole, path


def test_many_stories_at_once_report_as_the_whole_index_does(tricky: Repo) -> None:
    paths = _index_stories(tricky)
    looked_up, whole = _both(tricky, paths[::2])
    assert looked_up == whole
    assert looked_up


def test_ids_that_differ_only_in_case_or_unicode_form_are_duplicates(tricky: Repo) -> None:
    diags, _ = _both(tricky, ["backlog/web/WEB-1-login.md", "backlog/web/WEB-2-x.md", "backlog/ops/OPS-3-plain.md"])
    other_form = "which differs only in case or Unicode form); ids are unique across all backlogs"
    assert f"duplicate-id: id 'WEB-1' is already used by active/web/web-1-lower.md (id 'web-1', {other_form}" in (
        _messages(diags, "backlog/web/WEB-1-login.md")
    )
    wide = "refinements/web/\uff37\uff25\uff22-2-wide.md"
    assert _messages(diags, "backlog/web/WEB-2-x.md") == [
        f"duplicate-id: id 'WEB-2' is already used by {wide} (id '\uff37\uff25\uff22-2', {other_form}"
    ]
    mixed = "completed/ops/O\uff30S-3-mixed.md"
    assert _messages(diags, "backlog/ops/OPS-3-plain.md") == [
        f"duplicate-id: id 'OPS-3' is already used by {mixed} (id 'O\uff30S-3', {other_form}"
    ]


def test_the_same_id_exactly_is_named_as_the_same_id(repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "one", title="One")
    repo.story("active", "api", "WEB-1", "two", title="Two")
    repo.commit("two files, one id")
    diags, whole = _both(repo, ["backlog/web/WEB-1-one.md"])
    assert diags == whole
    assert _messages(diags, "backlog/web/WEB-1-one.md") == [
        "duplicate-id: id 'WEB-1' is already used by active/api/WEB-1-two.md (the same id); "
        "ids are unique across all backlogs"
    ]


def test_unknown_targets_and_look_alikes_are_missing_dependencies(tricky: Repo) -> None:
    diags, _ = _both(tricky, ["backlog/web/WEB-1-login.md", "backlog/glob/G-1-star.md"])
    web = _messages(diags, "backlog/web/WEB-1-login.md")
    assert "missing-dependency: depends_on: no story has id 'NOPE-1'" in web
    assert "missing-dependency: depends_on: no story has id 'web-9'" in web  # only a case-folded name, deeper
    assert "missing-dependency: depends_on: no story has id 'API-1'" not in web
    globs = _messages(diags, "backlog/glob/G-1-star.md")
    for dep in ("G-*", "G-[12]", "G-?"):  # glob characters in an id match nothing but themselves
        assert f"missing-dependency: depends_on: no story has id {dep!r}" in globs


@pytest.mark.parametrize(("rounds", "walk_by_listing"), [(1, True), (0, False), (3, False), (100, False)])
def test_a_cycle_through_unstaged_stories_deeper_than_the_batched_walk(
    tricky: Repo, rounds: int, walk_by_listing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many pathspec rounds come before the listing is searched instead."""
    monkeypatch.setattr(staged, "LOOKUP_ROUNDS", rounds)
    monkeypatch.setattr(staged, "WALK_BY_LISTING", walk_by_listing)
    path = "backlog/chain/CH-1-link.md"
    tricky.story("backlog", "chain", "CH-1", "link", title="Edited", depends_on=["CH-2"])
    tricky.git("add", path)
    code = tricky.run("validate", "--staged")
    assert code == 1
    diags, whole = _both(tricky, [path])
    assert diags == whole
    chain = " -> ".join([f"CH-{i}" for i in range(1, 13)] + ["CH-1"])  # in dependency order
    assert _messages(diags, path) == [f"dependency-cycle: depends_on: dependency cycle {chain}"]


def test_a_cycle_through_a_staged_and_an_unstaged_story(tricky: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    tricky.story("backlog", "loop", "X-1", "a", title="A, edited", depends_on=["X-2"])
    tricky.git("add", "-A")
    assert tricky.run("validate", "--staged") == 1
    out = capsys.readouterr().out
    assert "backlog/loop/X-1-a.md:" in out
    assert "dependency cycle X-1 -> X-2 -> X-1" in out
    assert "active/loop/X-2-b.md" not in out  # the unstaged member is not reported, as before


def test_a_root_with_glob_characters(repo: Repo) -> None:
    repo.write("storysync.toml", 'root = "my [stories]*"\n')
    root = "my [stories]*"
    repo.write(f"{root}/backlog/web/WEB-1-a.md", story_text("WEB-1", title="A", depends_on=["WEB-2", "WEB-3"]))
    repo.write(f"{root}/active/web/WEB-2-b.md", story_text("WEB-2", title="B"))
    repo.write(f"{root}/active/api/web-1-c.md", story_text("WEB-1", title="C"))
    repo.write("my [stories]x/active/web/WEB-3-d.md", story_text("WEB-3", title="Outside the root"))
    repo.commit("rooted")
    path = f"{root}/backlog/web/WEB-1-a.md"
    diags, whole = _both(repo, [path])
    assert diags == whole
    messages = _messages(diags, path)
    assert "missing-dependency: depends_on: no story has id 'WEB-3'" in messages
    assert not any("'WEB-2'" in m for m in messages)
    assert any(m.startswith("duplicate-id:") and f"{root}/active/api/web-1-c.md" in m for m in messages)


def test_pathspec_settings_in_the_environment_change_nothing(
    tricky: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = "backlog/web/WEB-2-x.md"
    expected = tricky.run("validate", "--staged", path), capsys.readouterr().out
    assert "is already used by" in expected[1]
    for var in ("GIT_LITERAL_PATHSPECS", "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS", "GIT_GLOB_PATHSPECS"):
        monkeypatch.setenv(var, "1")
        assert (tricky.run("validate", "--staged", path), capsys.readouterr().out) == expected, var
        monkeypatch.delenv(var)


def test_staged_files_come_from_the_index_diff_with_their_blobs(
    tricky: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    tricky.story("backlog", "web", "WEB-7", "new", title="New", depends_on=["WEB-2"])
    (tricky.path / "active" / "ops").mkdir()
    tricky.git("mv", "backlog/ops/OPS-3-plain.md", "active/ops/OPS-3-plain.md")
    tricky.write("backlog/web/WEB-8-later.md", story_text("WEB-8", title="Staged, then edited on disk"))
    tricky.git("add", "-A")
    tricky.write("backlog/web/WEB-8-later.md", story_text("WEB-8", title="", points=-1))  # not staged
    subprocess.run(["git", "rm", "-q", "--cached", "completed/ops/OPS-4.md"], cwd=tricky.path, check=True)
    assert tricky.run("validate", "--staged", "--format", "json") == 1
    report = capsys.readouterr().out
    assert '"files": 5' in report  # WEB-7, WEB-8, the moved OPS-3, and the two stories depending on OPS-4
    assert "WEB-8" not in report  # its staged version is valid
    assert "active/ops/OPS-3-plain.md" in report  # still a duplicate of the fullwidth-lettered name
    for dependent in ("backlog/ops/OPS-5-caf\u00e9.md", "active/loop/X-2-b.md"):  # OPS-4 is removed
        assert f'"path": "{dependent}"' in report
    assert report.count("no story has id 'OPS-4'") == 2
    config = load_config(tricky.path)
    source = IndexSource(config)
    try:
        assert sorted(source.staged()) == [
            "active/ops/OPS-3-plain.md",
            "backlog/web/WEB-7-new.md",
            "backlog/web/WEB-8-later.md",
        ]
    finally:
        source.close()


def test_a_submodule_at_a_story_path_is_skipped_as_sync_skips_it(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gitlink (a submodule's commit) named like a story is not a file to read: the
    hook no longer fails on it (it blocked every commit), and sync still passes it by."""
    head = backlog_repo.git("rev-parse", "HEAD").strip()
    backlog_repo.git("update-index", "--add", "--cacheinfo", f"160000,{head},backlog/web/WEB-9-sub.md")
    backlog_repo.story("backlog", "web", "WEB-3", "new", title="New")
    backlog_repo.git("add", "backlog/web/WEB-3-new.md")
    assert backlog_repo.run("validate", "--staged") == 0
    assert "1 story file valid" in capsys.readouterr().err
    backlog_repo.git("commit", "-q", "-m", "a submodule where a story could be")
    assert backlog_repo.run("-q", "sync") == 0
    assert backlog_repo.run("show", "WEB-9") != 0


# --- the same search over a commit's tree (export --commit checks the tree it leaves) ---------


def _both_in_commit(repo: Repo, paths: list[str]) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """``paths`` checked against HEAD's tree searched by name, and against it listed whole."""
    config = load_config(repo.path)
    head = repo.git("rev-parse", "HEAD")
    git = open_repo(repo.path)
    named = validate_paths(config, GitTreeSource(git, config, head), paths).diagnostics
    whole = validate_paths(config, Listed(GitTreeSource(git, config, head)), paths).diagnostics
    return named, whole


def test_a_commit_searched_by_name_reports_as_its_whole_tree_does(tricky: Repo) -> None:
    paths = _index_stories(tricky)
    for path in paths:
        named, whole = _both_in_commit(tricky, [path])
        assert named == whole, path
    named, whole = _both_in_commit(tricky, paths[::2])
    assert named == whole
    assert any(d.code == "duplicate-id" for d in named)
    assert any(d.code == "dependency-cycle" for d in named)


def test_a_commit_s_deep_cycle_and_a_glob_root_are_found_by_name(repo: Repo) -> None:
    root = "my [stories]*"
    repo.write("storysync.toml", f'root = "{root}"\n')
    chain = [f"CH-{i}" for i in range(1, 40)]
    for i, sid in enumerate(chain):
        repo.write(f"{root}/backlog/c/{sid}-x.md", story_text(sid, title=sid, depends_on=[chain[(i + 1) % len(chain)]]))
    repo.write(f"{root}/active/api/ch-1-again.md", story_text("CH-1", title="Other case"))
    repo.write("my [stories]x/active/web/CH-2-outside.md", story_text("CH-2", title="Outside the root"))
    repo.commit("a long cycle")
    path = f"{root}/backlog/c/CH-1-x.md"
    named, whole = _both_in_commit(repo, [path])
    assert named == whole
    codes = sorted(d.code for d in named)
    assert codes == ["dependency-cycle", "duplicate-id"]


def test_a_commit_s_oversized_file_and_symlink_found_by_name_are_refused_as_listed(repo: Repo) -> None:
    """The search lists the tree without sizes (git opens no blob); a file it finds is
    refused by the size it reads with, as the whole listing refuses it by the listed one."""
    repo.story("backlog", "web", "WEB-1", "login", title="Login", depends_on=["WEB-2", "WEB-3"])
    repo.write("backlog/web/WEB-2-huge.md", story_text("WEB-2", title="Huge", body="x" * (1024 * 1024 + 1)))
    (repo.path / "backlog/web/WEB-3-link.md").symlink_to("WEB-1-login.md")
    repo.commit("an oversized story, a symlink")
    for paths in (["backlog/web/WEB-1-login.md"], _index_stories(repo)):
        named, whole = _both_in_commit(repo, paths)
        assert named == whole
    named, _ = _both_in_commit(repo, _index_stories(repo))
    assert {d.code for d in named} >= {"file-too-large", "symlink"}
    config, git, head = load_config(repo.path), open_repo(repo.path), repo.git("rev-parse", "HEAD")
    searched, listed = GitTreeSource(git, config, head), GitTreeSource(git, config, head)
    found = searched.named(["web-2", "web-3"])
    read = [data for _, data in searched.read_many(searched.entries(found))]
    assert read == [data for e, data in listed.read_many(listed.entries()) if e.location.path in found]
    assert [d.code for d in read if isinstance(d, Diagnostic)] == ["file-too-large", "symlink"]


_NAMES = [
    "backlog/web/WEB-1-login.md",
    "backlog/web/web-12.md",
    "backlog/web/WEB-12-3-dashed.md",
    "backlog/web/WEB-1a-not-an-id.md",
    "backlog/web/AB-CD-12-two-dashes.md",
    "backlog/web/WEB-7-.md",
    "backlog/web/WEB-8..md",
    "backlog/web/WEB-10",
    "backlog/web/-WEB-11-leading-dash.md",
    "backlog/web/W9X-40.draft.md",
    "backlog/web/\u00dcber-9-umlaut.md",
    "backlog/web-5/WEB-5-under-an-id-shaped-directory.md",
    "backlog/web-6.d/README.md",
    "active/api/API-1-auth.md",
    "active/api/api-1-again.md",
]


def test_an_index_of_every_name_finds_what_the_scan_finds(repo: Repo) -> None:
    """Many ids (an ``export --commit`` of 1,000 stories) are looked up in an index of every
    name's id, a few by one scan; both find the same records, odd names included."""
    for name in _NAMES:
        repo.write(name, "x\n")
    repo.commit("odd names")
    raw = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=repo.path, capture_output=True, check=True).stdout
    keys = [
        "web-1", "web-12", "web-1a", "ab-cd-12", "cd-12", "web-7", "web-8", "web-10",
        "web-11", "w9x-40", "web-5", "web-6", "api-1", "nope-3", "ber-9", "backlog-1",
    ]  # fmt: skip
    shaped = [k for k in keys if k not in ("web-1a", "ab-cd-12", "backlog-1") and "-" in k]
    for chosen in [keys, shaped, ["web-1"], ["web-12", "api-1"], []]:
        listing = RawListing(raw)
        scanned = listing.named(chosen)  # few keys: the scan
        listing.by_index([])  # the index built: from now on it answers the id-shaped keys
        assert listing.named(chosen) == scanned
        assert listing.by_index([k for k in chosen if k in shaped]) == listing.by_scan(
            [k for k in chosen if k in shaped]
        )
    found = {r.split("\t", 1)[1] for r in RawListing(raw).named(keys)}
    assert found == {
        "backlog/web/WEB-1-login.md", "backlog/web/web-12.md", "backlog/web/WEB-12-3-dashed.md",
        "backlog/web/WEB-1a-not-an-id.md", "backlog/web/AB-CD-12-two-dashes.md", "backlog/web/WEB-7-.md",
        "backlog/web/WEB-8..md", "backlog/web/W9X-40.draft.md", "backlog/web/\u00dcber-9-umlaut.md",
        "backlog/web-5/WEB-5-under-an-id-shaped-directory.md", "active/api/API-1-auth.md",
        "active/api/api-1-again.md",
    }  # fmt: skip


def _both_on_disk(repo: Repo, paths: list[str]) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """``paths`` checked against the working tree searched by name, and listed whole."""
    config = load_config(repo.path)
    named = validate_paths(config, WorkTreeSource(config), paths).diagnostics
    whole = validate_paths(config, Listed(WorkTreeSource(config)), paths).diagnostics
    return named, whole


def test_the_working_tree_searched_by_name_reports_as_it_does_listed_whole(tricky: Repo, tmp_path: Path) -> None:
    """``export`` checks the tree it leaves on disk: the names are listed once (no file
    stat'ed) and searched, and the answers are those of the whole walk, with untracked
    files, a name that is not UTF-8, a symlinked backlog directory and an oversized file."""
    tricky.write("backlog/web/WEB-7-untracked.md", story_text("WEB-7", title="Untracked", depends_on=["OPS-3"]))
    tricky.write("backlog/ops/OPS-9-huge.md", story_text("OPS-9", title="Huge", body="x" * (1024 * 1024 + 1)))
    tricky.write("backlog/ops/OPS-8-deps.md", story_text("OPS-8", title="Deps", depends_on=["OPS-9", "WEB-7"]))
    odd = os.fsencode(tricky.path / "backlog" / "ops") + b"/OPS-3-\xff.md"
    with open(odd, "w", encoding="utf-8") as fh:
        fh.write(story_text("OPS-3", title="Not UTF-8"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "LNK-1-x.md").write_text(story_text("LNK-1", title="Through a link"), encoding="utf-8")
    (tricky.path / "active" / "linked").symlink_to(outside, target_is_directory=True)
    paths = sorted(
        p.relative_to(tricky.path).as_posix() for p in tricky.path.glob("*/*/*.md") if not p.parent.is_symlink()
    )
    for path in paths:
        named, whole = _both_on_disk(tricky, [path])
        assert named == whole, path
    named, whole = _both_on_disk(tricky, paths)
    assert named == whole
    assert {"duplicate-id", "dependency-cycle", "file-too-large"} <= {d.code for d in named}
