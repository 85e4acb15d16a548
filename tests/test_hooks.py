"""Git hooks: the shims, install-hooks, and real git operations firing them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from storysync.cli.hooks import HOOK_NAMES, script
from storysync.db import tables as m
from storysync.db.database import LAST_SYNCED, Database, get_state
from tests.conftest import Repo, make_repo, story_text

ROOT = Path(__file__).resolve().parent.parent


def git_run(repo: Repo, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run git (hooks fire) and return the finished process, whatever its exit code."""
    return subprocess.run(
        ["git", *args], cwd=repo.path, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )


def synced(repo: Repo) -> str | None:
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            return get_state(conn, LAST_SYNCED)
    finally:
        db.dispose()


def run_count(repo: Repo) -> int:
    if not repo.db_path.exists():
        return 0
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            return len(conn.execute(select(m.sync_runs.c.id)).all())
    finally:
        db.dispose()


def live_titles(repo: Repo) -> dict[str, str]:
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            rows = conn.execute(select(m.stories.c.id, m.stories.c.title).where(m.stories.c.deleted_at.is_(None)))
            return {r.id: r.title for r in rows}
    finally:
        db.dispose()


@pytest.fixture
def hooked(backlog_repo: Repo) -> Repo:
    """The backlog repository with storysync's hooks installed."""
    assert backlog_repo.run("install-hooks") == 0
    return backlog_repo


def only(repo: Repo, *names: str) -> Repo:
    """Keep only these installed hooks (each hook is a Python process: keep the tests fast)."""
    for name in set(HOOK_NAMES) - set(names):
        (repo.path / ".git" / "hooks" / name).unlink()
    return repo


# --- the shims ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_repository_hooks_match_the_packaged_shims(name: str) -> None:
    shipped = ROOT / "hooks" / name
    assert shipped.read_text(encoding="utf-8") == script(name)
    assert os.access(shipped, os.X_OK)
    assert subprocess.run(["sh", "-n", str(shipped)], check=False).returncode == 0


# --- install-hooks --------------------------------------------------------------------------


