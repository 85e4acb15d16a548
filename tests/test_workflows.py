"""The GitHub workflows: valid against the GitHub workflow schema, and the example one works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Repo, make_repo

ROOT = Path(__file__).resolve().parent.parent
# every GitHub workflow in the tree: the project's own, the documented example, the deploy/ one
WORKFLOWS = sorted(
    [*ROOT.glob(".github/workflows/*.yml"), ROOT / "examples" / "stories-ci.yml", *ROOT.glob("deploy/ci/*.yml")]
)
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]


def check_workflow(*paths: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored GitHub workflow schema (no network)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def steps(workflow: dict[Any, Any], job: str) -> list[str]:
    return [step.get("run", "") for step in workflow["jobs"][job]["steps"]]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(path: Path) -> None:
    done = check_workflow(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    steps:\n      - run: true\n    timeout-minutes: soon\n")
    done = check_workflow(broken)
    assert done.returncode == 1
    assert "runs-on" in done.stdout or "timeout-minutes" in done.stdout


def test_project_ci_lints_types_and_tests_on_every_python() -> None:
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci["jobs"]["test"]["strategy"]["matrix"]["python-version"] == SUPPORTED
    lint = "\n".join(steps(ci, "lint"))
    for command in ("ruff check .", "ruff format --check .", "mypy"):
        assert command in lint
    assert "pytest" in "\n".join(steps(ci, "test"))
    assert all(job.get("timeout-minutes") for job in ci["jobs"].values())


def test_example_workflow_shape() -> None:
    wf = load(ROOT / "examples" / "stories-ci.yml")
    triggers = wf[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) >= {"pull_request", "push", "schedule"}
    assert "storysync validate --format github" in steps(wf, "validate")
    checkout = wf["jobs"]["sync"]["steps"][0]
    assert checkout["with"]["fetch-depth"] == 0
    assert any("export --commit" in run for run in steps(wf, "export"))
    assert wf["jobs"]["export"]["permissions"] == {"contents": "write"}
    assert "examples/stories-ci.yml" in (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")


# --- the example workflow's commands, run for real ---------------------------------------------


def run_script(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A workflow ``run:`` block as GitHub runs it (bash -e)."""
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, **env}
    )


def test_example_validate_step_annotates_pull_requests(backlog_repo: Repo) -> None:
    wf = load(ROOT / "examples" / "stories-ci.yml")
    script = steps(wf, "validate")[-1]
    repo = backlog_repo
    assert run_script(script, repo.path, {}).returncode == 0
    repo.write("backlog/web/WEB-3-bad.md", "---\nid: WEB-3\ntitle: Bad\npoints: many\n---\n")
    done = run_script(script, repo.path, {})
    assert done.returncode == 1
    assert done.stdout.startswith("::error file=backlog/web/WEB-3-bad.md,line=4,col=9,")


def test_example_sync_and_export_steps_against_a_remote(tmp_path: Path) -> None:
    wf = load(ROOT / "examples" / "stories-ci.yml")
    origin = tmp_path / "origin.git"
    seed = make_repo(tmp_path / "seed")
    seed.story("backlog", "web", "WEB-1", title="One")
    seed.commit("one")
    subprocess.run(["git", "clone", "-q", "--bare", str(seed.path), str(origin)], check=True)
    runner = tmp_path / "runner"
    subprocess.run(["git", "clone", "-q", str(origin), str(runner)], check=True)
    env = {"STORYSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'team.db'}"}
    sync = steps(wf, "sync")[-2]
    assert "storysync sync --trigger ci" in sync
    done = run_script(sync, runner, env)
    assert done.returncode == 0, done.stderr
    assert run_script("storysync set WEB-1 title='Renamed in the API'", runner, env).returncode == 0
    export = steps(wf, "export")[-1]
    done = run_script(export, runner, env)
    assert done.returncode == 0, done.stdout + done.stderr
    pushed = subprocess.run(
        ["git", "--git-dir", str(origin), "show", "main:backlog/web/WEB-1-story.md"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "title: Renamed in the API" in pushed
    subject = subprocess.run(
        ["git", "--git-dir", str(origin), "log", "-1", "--format=%s"], capture_output=True, text=True, check=True
    )
    assert subject.stdout.strip() == "storysync: export DB-side changes"
    again = run_script(export, runner, env)  # nothing to export: nothing pushed, exit 0
    assert again.returncode == 0, again.stderr


def test_example_branch_jobs_record_and_drop_a_branch_s_overlay(tmp_path: Path) -> None:
    """The push job of a feature branch records what it changed; the delete job drops it."""
    wf = load(ROOT / "examples" / "stories-ci.yml")
    assert set(wf[True]) >= {"delete"}
    assert wf["jobs"]["branch"]["steps"][0]["with"]["fetch-depth"] == 0
    assert "main" in wf["jobs"]["branch"]["if"]  # main's pushes go to the sync job, never to an overlay
    seed = make_repo(tmp_path / "seed")
    seed.story("backlog", "web", "WEB-1", title="One")
    seed.commit("one")
    runner = tmp_path / "runner"
    subprocess.run(["git", "clone", "-q", str(seed.path), str(runner)], check=True)
    env = {"STORYSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'team.db'}"}
    assert run_script(steps(wf, "sync")[-2], runner, env).returncode == 0  # main, as its push job syncs it

    seed.git("checkout", "-q", "-b", "feature/x$(touch${IFS}pwned)")  # a branch name is never script text
    (seed.path / "active" / "web").mkdir(parents=True)
    seed.git("mv", "backlog/web/WEB-1-story.md", "active/web/WEB-1-story.md")
    seed.commit("start WEB-1")
    subprocess.run(["git", "fetch", "-q", "origin"], cwd=runner, check=True)
    branch = {**env, "BRANCH": "feature/x$(touch${IFS}pwned)"}
    done = run_script(steps(wf, "branch")[-1], runner, branch)
    assert done.returncode == 0, done.stderr
    listed = run_script("storysync list --format json", runner, env)
    (story,) = yaml.safe_load(listed.stdout)
    assert story["status"] == "backlog"
    assert story["furthest_status"] == "active"
    assert [b["branch"] for b in story["branches"]] == ["feature/x$(touch${IFS}pwned)"]
    assert not (runner / "pwned").exists()

    seed.git("checkout", "-q", "main")
    seed.git("branch", "-q", "-D", "feature/x$(touch${IFS}pwned)")
    subprocess.run(["git", "fetch", "-q", "--prune", "origin"], cwd=runner, check=True)
    done = run_script(steps(wf, "branch-deleted")[-1], runner, branch)
    assert done.returncode == 0, done.stderr
    (story,) = yaml.safe_load(run_script("storysync list --format json", runner, env).stdout)
    assert story["branches"] == []
    assert story["furthest_status"] == "backlog"
