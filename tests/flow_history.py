"""A story repository with a fixed history: moves across several commits, days and authors.

Every commit's author and committer dates are pinned, so the flow figures of
``storysync report`` can be worked out by hand (see ``tests/test_views_report.py``).
"""

from __future__ import annotations

from tests.conftest import Repo, story_text

ADA = ("Ada Author", "ada@example.invalid")
BEA = ("Bea Builder", "bea@example.invalid")
CY = ("Cy Coder", "cy@example.invalid")

UNTIL = "2026-03-12T09:00:00Z"


def commit_at(repo: Repo, when: str, who: tuple[str, str], message: str) -> str:
    """Commit everything as ``who`` with author and committer date ``when``."""
    name, email = who
    repo.env.update(
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=name,
        GIT_COMMITTER_EMAIL=email,
        GIT_AUTHOR_DATE=when,
        GIT_COMMITTER_DATE=when,
    )
    try:
        return repo.commit(message)
    finally:
        for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
            repo.env.pop(key)
        for key in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            repo.env.pop(key)


def mv(repo: Repo, story: str, old: str, new: str) -> None:
    """``git mv`` a story file from one stage to another (the folder is created)."""
    backlog = story.split("/")[0]
    (repo.path / new / backlog).mkdir(parents=True, exist_ok=True)
    repo.git("mv", f"{old}/{story}", f"{new}/{story}")


def build(repo: Repo, synced: bool = True) -> dict[str, str]:
    """Write and commit the history (and, when ``synced``, sync it: the whole history before
    the last commit, then that commit); returns each step's commit sha by name.

    | when (UTC)        | who | what                                                                   |
    | 03-02 (Mon) 09:00 | Ada | create WEB-1, WEB-2 (needs API-1), API-2 in backlog; API-1 in refinements |
    | 03-03 09:00       | Bea | WEB-1 backlog -> active; API-1 refinements -> backlog                  |
    | 03-04 15:00       | Cy  | API-2 backlog -> active                                                |
    | 03-05 09:00       | Bea | WEB-1 active -> completed                                              |
    | 03-06 12:00       | Ada | API-1 backlog -> active; create WEB-3 in active                        |
    | 03-09 (Mon) 09:00 | Cy  | API-2 and API-1 active -> completed                                    |
    | 03-10 09:00       | Bea | WEB-2 backlog -> active                                                |
    | 03-11 18:00       | Ada | WEB-3 active -> completed; create API-3 in completed, WEB-4 (needs     |
    |                   |     | WEB-2) and API-4 (needs API-1) in backlog, WEB-5 (needs WEB-4) in      |
    |                   |     | refinements                                                            |
    | 03-11 20:00       | Cy  | delete OLD-1 (created with the first stories, in refinements)          |
    """
    shas = {}
    repo.story(
        "backlog", "web", "WEB-1", "login", title="Login page", priority="high", assignee="bea",
        tags=["ui", "auth"], epic="accounts",
    )  # fmt: skip
    repo.story(
        "backlog", "web", "WEB-2", "signup", title="Signup", depends_on=["API-1"], tags=["ui"], assignee="bea",
        priority="medium",
    )  # fmt: skip
    repo.story("backlog", "api", "API-2", "health", title="Health check", assignee="cy", priority="low")
    repo.write("refinements/api/API-1-auth.md", story_text("API-1", "Auth API", "Tokens and sessions for Zoë.\n",
               tags=["auth"], epic="accounts"))  # fmt: skip
    repo.story("refinements", "api", "OLD-1", "gone", title="An old idea")
    shas["created"] = commit_at(repo, "2026-03-02T09:00:00Z", ADA, "the first stories")
    mv(repo, "web/WEB-1-login.md", "backlog", "active")
    mv(repo, "api/API-1-auth.md", "refinements", "backlog")
    shas["start WEB-1"] = commit_at(repo, "2026-03-03T09:00:00Z", BEA, "start WEB-1, groom API-1")
    mv(repo, "api/API-2-health.md", "backlog", "active")
    shas["start API-2"] = commit_at(repo, "2026-03-04T15:00:00Z", CY, "start API-2")
    mv(repo, "web/WEB-1-login.md", "active", "completed")
    shas["finish WEB-1"] = commit_at(repo, "2026-03-05T09:00:00Z", BEA, "finish WEB-1")
    mv(repo, "api/API-1-auth.md", "backlog", "active")
    repo.story("active", "web", "WEB-3", "search", title="Search")
    shas["start API-1"] = commit_at(repo, "2026-03-06T12:00:00Z", ADA, "start API-1 and WEB-3")
    mv(repo, "api/API-2-health.md", "active", "completed")
    mv(repo, "api/API-1-auth.md", "active", "completed")
    shas["finish API"] = commit_at(repo, "2026-03-09T09:00:00Z", CY, "finish API-1 and API-2")
    mv(repo, "web/WEB-2-signup.md", "backlog", "active")
    shas["start WEB-2"] = commit_at(repo, "2026-03-10T09:00:00Z", BEA, "start WEB-2")
    mv(repo, "web/WEB-3-search.md", "active", "completed")
    repo.story("completed", "api", "API-3", "docs", title="Docs written before")
    repo.story("backlog", "web", "WEB-4", "profile", title="Profile page", depends_on=["WEB-2"], priority="critical")
    repo.story("backlog", "api", "API-4", "limits", title="Rate limits", depends_on=["API-1"], assignee="cy")
    repo.story("refinements", "web", "WEB-5", "avatar", title="Avatars at 100% size", depends_on=["WEB-4"])
    shas["finish WEB-3"] = commit_at(repo, "2026-03-11T18:00:00Z", ADA, "finish WEB-3, plan more")
    if synced:  # the whole history into the database, then a deletion synced as a hook would
        assert repo.run("-q", "sync", "--full", "--history") == 0
    repo.git("rm", "-q", "refinements/api/OLD-1-gone.md")
    shas["delete OLD-1"] = commit_at(repo, "2026-03-11T20:00:00Z", CY, "drop OLD-1")
    if synced:
        assert repo.run("-q", "sync") == 0
    return shas