def test_install_hooks_is_idempotent(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    assert repo.run("install-hooks") == 0
    hooks = repo.path / ".git" / "hooks"
    for name in HOOK_NAMES:
        assert (hooks / name).read_text(encoding="utf-8") == script(name)
        assert os.access(hooks / name, os.X_OK)
    assert repo.git("config", "--get", "storysync.python") == sys.executable
    capsys.readouterr()
    assert repo.run("install-hooks") == 0
    err = capsys.readouterr().err
    assert err.count(": unchanged") == len(HOOK_NAMES)
    assert not list(hooks.glob("*.local"))


def test_install_hooks_honours_core_hooks_path(backlog_repo: Repo) -> None:
    repo = backlog_repo
    repo.git("config", "core.hooksPath", "team hooks")
    assert repo.run("install-hooks") == 0
    assert sorted(p.name for p in (repo.path / "team hooks").iterdir()) == sorted(HOOK_NAMES)
    assert not (repo.path / ".git" / "hooks" / "post-merge").exists()


def test_install_hooks_chains_an_existing_hook(backlog_repo: Repo, tmp_path: Path) -> None:
    repo = backlog_repo
    marker = tmp_path / "local-ran"
    hooks = repo.path / ".git" / "hooks"
    own = f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 0\n'
    (hooks / "post-checkout").write_text(own, encoding="utf-8")
    (hooks / "post-checkout").chmod(0o755)
    assert repo.run("install-hooks") == 0
    assert repo.run("install-hooks") == 0  # twice: the chained hook is kept, not wrapped again
    assert (hooks / "post-checkout.local").read_text(encoding="utf-8") == own
    assert (hooks / "post-checkout").read_text(encoding="utf-8") == script("post-checkout")
    repo.git("checkout", "-q", "-b", "topic")
    assert marker.read_text(encoding="utf-8").split()[2] == "1"  # the old hook ran, with git's arguments
    assert synced(repo) == repo.git("rev-parse", "HEAD")  # and so did storysync


def test_install_hooks_refuses_to_overwrite_two_foreign_hooks(backlog_repo: Repo) -> None:
    repo = backlog_repo
    hooks = repo.path / ".git" / "hooks"
    for name in ("pre-commit", "pre-commit.local"):
        (hooks / name).write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    assert repo.run("install-hooks") == 2
    assert (hooks / "pre-commit").read_text(encoding="utf-8") == "#!/bin/sh\nexit 0\n"


def test_chained_pre_commit_failure_blocks_the_commit(backlog_repo: Repo) -> None:
    repo = backlog_repo
    hooks = repo.path / ".git" / "hooks"
    (hooks / "pre-commit").write_text("#!/bin/sh\necho 'local says no' >&2\nexit 3\n", encoding="utf-8")
    (hooks / "pre-commit").chmod(0o755)
    assert repo.run("install-hooks") == 0
    repo.story("backlog", "web", "WEB-3", title="Three")
    repo.git("add", "-A")
    done = git_run(repo, "commit", "-q", "-m", "three")
    assert done.returncode != 0
    assert "local says no" in done.stderr


# --- pre-commit -----------------------------------------------------------------------------


def test_pre_commit_blocks_an_invalid_story_and_passes_a_valid_one(hooked: Repo) -> None:
    repo = hooked
    repo.write("backlog/web/WEB-3-bad.md", "---\nid: WEB-3\ntitle: Bad\npriority: urgent\n---\n")
    repo.git("add", "-A")
    done = git_run(repo, "commit", "-q", "-m", "bad")
    assert done.returncode == 1
    assert "backlog/web/WEB-3-bad.md:4:11:" in done.stderr  # git sends hook output to stderr
    before = repo.git("rev-parse", "HEAD")
    repo.write("backlog/web/WEB-3-bad.md", story_text("WEB-3", priority="low"))
    repo.git("add", "-A")
    done = git_run(repo, "commit", "-q", "-m", "good")
    assert done.returncode == 0, done.stderr
    assert repo.git("rev-parse", "HEAD") != before
    assert done.stderr.strip().splitlines() == ["storysync: 1 story file valid"]


def test_pre_commit_blocks_a_deletion_that_leaves_a_dependency_dangling(hooked: Repo) -> None:
    """``git rm`` of a story another depends on, nothing else staged: blocked at the dependent's
    entry, as ``validate`` of the tree and a full sync would refuse it; with the dependent fixed it passes."""
    repo = only(hooked, "pre-commit")
    before = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", "refinements/api/API-1-auth.md")
    done = git_run(repo, "commit", "-q", "-m", "drop API-1")
    assert done.returncode == 1
    assert "backlog/web/WEB-1-login.md:5:14: depends_on: no story has id 'API-1'" in done.stderr
    assert repo.git("rev-parse", "HEAD") == before
    repo.git("mv", "backlog/web/WEB-1-login.md", "backlog/web/WEB-1-sign-in.md")  # a rename is checked too
    done = git_run(repo, "commit", "-q", "-m", "drop API-1, rename WEB-1")
    assert done.returncode == 1
    assert "backlog/web/WEB-1-sign-in.md:5:14: depends_on: no story has id 'API-1'" in done.stderr
    repo.story("backlog", "web", "WEB-1", "sign-in", title="Login page", priority="high")
    repo.git("add", "-A")
    done = git_run(repo, "commit", "-q", "-m", "drop API-1 and the dependency")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == ["storysync: 1 story file valid"]


def test_pre_commit_checks_the_staged_version_not_the_disk(hooked: Repo) -> None:
    repo = hooked
    path = repo.story("backlog", "web", "WEB-3", title="Three")
    repo.git("add", path)
    repo.write(path, "---\nnot: closed\n")  # broken on disk only
    done = git_run(repo, "commit", "-q", "-m", "staged is fine")
    assert done.returncode == 0, done.stdout + done.stderr


def test_pre_commit_path_imports_neither_sqlalchemy_nor_gitpython(backlog_repo: Repo) -> None:
    repo = backlog_repo
    repo.story("backlog", "web", "WEB-3", title="Three")
    repo.git("add", "-A")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "storysync", "validate", "--staged"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "storysync" in modules
    assert not modules & {"sqlalchemy", "git", "alembic", "gitdb"}


# --- post-merge, post-checkout, post-rewrite ------------------------------------------------


def test_post_checkout_syncs_branch_checkouts_only(hooked: Repo) -> None:
    repo = only(hooked, "post-checkout")
    repo.git("checkout", "-q", "-b", "topic")
    repo.story("active", "web", "WEB-3", title="On topic")
    repo.commit("topic story")
    done = git_run(repo, "checkout", "-q", "main")
    assert done.returncode == 0
    assert done.stderr == ""  # quiet when nothing changed since... (the first sync is the notice below)
    assert synced(repo) == repo.git("rev-parse", "main")
    runs = run_count(repo)
    repo.write("active/web/WEB-2-signup.md", "scribble")
    assert git_run(repo, "checkout", "--", "active/web/WEB-2-signup.md").returncode == 0  # a file checkout
    assert run_count(repo) == runs
    done = git_run(repo, "checkout", "-q", "topic")
    assert "WEB-3" in live_titles(repo)
    assert "1 created" in done.stderr  # one short line when the database changed


def test_post_merge_fast_forward_and_no_ff(hooked: Repo) -> None:
    repo = only(hooked, "post-merge")
    repo.git("checkout", "-q", "-b", "feature")
    repo.story("backlog", "web", "WEB-3", title="Feature")
    repo.commit("feature")
    repo.git("checkout", "-q", "main")
    done = git_run(repo, "merge", "-q", "--ff-only", "feature")
    assert done.returncode == 0
    assert synced(repo) == repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "second")
    repo.story("backlog", "web", "WEB-4", title="Second")
    repo.commit("second")
    repo.git("checkout", "-q", "main")
    repo.story("backlog", "api", "API-3", title="Mainline")
    repo.commit("mainline")
    done = git_run(repo, "merge", "-q", "--no-ff", "-m", "merge second", "second")
    assert done.returncode == 0, done.stderr
    assert synced(repo) == repo.git("rev-parse", "HEAD")
    assert {"WEB-3", "WEB-4", "API-3"} <= set(live_titles(repo))


