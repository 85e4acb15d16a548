"""``sync --full --history`` rebuilds what syncing commit by commit builds.

A team's task history has stories that were deleted before HEAD.  Syncing every
commit as it lands (hooks, CI) leaves their rows soft-deleted with their status
history; a rebuild from the log must leave the same stories, history and
dependencies, or the history of everything once deleted is lost.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storysync.db import tables as m
from tests.conftest import BACKENDS, Repo, make_repo, story_text
from tests.test_sync_incremental import commit_as, do_sync, git_mv, stories, table

ADA = "Ada Author <ada@example.invalid>"
BEA = "Bea Builder <bea@example.invalid>"
CY = "Cy Coder <cy@example.invalid>"
DEE = "Dee Designer <dee@example.invalid>"

# What the comparison leaves out, and why:
# * stories.revision / synced_revision: +1 on every change a sync makes, so they count syncs
#   (a rebuild creates each live row once, at revision 1);
# * stories.synced_commit of a live row: the commit a sync last wrote it from (the rebuild
#   reads every live file from HEAD); for a deleted row it is compared (its last version's commit);
# * stories.created_at / updated_at / deleted_at values: the clock of the sync that wrote them
#   (deleted_at is compared as set or not; test_a_deleted_story_keeps_when_and_what_it_was pins
#   the rebuild's value);
# * status_history.id: insertion order across stories (each story's rows are compared in order);
# * the changes feed, sync_runs and sync_state: the record of the syncs themselves;
# * backlogs: a sync adds every backlog it meets, so commit by commit also keeps a backlog
#   that only a story since moved away ever used.
STORY_COLUMNS = (
    "id",
    "backlog_id",
    "status",
    "title",
    "priority",
    "points",
    "epic",
    "assignee",
    "tags",
    "extra",
    "body",
    "path",
    "content_hash",
)


def snapshot(url: str) -> dict[str, Any]:
    """What a rebuild must reproduce: stories, each story's history in order, dependencies."""
    found: dict[str, Any] = {}
    for sid, row in stories(url).items():
        found[sid] = {key: row[key] for key in STORY_COLUMNS}
        found[sid]["deleted"] = row["deleted_at"] is not None
        found[sid]["synced_commit"] = row["synced_commit"] if row["deleted_at"] is not None else "(live)"
    history: dict[str, list[tuple[Any, ...]]] = {}
    for h in sorted(table(url, m.status_history), key=lambda h: h["id"]):
        key = (h["from_status"], h["to_status"], h["commit"], h["author"], h["changed_at"], h["source"])
        history.setdefault(h["story_id"], []).append(key)
    deps = sorted((d["story_id"], d["depends_on_id"]) for d in table(url, m.dependencies))
    return {"stories": found, "history": history, "dependencies": deps}


def sync_each_commit(repo: Repo, url: str, commits: list[str]) -> None:
    """What hooks and CI do: sync every commit as it lands, oldest first."""
    for sha in commits:
        result = do_sync(repo, url, to_rev=sha)
        assert result.exit_code == 0, (sha, result.diagnostics)


def rebuild(repo: Repo, url: str) -> None:
    result = do_sync(repo, url, full=True, history=True)
    assert result.exit_code == 0, result.diagnostics
    assert result.notices == []


@pytest.fixture(params=BACKENDS)
def two_dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases of one backend: one synced commit by commit, one rebuilt."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'commit-by-commit.db'}", f"sqlite:///{tmp_path / 'rebuilt.db'}"
        return
    server = request.getfixturevalue("pg_server")
    names = [server.create_database(), server.create_database()]
    yield server.url(names[0]), server.url(names[1])
    for name in names:
        server.drop_database(name)


