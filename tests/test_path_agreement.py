"""Every path that checks story files agrees (issue 12): the same verdict and the same
``path:line:col: message`` lines, whichever way a bad file or a bad repository state
meets storysync.

The cases are every bad-input kind of the corpus (``tests/examples/invalid/`` and the
generated kinds of ``tests/test_bad_input.py``), each placed in a real git repository
over a committed, valid base, plus repository states that only a whole repository
makes bad (a deleted or moved story that another depends on, a rename that breaks the
file name's id, a repository schema).  Each case goes through:

* ``validate``: ``storysync validate`` of the work tree;
* ``staged``: ``storysync validate --staged`` after ``git add -A``, as the installed
  pre-commit shim runs it;
* ``pre-commit``: ``git commit`` through the pre-commit framework's hook, configured
  from this checkout's ``.pre-commit-hooks.yaml``;
* ``sync-full``: ``storysync sync --full`` of the commit, into a new database;
* ``sync-incremental``: the base commit synced, then ``storysync sync``;
* ``watch``: the base commit synced, then one watch batch of the changed paths;
* ``pg-full`` and ``pg-incremental``: the two syncs into a real PostgreSQL database
  (synced at the base, as a team database is).

A run that reports errors writes nothing but its ``sync_runs`` row (outcome
``invalid``, holding the reported errors).  Where an error sits at both ends of a
cross-file relation (two files with one id, a cycle through a committed story), a
path that reads only the changed files reports the changed end (``CHANGED_ONLY``).

Each case's repository is built once and every path's answer kept (the cases are
independent; the paths of one case run in the order a user meets them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import Repo, make_repo, story_text
from tests.paths import (
    DbState,
    Seen,
    cli,
    copy_sqlite,
    framework_commit,
    framework_config,
    framework_hook,
    install_framework_hook,
    sync_full,
    sync_incremental,
    validate,
    watch_batch,
)
from tests.pg import PgServer
from tests.test_bad_input import BASE, GENERATED, _path, data_kinds, expected_lines, place

# --- cases -------------------------------------------------------------------------------

Change = Callable[[Repo], list[str]]  # makes the change in the work tree; the exact lines expected
WEB1 = "backlog/web/WEB-1-login.md"
API2 = "backlog/api/API-2-auth.md"
STRICT = {
    "additionalProperties": "Additional properties are not allowed ('owner' was unexpected)",
    "unevaluatedProperties": "Unevaluated properties are not allowed ('owner' was unexpected)",
}


def base_story(repo: Repo) -> None:
    """The committed base of every case: one valid story (the corpus's expected lines name it)."""
    repo.write(BASE, story_text("API-1", title="Base story"))


def with_dependent(repo: Repo) -> None:
    """The base, and WEB-1 depending on API-1."""
    base_story(repo)
    repo.write(WEB1, story_text("WEB-1", title="Login", depends_on=["API-1"]))


def with_chain(repo: Repo) -> None:
    """The base depending on API-2."""
    repo.write(BASE, story_text("API-1", title="Base story", depends_on=["API-2"]))
    repo.write(API2, story_text("API-2", title="Auth"))


def with_status_key(repo: Repo) -> None:
    repo.write(BASE, story_text("API-1", title="Base story", status="backlog"))


def with_schema(keyword: str) -> Callable[[Repo], None]:
    """The base under a repository schema: the packaged one, closed with ``keyword``."""

    def base(repo: Repo) -> None:
        import json

        from storysync.check.schema import default_schema_path

        schema = json.loads(default_schema_path().read_text(encoding="utf-8"))
        repo.write("schemas/strict.json", json.dumps({**schema, keyword: False}, indent=2))
        repo.write("storysync.toml", 'schema = "schemas/strict.json"\n')
        base_story(repo)

    return base


def remove_depended_on(repo: Repo) -> list[str]:
    repo.git("rm", "-q", BASE)
    return [f"{WEB1}:4:14: depends_on: no story has id 'API-1'"]


def move_depended_on_to_unknown_stage(repo: Repo) -> list[str]:
    (repo.path / "archive/api").mkdir(parents=True)
    repo.git("mv", BASE, "archive/api/API-1-base.md")
    return [f"{WEB1}:4:14: depends_on: no story has id 'API-1'"]


def rename_breaking_id(repo: Repo) -> list[str]:
    repo.git("mv", BASE, "backlog/api/API-7-base.md")
    return [
        "backlog/api/API-7-base.md:2:5: id 'API-1' does not match the file name 'API-7-base.md';"
        " name the file 'API-1-<slug>.md'"
    ]


def move_against_status_key(repo: Repo) -> list[str]:
    (repo.path / "active/api").mkdir(parents=True)
    repo.git("mv", BASE, "active/api/API-1-base.md")
    return [
        "active/api/API-1-base.md:4:9: status 'backlog' disagrees with directory 'active' (status 'active');"
        " move the file or fix the status"
    ]


def close_cycle_through_committed(repo: Repo) -> list[str]:
    repo.write(API2, story_text("API-2", title="Auth", depends_on=["API-1"]))
    return [
        f"{BASE}:4:14: depends_on: dependency cycle API-1 -> API-2 -> API-1",
        f"{API2}:4:14: depends_on: dependency cycle API-1 -> API-2 -> API-1",
    ]


def depend_on_story_in_unknown_stage(repo: Repo) -> list[str]:
    repo.write("archive/web/WEB-3-old.md", story_text("WEB-3", title="Archived"))
    repo.write(WEB1, story_text("WEB-1", title="Login", depends_on=["WEB-3"]))
    return [f"{WEB1}:4:14: depends_on: no story has id 'WEB-3'"]


def broken_files_that_are_not_stories(repo: Repo) -> list[str]:
    """Other depths, unknown stages, README.md: not stories, whatever is in them (SPEC §2)."""
    broken = "---\nid: [unclosed\n"
    for rel in (
        "backlog/WEB-4-shallow.md",
        "backlog/web/deep/WEB-5-deep.md",
        "archive/web/WEB-6-unknown-stage.md",
        "backlog/web/README.md",
        "WEB-7-top.md",
    ):
        repo.write(rel, broken)
    return []


def add_owner(keyword: str) -> Change:
    def change(repo: Repo) -> list[str]:
        repo.write("backlog/web/WEB-1-owner.md", story_text("WEB-1", title="Owned", owner="Ada"))
        return [f"backlog/web/WEB-1-owner.md:4:1: frontmatter: {STRICT[keyword]}"]

    return change


BASES: dict[str, Callable[[Repo], None]] = {
    "story": base_story,
    "dependent": with_dependent,
    "chain": with_chain,
    "status-key": with_status_key,
    "closed-schema": with_schema("additionalProperties"),
    "closed-schema-2020-12": with_schema("unevaluatedProperties"),
}


@dataclass(frozen=True)
class Case:
    name: str
    change: Change
    base: str = "story"  # the committed starting point (BASES)
    two_ended: bool = False  # errors at both ends of a cross-file relation (see CHANGED_ONLY)


def _data_kind(kind: str) -> Change:
    def change(repo: Repo) -> list[str]:
        expected = expected_lines(kind)
        place(repo, kind, expected)
        return expected

    return change


TWO_ENDED_KINDS = {"duplicate-id", "case-collision", "unicode-collision"}  # the base story is the other end
STATE_CASES = [
    Case("rm-depended-on", remove_depended_on, "dependent"),
    Case("move-depended-on-to-unknown-stage", move_depended_on_to_unknown_stage, "dependent"),
    Case("rename-breaking-id", rename_breaking_id),
    Case("move-against-status-key", move_against_status_key, "status-key"),
    Case("cycle-through-committed", close_cycle_through_committed, "chain", two_ended=True),
    Case("depends-on-unknown-stage", depend_on_story_in_unknown_stage),
    Case("not-stories-ignored", broken_files_that_are_not_stories),
    Case("schema-override", add_owner("additionalProperties"), "closed-schema"),
    Case("schema-override-2020-12", add_owner("unevaluatedProperties"), "closed-schema-2020-12"),
]
CASES = [
    *(Case(kind, _data_kind(kind), two_ended=kind in TWO_ENDED_KINDS) for kind in data_kinds()),
    *(Case(kind, generate) for kind, generate in sorted(GENERATED.items())),
    *STATE_CASES,
]
BY_NAME = {case.name: case for case in CASES}

# --- paths -------------------------------------------------------------------------------

PATHS = ("validate", "staged", "pre-commit", "sync-full", "sync-incremental", "watch", "pg-full", "pg-incremental")
PG_PATHS = frozenset({"pg-full", "pg-incremental"})
CHANGED_ONLY = frozenset({"staged", "pre-commit", "sync-incremental", "watch", "pg-incremental"})
SYNC_PATHS = frozenset({"sync-full", "sync-incremental", "watch", "pg-full", "pg-incremental"})
# A commit through the pre-commit framework costs ~0.7 s (two Python processes): by
# default it runs for the cases whose files it selects differently (deletions,
# renames, symlinks, odd names, files that are not stories, cross-file errors); the
# rest with ``-m slow``.
FRAMEWORK_SAMPLE = frozenset(
    {
        *GENERATED,
        *(c.name for c in STATE_CASES),
        "duplicate-id",
        "dependency-cycle",
        "many-errors",
    }
) - {"five-mb-file", "just-over-1mib", "big-frontmatter"}

# Cells that disagree today, each with why; strict: a fixed cell fails the run until
# its mark is removed.
FRAMEWORK_NOT_UTF8 = (
    "found by this matrix: pre-commit itself cannot decode a staged file name that is not UTF-8 "
    "(UnicodeDecodeError in pre-commit): the commit is blocked, but without storysync's line"
)
KNOWN: dict[tuple[str, str], str] = {
    ("not-utf8-file-name", "pre-commit"): FRAMEWORK_NOT_UTF8,
}


# --- running a case through every path ---------------------------------------------------


@dataclass
class Template:
    """A base committed in a repository, with the framework's hook installed and the
    base synced into ``.storysync/base.db``; each case starts from a copy."""

    repo: Repo
    sha: str
    pg_url: str | None = None  # a PostgreSQL database synced at the base, while it stays so
    pg_rows: dict[str, list[str]] | None = None


@dataclass
class CaseRun:
    """One case's repository and what each path said."""

    repo: Repo
    template: Template
    expected: list[str]
    changed: set[str] = field(default_factory=set)
    seen: dict[str, Seen] = field(default_factory=dict)


class Matrix:
    """Builds each case's repository on first use and runs the selected paths over it,
    in the order a user meets them: the work tree, the index, the commit."""

    def __init__(self, factory: pytest.TempPathFactory, selected: set[tuple[str, str]]) -> None:
        self.factory = factory
        self.selected = selected
        self.env = {"PRE_COMMIT_HOME": str(factory.mktemp("pre-commit-home"))}
        self.hook: bytes | None = None
        self.templates: dict[str, Template] = {}
        self.runs: dict[str, CaseRun] = {}
        self.pg: PgServer | None = None

    def seen(self, case: Case, path: str, pg: PgServer | None) -> Seen:
        run = self.run(case)
        if path in PG_PATHS and path not in run.seen:
            assert pg is not None
            self._postgres(run, pg)
        assert path in run.seen, f"{case.name}/{path} was not selected when the case was built"
        return run.seen[path]

    def expected(self, case: Case, path: str) -> list[str]:
        run = self.run(case)
        if case.two_ended and path in CHANGED_ONLY:
            return [line for line in run.expected if _path(line) in run.changed]
        return run.expected

    def run(self, case: Case) -> CaseRun:
        if case.name not in self.runs:
            self.runs[case.name] = self._local(case)
        return self.runs[case.name]

    def _template(self, name: str) -> Template:
        if name not in self.templates:
            repo = make_repo(self.factory.mktemp(f"base-{name}") / "repo")
            repo.write(".pre-commit-config.yaml", framework_config())
            BASES[name](repo)
            sha = repo.commit("base")
            install_framework_hook(repo, self._framework_hook())
            code, out, err = cli(repo, "--db", sqlite_url(repo, "base"), "-q", "sync")
            assert code == 0, out + err
            self.templates[name] = Template(repo, sha)
        return self.templates[name]

    def _framework_hook(self) -> bytes:
        if self.hook is None:
            self.hook = framework_hook(make_repo(self.factory.mktemp("framework") / "repo"), self.env)
        return self.hook

    def _local(self, case: Case) -> CaseRun:
        template = self._template(case.base)
        repo = Repo(self.factory.mktemp(case.name) / "repo")
        shutil.copytree(template.repo.path, repo.path, symlinks=True)
        run = CaseRun(repo, template, case.change(repo))
        wanted = {path for name, path in self.selected if name == case.name}
        seen = run.seen
        if "validate" in wanted:
            seen["validate"] = attempt(validate, repo)
        repo.git("add", "-A")
        if "staged" in wanted:
            seen["staged"] = attempt(validate, repo, "--staged")
        if "pre-commit" in wanted:
            seen["pre-commit"] = attempt(framework_commit, repo, self.env)
        if repo.git("rev-parse", "HEAD") == template.sha:
            repo.git("commit", "-q", "--no-verify", "-m", "the change")
        run.changed = changed_paths(repo, template.sha)
        if "sync-full" in wanted:
            seen["sync-full"] = attempt(sync_full, repo, sqlite_url(repo, "full"))
        if "sync-incremental" in wanted:
            copy_sqlite(repo.path / ".storysync/base.db", repo.path / ".storysync/incremental.db")
            seen["sync-incremental"] = attempt(sync_incremental, repo, sqlite_url(repo, "incremental"))
        if "watch" in wanted:
            copy_sqlite(repo.path / ".storysync/base.db", repo.path / ".storysync/watch.db")
            seen["watch"] = attempt(watch_batch, repo, sqlite_url(repo, "watch"), sorted(run.changed))
        return run

    def _postgres(self, run: CaseRun, pg: PgServer) -> None:
        """Both PostgreSQL syncs, each into the template's database synced at the base
        (shared by the template's cases: a run that reported errors writes nothing; one
        that wrote leaves the next case a new database)."""
        self.pg = pg
        run.seen["pg-full"] = attempt(sync_full, run.repo, self._pg_base(run.template))
        run.seen["pg-incremental"] = attempt(sync_incremental, run.repo, self._pg_base(run.template))
        self._pg_base(run.template)

    def _pg_base(self, template: Template) -> str:
        """The URL of a PostgreSQL database synced at the template's base commit and nothing since."""
        if template.pg_url is not None and DbState.of(template.pg_url).data != template.pg_rows:
            self._drop(template)
        if template.pg_url is None:
            assert self.pg is not None
            template.pg_url = self.pg.url(self.pg.create_database())
            code, out, err = cli(template.repo, "--db", template.pg_url, "-q", "sync")
            assert code == 0, out + err
            template.pg_rows = DbState.of(template.pg_url).data
        return template.pg_url

    def _drop(self, template: Template) -> None:
        if template.pg_url is not None and self.pg is not None:
            self.pg.drop_database(template.pg_url.rsplit("/", 1)[1])
        template.pg_url = template.pg_rows = None

    def close(self) -> None:
        for template in self.templates.values():
            self._drop(template)


def sqlite_url(repo: Repo, name: str) -> str:
    return f"sqlite:///{repo.path / '.storysync' / name}.db"


def attempt(path: Callable[..., Seen], *args: object) -> Seen:
    """A path's answer; a crash is an answer too (exit -1), so that it fails only its own cell."""
    try:
        return path(*args)
    except Exception:
        return Seen(-1, (), ("crashed",), output=traceback.format_exc())


def changed_paths(repo: Repo, base: str) -> set[str]:
    """Every path the change touched (a rename: both names), as git and sync decode them."""
    done = subprocess.run(
        ["git", "diff", "--name-only", "-z", "--no-renames", base, "HEAD"],
        cwd=repo.path,
        capture_output=True,
        check=True,
    )
    return {os.fsdecode(p) for p in done.stdout.split(b"\0") if p}


def selected_cells(session: pytest.Session) -> set[tuple[str, str]]:
    """The (case, path) cells this run will test (after -k and -m)."""
    out = set()
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "case_name" in params and "path" in params:
            out.add((params["case_name"], params["path"]))
    return out


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Matrix]:
    built = Matrix(tmp_path_factory, selected_cells(request.session))
    yield built
    built.close()


def cells() -> list[object]:
    out: list[object] = []
    for case in CASES:
        for path in PATHS:
            marks = [pytest.mark.postgres] if path in PG_PATHS else []
            if path == "pre-commit" and case.name not in FRAMEWORK_SAMPLE:
                marks.append(pytest.mark.slow)
            if (case.name, path) in KNOWN:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[case.name, path]))
            out.append(pytest.param(case.name, path, marks=marks, id=f"{case.name}/{path}"))
    return out


@pytest.mark.parametrize(("case_name", "path"), cells())
def test_paths_agree(case_name: str, path: str, matrix: Matrix, request: pytest.FixtureRequest) -> None:
    case = BY_NAME[case_name]
    pg = request.getfixturevalue("pg_server") if path in PG_PATHS else None
    seen = matrix.seen(case, path, pg)
    expected = sorted(matrix.expected(case, path))
    assert (seen.code, list(seen.lines)) == (1 if expected else 0, expected), str(seen)
    assert not seen.problems, seen.problems
    if path in SYNC_PATHS and not expected:  # a valid change: nothing that is not a story became a row
        changed = matrix.run(case).changed
        assert seen.live is not None
        assert not [row for row in seen.live if row.split(" ", 1)[1] in changed], seen.live