def test_post_rewrite_after_amend(hooked: Repo) -> None:
    repo = only(hooked, "post-checkout", "post-rewrite")
    repo.git("checkout", "-q", "-b", "topic")  # first sync through post-checkout
    repo.story("backlog", "web", "WEB-1", "login", title="Amended title", priority="high", depends_on=["API-1"])
    repo.git("add", "-A")
    done = git_run(repo, "commit", "-q", "--amend", "--no-edit")
    assert done.returncode == 0, done.stderr
    assert synced(repo) == repo.git("rev-parse", "HEAD")
    assert live_titles(repo)["WEB-1"] == "Amended title"


def test_post_hooks_never_fail_git(hooked: Repo) -> None:
    repo = hooked
    bad_db = repo.path / ".storysync" / "a directory.db"
    bad_db.mkdir(parents=True)
    env = {"STORYSYNC_DATABASE_URL": f"sqlite:///{bad_db}"}
    done = git_run(repo, "checkout", "-q", "-b", "topic", env=env)
    assert done.returncode == 0
    assert "storysync: the database was not synced" in done.stderr
    assert "run 'storysync sync'" in done.stderr


def test_post_merge_reports_invalid_files_and_exits_zero(hooked: Repo) -> None:
    repo = only(hooked, "post-merge")
    assert repo.run("sync") == 0
    repo.git("checkout", "-q", "-b", "sloppy")
    repo.write("backlog/web/WEB-3-bad.md", "---\nid: WEB-3\n---\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "no title")
    repo.git("checkout", "-q", "main")
    done = git_run(repo, "merge", "-q", "sloppy")
    assert done.returncode == 0
    assert "backlog/web/WEB-3-bad.md:" in done.stderr
    assert "the database was not synced: fix the files above" in done.stderr
    assert "WEB-3" not in live_titles(repo)


def test_merge_stopped_on_conflict_skips_with_a_notice(hooked: Repo) -> None:
    repo = only(hooked, "post-merge")
    repo.git("checkout", "-q", "-b", "left")
    repo.story("active", "web", "WEB-2", "signup", title="Left title", points=3)
    repo.commit("left")
    repo.git("checkout", "-q", "main")
    repo.story("active", "web", "WEB-2", "signup", title="Right title", points=3)
    repo.commit("right")
    runs = run_count(repo)
    done = git_run(repo, "merge", "-q", "left")
    assert done.returncode == 1  # stopped on the conflict; no hook fires
    assert (repo.path / ".git" / "MERGE_HEAD").exists()
    assert run_count(repo) == runs
    for hook in (["post-merge", "0"], ["post-checkout", "a", "b", "1"]):
        assert repo.run("run-hook", *hook) == 0
    assert run_count(repo) == runs
    hook = subprocess.run(
        [str(repo.path / ".git" / "hooks" / "post-merge"), "0"], cwd=repo.path, capture_output=True, text=True
    )
    assert hook.returncode == 0
    assert hook.stderr.strip() == (
        "storysync: a merge is in progress; not syncing now (run 'storysync sync' when it is done)"
    )
    assert run_count(repo) == runs


def test_pull_rebase_syncs_through_post_rewrite(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "upstream")
    upstream.story("backlog", "web", "WEB-1", title="One")
    upstream.commit("one")
    clone_path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(clone_path)], check=True)
    clone = Repo(clone_path)
    clone.git("config", "user.name", "Ada Author")
    clone.git("config", "user.email", "ada@example.invalid")
    assert clone.run("install-hooks") == 0
    clone.git("checkout", "-q", "-b", "work")
    clone.git("checkout", "-q", "main")
    assert synced(clone) == clone.git("rev-parse", "HEAD")
    clone.story("active", "web", "WEB-2", title="Mine")
    clone.commit("local work")
    upstream.story("backlog", "web", "WEB-3", title="Theirs")
    upstream.commit("upstream work")
    done = git_run(clone, "pull", "-q", "--rebase")
    assert done.returncode == 0, done.stderr
    assert synced(clone) == clone.git("rev-parse", "HEAD")
    assert {"WEB-1", "WEB-2", "WEB-3"} <= set(live_titles(clone))
    assert "a rebase is in progress; not syncing now" in done.stderr  # the checkout inside the rebase