def team_history(repo: Repo) -> list[str]:
    """Two backlogs' worth of work over a fortnight by four people; the commits, oldest first."""
    out: list[str] = []

    def commit(message: str, author: str, day: int) -> None:
        out.append(commit_as(repo, message, author, f"2025-03-{day:02d}T09:30:00Z"))

    repo.story("refinements", "web", "WEB-1", "login", title="Login page", depends_on=["API-1"])
    repo.story("backlog", "web", "WEB-2", "signup", title="Signup", points=3, depends_on=["WEB-1"])
    repo.story("backlog", "web", "WEB-3", "banner", title="Cookie banner", tags=["legal"])
    repo.story("backlog", "api", "API-1", "auth", title="Auth API", priority="high")
    repo.story("refinements", "api", "API-2", "health", title="Health check")
    commit("first stories", ADA, 3)

    git_mv(repo, "refinements/web/WEB-1-login.md", "backlog/web/WEB-1-login.md")
    repo.story("backlog", "api", "API-1", "auth", title="Auth API", priority="high", points=5, tags=["security"])
    commit("groom login; size auth", BEA, 4)

    repo.story("backlog", "api", "API-3", "rate-limits", title="Rate limits", depends_on=["API-1", "API-5"])
    repo.story("active", "api", "API-4", "legacy", title="Legacy endpoint", created="2025-03-05", reviewer="bea")
    repo.story("backlog", "api", "API-5", "tokens", title="Old token format")
    repo.story("backlog", "web", "WEB-5", "session", title="Session expiry", depends_on=["API-5"])
    repo.story("refinements", "api", "API-6", "metrics", title="Metrics")
    commit("api work", CY, 5)

    (repo.path / "backlog/web/WEB-1-login.md").unlink()  # edited and moved in one go
    repo.story("active", "web", "WEB-1", "login", title="Login page (SSO)", depends_on=["API-1"])
    git_mv(repo, "backlog/web/WEB-2-signup.md", "backlog/web/WEB-2-sign-up.md")  # a new slug
    commit("start login; rename signup", ADA, 6)

    repo.git("rm", "-q", "backlog/web/WEB-3-banner.md")  # never started
    git_mv(repo, "active/api/API-4-legacy.md", "completed/api/API-4-legacy.md")
    git_mv(repo, "refinements/api/API-6-metrics.md", "backlog/api/API-6-metrics.md")
    commit("drop banner; legacy done", BEA, 7)

    repo.git("rm", "-q", "backlog/api/API-5-tokens.md")  # deleted, its dependants let go in the same commit
    repo.story("backlog", "api", "API-3", "rate-limits", title="Rate limits", depends_on=["API-1"])
    repo.story("backlog", "web", "WEB-5", "session", title="Session expiry")  # (a dangling one: the hook refuses)
    git_mv(repo, "backlog/api/API-6-metrics.md", "active/api/API-6-metrics.md")
    commit("no more old tokens", CY, 8)

    git_mv(repo, "backlog/web/WEB-5-session.md", "active/web/WEB-5-session.md")  # one of them started
    commit("sessions without old tokens", DEE, 10)

    repo.story("refinements", "web", "WEB-3", "consent", title="Consent dialog")  # the id again, a new story
    repo.git("rm", "-q", "active/api/API-6-metrics.md")  # deleted while active
    commit("consent instead of banner; metrics elsewhere", ADA, 11)

    git_mv(repo, "refinements/web/WEB-3-consent.md", "backlog/web/WEB-3-consent.md")
    git_mv(repo, "refinements/api/API-2-health.md", "backlog/platform/API-2-health.md")  # a new backlog too
    (repo.path / "archive").mkdir()
    git_mv(repo, "completed/api/API-4-legacy.md", "archive/API-4-legacy.md")  # out of the stories: deleted
    commit("plan consent; archive legacy", BEA, 12)

    repo.story("active", "api", "API-6", "metrics", title="Metrics, again", assignee="cy")  # back, elsewhere
    repo.story("backlog", "web", "WEB-7", "typo", title="Fix typo")
    commit("metrics are back", CY, 13)

    (repo.path / "backlog/web/WEB-7-typo.md").unlink()  # the id changed in place: WEB-7 goes, WEB-8 comes
    repo.write("backlog/web/WEB-8-typo.md", story_text("WEB-8", title="Fix typo"))
    repo.story("active", "api", "API-6", "metrics", title="Metrics, again", assignee="dee")
    commit("renumber typo; hand over metrics", DEE, 14)

    repo.git("rm", "-q", "active/api/API-6-metrics.md")  # deleted a second time, edited in between
    git_mv(repo, "backlog/web/WEB-8-typo.md", "completed/web/WEB-8-typo.md")
    commit("metrics dropped for good", ADA, 17)
    return out