# --- the pre-commit framework ---------------------------------------------------------------


def framework_config(repo: Repo) -> None:
    """A ``repo: local`` config with our manifest's hooks (as ``language: system``: no network)."""
    manifest = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    hooks = [{**hook, "language": "system"} for hook in manifest]
    config = {
        "default_install_hook_types": ["pre-commit", "post-merge", "post-checkout", "post-rewrite"],
        "repos": [{"repo": "local", "hooks": hooks}],
    }
    repo.write(".pre-commit-config.yaml", yaml.safe_dump(config, sort_keys=False))


def test_manifest_is_valid_for_pre_commit() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    assert manifest["storysync-validate"]["stages"] == ["pre-commit"]
    assert manifest["storysync-validate"]["always_run"] is True  # a deletion passes no file name
    assert manifest["storysync-validate"]["pass_filenames"] is False  # storysync reads the staged change
    assert manifest["storysync-sync"]["stages"] == ["post-merge", "post-checkout", "post-rewrite"]
    assert manifest["storysync-sync"]["always_run"] is True
    assert manifest["storysync-sync"]["pass_filenames"] is False


def test_with_the_pre_commit_framework(backlog_repo: Repo, tmp_path: Path) -> None:
    repo = backlog_repo
    framework_config(repo)
    env = {"PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    repo.commit("pre-commit config")
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    repo.write("backlog/web/WEB-3-bad.md", "---\nid: WEB-3\n---\n")
    repo.git("add", "-A")
    blocked = git_run(repo, "commit", "-q", "-m", "bad", env=env)
    assert blocked.returncode != 0
    assert "backlog/web/WEB-3-bad.md:2:1:" in blocked.stderr
    repo.write("backlog/web/WEB-3-bad.md", story_text("WEB-3"))
    repo.git("add", "-A")
    assert git_run(repo, "commit", "-q", "-m", "good", env=env).returncode == 0
    assert git_run(repo, "checkout", "-q", "-b", "topic", env=env).returncode == 0
    assert synced(repo) == repo.git("rev-parse", "HEAD")
    runs = run_count(repo)
    assert git_run(repo, "checkout", "-q", "--", "backlog/web/WEB-3-bad.md", env=env).returncode == 0
    assert run_count(repo) == runs  # a file checkout does not sync


def test_with_the_pre_commit_framework_a_deletion_is_checked(backlog_repo: Repo, tmp_path: Path) -> None:
    """The framework passes only staged files that still exist, so a pure deletion once ran as
    "(no files to check)Skipped"; the hook now reads the staged change itself."""
    repo = backlog_repo
    framework_config(repo)
    env = {"PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    repo.commit("pre-commit config")
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-commit"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    before = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", "refinements/api/API-1-auth.md")
    blocked = git_run(repo, "commit", "-q", "-m", "drop API-1", env=env)
    assert blocked.returncode != 0
    output = blocked.stdout + blocked.stderr
    assert "no files to check" not in output
    assert "backlog/web/WEB-1-login.md:5:14: depends_on: no story has id 'API-1'" in output
    assert repo.git("rev-parse", "HEAD") == before
    repo.git("rm", "-q", "backlog/web/WEB-1-login.md")
    done = git_run(repo, "commit", "-q", "-m", "drop API-1 and WEB-1", env=env)
    assert done.returncode == 0, done.stdout + done.stderr


# --- an installed wheel can install the hooks ---------------------------------------------------


def test_installed_wheel_carries_and_installs_the_shims(tmp_path: Path, backlog_repo: Repo) -> None:
    out = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = out.glob("storysync-*.whl")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    code = (
        "import sys, storysync.cli.hooks as h; from pathlib import Path; "
        "print(h.__file__); h.install(Path(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(backlog_repo.path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(site)
    for name in HOOK_NAMES:
        installed = backlog_repo.path / ".git" / "hooks" / name
        assert installed.read_bytes() == (ROOT / "hooks" / name).read_bytes()


def test_hooks_fire_in_a_new_worktree(hooked: Repo, tmp_path: Path) -> None:
    repo = only(hooked, "post-checkout")
    tree = tmp_path / "linked worktree"
    done = git_run(repo, "worktree", "add", "-q", "-b", "side", str(tree))
    assert done.returncode == 0, done.stderr
    linked = Repo(tree)
    assert synced(linked) == linked.git("rev-parse", "HEAD")  # its own database, under the worktree
    assert set(live_titles(linked)) == {"WEB-1", "WEB-2", "API-1", "API-2"}


def test_a_fast_forward_rebase_syncs_through_post_checkout(hooked: Repo) -> None:
    """``git rebase main`` on a branch behind main only checks main out: no post-rewrite
    fires, so the post-checkout inside the rebase must sync."""
    repo = only(hooked, "post-checkout", "post-rewrite")
    repo.git("checkout", "-q", "-b", "feature")
    repo.git("checkout", "-q", "main")
    repo.story("backlog", "web", "WEB-5", title="On main")
    repo.commit("main moves on")
    repo.git("checkout", "-q", "feature")
    assert synced(repo) == repo.git("rev-parse", "HEAD")
    done = git_run(repo, "rebase", "main")
    assert done.returncode == 0, done.stderr
    assert repo.git("rev-parse", "HEAD") == repo.git("rev-parse", "main")
    assert synced(repo) == repo.git("rev-parse", "HEAD")
    assert "WEB-5" in live_titles(repo)
    assert "not syncing now" not in done.stderr


def test_a_fast_forward_pull_rebase_syncs(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "upstream")
    upstream.story("backlog", "web", "WEB-1", title="One")
    upstream.commit("one")
    clone_path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(clone_path)], check=True)
    clone = Repo(clone_path)
    assert clone.run("install-hooks") == 0
    only(clone, "post-checkout", "post-rewrite", "post-merge")
    assert clone.run("-q", "sync") == 0
    upstream.story("backlog", "web", "WEB-3", title="Theirs")
    upstream.commit("upstream work")
    done = git_run(clone, "pull", "-q", "--rebase")
    assert done.returncode == 0, done.stderr
    assert synced(clone) == clone.git("rev-parse", "HEAD") == upstream.git("rev-parse", "HEAD")
    assert {"WEB-1", "WEB-3"} <= set(live_titles(clone))


def test_a_rebase_with_commits_to_pick_still_skips_its_inner_checkout(hooked: Repo) -> None:
    """Only post-checkout installed: the checkout onto main inside a real rebase does not sync."""
    repo = only(hooked, "post-checkout")
    repo.git("checkout", "-q", "-b", "feature")
    repo.story("active", "web", "WEB-6", title="Mine")
    repo.commit("feature work")
    repo.git("checkout", "-q", "main")
    repo.story("backlog", "web", "WEB-5", title="On main")
    repo.commit("main moves on")
    repo.git("checkout", "-q", "feature")
    runs = run_count(repo)
    done = git_run(repo, "rebase", "main")
    assert done.returncode == 0, done.stderr
    assert "a rebase is in progress; not syncing now" in done.stderr
    assert run_count(repo) == runs