def test_rebuild_equals_commit_by_commit_sync(repo: Repo, two_dbs: tuple[str, str]) -> None:
    commits = team_history(repo)
    by_commit, rebuilt = two_dbs
    sync_each_commit(repo, by_commit, commits)
    rebuild(repo, rebuilt)
    expected = snapshot(by_commit)
    deleted = {sid for sid, row in expected["stories"].items() if row["deleted"]}
    assert deleted == {"API-4", "API-5", "API-6", "WEB-7"}  # the script did what it says
    assert len(expected["history"]["API-6"]) == 4  # two lives
    assert snapshot(rebuilt) == expected
    rebuild(repo, by_commit)  # over a database that has them all, a rebuild keeps them as they are
    assert snapshot(by_commit) == expected


@pytest.mark.usefixtures("any_db")
def test_a_deleted_story_keeps_when_and_what_it_was(repo: Repo) -> None:
    repo.story("refinements", "web", "WEB-1", "idea", title="An idea", depends_on=["WEB-2"])
    repo.story("backlog", "web", "WEB-2", "base", title="The base")
    created = commit_as(repo, "ideas", BEA, "2025-01-06T10:00:00Z")
    git_mv(repo, "refinements/web/WEB-1-idea.md", "active/web/WEB-1-idea.md")
    started = commit_as(repo, "start", CY, "2025-01-07T11:00:00Z")
    repo.git("rm", "-q", "active/web/WEB-1-idea.md")
    dropped = commit_as(repo, "drop the idea", DEE, "2025-01-08T12:00:00Z")
    rebuild(repo, repo.db_url)
    row = stories(repo.db_url)["WEB-1"]
    assert (row["status"], row["path"], row["title"]) == ("active", "active/web/WEB-1-idea.md", "An idea")
    # deleted when the commit that deleted it was made: what a hook's sync right after it sets
    assert _utc(row["deleted_at"]) == datetime(2025, 1, 8, 12, tzinfo=timezone.utc)
    assert _utc(row["created_at"]) == datetime(2025, 1, 6, 10, tzinfo=timezone.utc)
    assert row["synced_commit"] == started  # the content is that of its last version
    assert [(h["from_status"], h["to_status"], h["commit"], h["author"]) for h in _history(repo, "WEB-1")] == [
        (None, "refinements", created, BEA),
        ("refinements", "active", started, CY),
    ]  # a deletion has no row of its own: deleted_at says it, as a commit-by-commit sync leaves it
    assert all(d["story_id"] != "WEB-1" for d in table(repo.db_url, m.dependencies))
    assert dropped not in {h["commit"] for h in table(repo.db_url, m.status_history)}
    rebuild(repo, repo.db_url)  # a second rebuild over it changes nothing
    assert stories(repo.db_url)["WEB-1"] == row


def test_a_deleted_story_whose_last_version_is_invalid_is_named(repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "kept", title="Kept")
    repo.write("backlog/web/WEB-2-broken.md", "---\nid: WEB-2\n---\nno title, committed with --no-verify\n")
    commit_as(repo, "one good, one broken", when="2025-02-03T10:00:00Z")
    repo.git("rm", "-q", "backlog/web/WEB-2-broken.md")
    dropped = commit_as(repo, "drop the broken one", when="2025-02-04T10:00:00Z")
    result = do_sync(repo, full=True, history=True)
    assert result.exit_code == 0  # a file HEAD no longer has does not block the rebuild
    assert result.notices == [
        f"backlog/web/WEB-2-broken.md: the last version of WEB-2 (deleted in {dropped[:12]}) is not a valid story "
        "(missing required key 'title'); a rebuild into a database without its row leaves it out, "
        "with its status history"
    ]
    assert sorted(stories(repo.db_url)) == ["WEB-1"]
    assert {h["story_id"] for h in table(repo.db_url, m.status_history)} == {"WEB-1"}


def _history(repo: Repo, story_id: str) -> list[dict[str, Any]]:
    return sorted((h for h in table(repo.db_url, m.status_history) if h["story_id"] == story_id), key=lambda h: h["id"])


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


# --- random histories ---------------------------------------------------------------------

POOL = ("API-1", "API-2", "WEB-1", "WEB-2", "WEB-3")  # a story depends only on ids before it: no cycles
STAGES = ("refinements", "backlog", "active", "completed")
AUTHORS = (ADA, BEA, CY)
OPS = st.tuples(
    st.sampled_from(("edit", "move", "rename", "delete", "delete")),
    st.sampled_from(POOL),
    st.sampled_from(STAGES),
    st.sampled_from(("web", "api")),
    st.sampled_from(("a", "b")),  # a slug
    st.lists(st.sampled_from(POOL), max_size=2),  # depends_on wished for
)


@dataclass
class Card:
    """One live story of a random history."""

    stage: str
    backlog: str
    slug: str
    deps: list[str]
    edits: int = 0

    def path(self, story_id: str) -> str:
        return f"{self.stage}/{self.backlog}/{story_id}-{self.slug}.md"


@dataclass
class Board:
    """The live stories of a random history, written to the repository a commit at a time."""

    repo: Repo
    cards: dict[str, Card] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)

    def apply(self, op: tuple[str, str, str, str, str, list[str]]) -> None:
        kind, sid, stage, backlog, slug, deps = op
        wished = [d for d in dict.fromkeys(deps) if POOL.index(d) < POOL.index(sid)]
        card = self.cards.get(sid)
        if card is None:
            if kind != "delete":  # anything else on a story that is not there creates it (again)
                self.cards[sid] = Card(stage, backlog, slug, wished)
                self.touched.add(sid)
            return
        self._unlink(sid, card)
        if kind == "delete":
            del self.cards[sid]
            return
        if kind == "edit":
            card.edits, card.deps = card.edits + 1, wished
        elif kind == "move":
            card.stage = stage
        else:
            card.backlog, card.slug = backlog, slug
        self.touched.add(sid)

    def commit(self, author: str, day: int) -> str:
        """Write what changed; a story written drops its dependencies on deleted stories (as
        whoever edits it must); one left untouched keeps them until then."""
        for sid in sorted(self.touched & self.cards.keys()):
            self._write(sid)
        self.touched.clear()
        return commit_as(self.repo, f"day {day}", author, f"2025-04-{day:02d}T10:00:00Z")

    def repair(self) -> bool:
        """Edit every story that still depends on a deleted one; whether there was any."""
        self.touched = {sid for sid, card in self.cards.items() if set(card.deps) - self.cards.keys()}
        return bool(self.touched)

    def _unlink(self, sid: str, card: Card) -> None:
        target = self.repo.path / card.path(sid)
        if target.exists():
            target.unlink()

    def _write(self, sid: str) -> None:
        card = self.cards[sid]
        card.deps = [d for d in card.deps if d in self.cards]
        extra: dict[str, object] = {"depends_on": card.deps} if card.deps else {}
        if card.edits % 2:
            extra["tags"] = ["odd"]
        text = story_text(sid, title=f"{sid} take {card.edits}", body=f"Edited {card.edits} times.\n", **extra)
        self.repo.write(card.path(sid), text)


@settings(max_examples=12, deadline=None)
@given(days=st.lists(st.lists(OPS, min_size=1, max_size=3), min_size=1, max_size=6))
def test_rebuild_equals_commit_by_commit_sync_for_any_history(
    days: list[list[tuple[str, str, str, str, str, list[str]]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        board = Board(make_repo(Path(tmp) / "repo"))
        commits = []
        for day, ops in enumerate(days, start=1):
            for op in ops:
                board.apply(op)
            commits.append(board.commit(AUTHORS[day % len(AUTHORS)], day))
        if board.repair():
            commits.append(board.commit(ADA, 28))
        by_commit, rebuilt = f"sqlite:///{tmp}/by-commit.db", f"sqlite:///{tmp}/rebuilt.db"
        sync_each_commit(board.repo, by_commit, commits)
        rebuild(board.repo, rebuilt)
        assert snapshot(rebuilt) == snapshot(by_commit)
