"""Cross-file checks: unique ids, ids and file names, directories, dependencies and cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from storysync.check.rules import check_set, check_story, fold_id
from storysync.check.sources import WorkTreeSource
from storysync.check.validate import SourceKnown, checker_for, validate_paths
from storysync.config import Config
from storysync.errors import Diagnostic
from storysync.story.layout import classify
from storysync.story.model import Story
from storysync.story.parse import parse_story
from tests.conftest import Repo, story_text

CONFIG = Config(repo=Path("/nonexistent"))


def make(path: str, story_id: str, config: Config = CONFIG, **fields: object) -> Story:
    location = classify(config, path)
    assert location is not None, path
    parsed = parse_story(location, story_text(story_id, **fields).encode())  # type: ignore[arg-type]
    assert isinstance(parsed, Story), parsed
    return parsed


def lines(diags: list[Diagnostic]) -> list[str]:
    return sorted(str(d) for d in diags)


def rest_of_tree(repo: Repo) -> SourceKnown:
    """The stories on disk in ``repo``, as the ones a check does not read."""
    config = Config(repo=repo.path)
    return SourceKnown(config, WorkTreeSource(config), checker_for(config))


# --- one story against where it lives ---------------------------------------------------------


@pytest.mark.parametrize("name", ["WEB-1.md", "WEB-1-login.md", "WEB-1-a-b-c.md"])
def test_id_matches_file_name_prefix(name: str) -> None:
    assert check_story(make(f"backlog/web/{name}", "WEB-1")) == []


@pytest.mark.parametrize("name", ["WEB-10-login.md", "WEB-2-login.md", "web-1-login.md", "WEB-1login.md"])
def test_id_not_matching_file_name_refused(name: str) -> None:
    assert lines(check_story(make(f"backlog/web/{name}", "WEB-1"))) == [
        f"backlog/web/{name}:2:5: id 'WEB-1' does not match the file name {name!r}; name the file 'WEB-1-<slug>.md'"
    ]


def test_status_and_backlog_must_agree_with_directories() -> None:
    assert check_story(make("active/web/WEB-1-x.md", "WEB-1", status="active", backlog="web")) == []
    assert lines(check_story(make("active/web/WEB-1-x.md", "WEB-1", status="completed", backlog="api"))) == [
        "active/web/WEB-1-x.md:4:9: status 'completed' disagrees with directory 'active' (status 'active');"
        " move the file or fix the status",
        "active/web/WEB-1-x.md:5:10: backlog 'api' disagrees with directory 'web'; move the file or fix the backlog",
    ]


def test_status_follows_the_configured_stage_mapping() -> None:
    config = Config(repo=Path("/nonexistent"), stages={"doing": "active", "done": "completed"})
    assert check_story(make("doing/web/WEB-1-x.md", "WEB-1", config, status="active")) == []
    assert [d.code for d in check_story(make("doing/web/WEB-1-x.md", "WEB-1", config, status="doing"))] == [
        "status-dir"
    ]


# --- ids across the repository ------------------------------------------------------------------


def test_fold_id_folds_case_and_unicode_width() -> None:
    assert fold_id("web-1") == fold_id("WEB-1") == fold_id("ＷＥＢ-１")
    assert fold_id("WEB-1") != fold_id("WEB-11")


def test_duplicate_ids_across_backlogs() -> None:
    a = make("backlog/web/WEB-1-a.md", "WEB-1")
    b = make("completed/api/WEB-1-b.md", "WEB-1")
    assert lines(check_set([a, b])) == [
        "backlog/web/WEB-1-a.md:2:5: id 'WEB-1' is already used by completed/api/WEB-1-b.md (the same id);"
        " ids are unique across all backlogs",
        "completed/api/WEB-1-b.md:2:5: id 'WEB-1' is already used by backlog/web/WEB-1-a.md (the same id);"
        " ids are unique across all backlogs",
    ]


def test_ids_differing_only_in_case_or_width_collide() -> None:
    a = make("backlog/web/WEB-1-a.md", "WEB-1")
    b = make("backlog/web/web-1-b.md", "web-1")
    c = make("backlog/web/ＷＥＢ-1-c.md", "ＷＥＢ-1")
    assert [d.path for d in check_set([a, b, c])] == [
        "backlog/web/WEB-1-a.md",
        "backlog/web/web-1-b.md",
        "backlog/web/ＷＥＢ-1-c.md",
    ]
    assert "differs only in case or Unicode form" in str(check_set([a, b])[0])


def test_duplicate_against_the_rest_of_the_tree_but_not_against_itself(repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "a")
    repo.story("backlog", "api", "API-1", "x")
    known = rest_of_tree(repo)
    a = make("backlog/web/WEB-1-a.md", "WEB-1")
    assert check_set([a], known) == []
    twin = make("backlog/web/API-1-twin.md", "API-1")
    assert [d.code for d in check_set([twin], known)] == ["duplicate-id"]


# --- dependencies ----------------------------------------------------------------------------------


def test_dependency_targets_must_exist_in_any_backlog(repo: Repo) -> None:
    repo.story("completed", "api", "API-2", "c")
    a = make("backlog/web/WEB-1-a.md", "WEB-1", depends_on=["API-1", "GHOST-1", "API-2"])
    b = make("active/api/API-1-b.md", "API-1")
    assert lines(check_set([a, b], rest_of_tree(repo))) == [
        "backlog/web/WEB-1-a.md:4:21: depends_on: no story has id 'GHOST-1'"
    ]


def test_self_dependency_is_a_cycle() -> None:
    a = make("backlog/web/WEB-1-a.md", "WEB-1", depends_on=["WEB-1"])
    assert lines(check_set([a])) == ["backlog/web/WEB-1-a.md:4:14: depends_on: dependency cycle WEB-1 -> WEB-1"]


def test_cycle_reported_on_each_member_and_not_on_a_tail() -> None:
    tail = make("backlog/web/WEB-1-a.md", "WEB-1", depends_on=["WEB-2"])
    b = make("backlog/web/WEB-2-b.md", "WEB-2", depends_on=["API-1", "WEB-3"])
    c = make("active/web/WEB-3-c.md", "WEB-3", depends_on=["WEB-2"])
    api = make("backlog/api/API-1-d.md", "API-1")
    assert lines(check_set([tail, b, c, api])) == [
        "active/web/WEB-3-c.md:4:14: depends_on: dependency cycle WEB-2 -> WEB-3 -> WEB-2",
        "backlog/web/WEB-2-b.md:4:21: depends_on: dependency cycle WEB-2 -> WEB-3 -> WEB-2",
    ]


def test_two_separate_cycles_both_found() -> None:
    stories = [
        make("backlog/a/A-1-x.md", "A-1", depends_on=["A-2"]),
        make("backlog/a/A-2-x.md", "A-2", depends_on=["A-1"]),
        make("backlog/b/B-1-x.md", "B-1", depends_on=["B-1"]),
    ]
    assert sorted(d.path for d in check_set(stories) if d.code == "dependency-cycle") == [
        "backlog/a/A-1-x.md",
        "backlog/a/A-2-x.md",
        "backlog/b/B-1-x.md",
    ]


def test_cycle_through_stories_outside_the_checked_set(repo: Repo) -> None:
    repo.story("backlog", "api", "API-1", "x", depends_on=["API-2"])
    repo.story("backlog", "api", "API-2", "y", depends_on=["WEB-1"])
    a = make("backlog/web/WEB-1-a.md", "WEB-1", depends_on=["API-1"])
    assert lines(check_set([a], rest_of_tree(repo))) == [
        "backlog/web/WEB-1-a.md:4:14: depends_on: dependency cycle API-1 -> API-2 -> WEB-1 -> API-1"
    ]


def test_a_cycle_is_shown_in_dependency_order_not_sorted() -> None:
    """A-1 -> A-3 -> A-2 -> A-1 reads as written, from the smallest id."""
    stories = [
        make("backlog/a/A-1-x.md", "A-1", depends_on=["A-3"]),
        make("backlog/a/A-2-x.md", "A-2", depends_on=["A-1"]),
        make("backlog/a/A-3-x.md", "A-3", depends_on=["A-2"]),
    ]
    assert {d.message for d in check_set(stories)} == {"depends_on: dependency cycle A-1 -> A-3 -> A-2 -> A-1"}


def test_each_member_of_two_joined_cycles_is_shown_a_cycle_it_is_on() -> None:
    """A-1 <-> A-2 and A-2 <-> A-3 are one knot: A-3's message names a cycle through A-3,
    pointing at the dependency that leads round."""
    stories = [
        make("backlog/a/A-1-x.md", "A-1", depends_on=["A-2"]),
        make("backlog/a/A-2-x.md", "A-2", depends_on=["A-1", "A-3"]),
        make("backlog/a/A-3-x.md", "A-3", depends_on=["A-2"]),
    ]
    assert lines(check_set(stories)) == [
        "backlog/a/A-1-x.md:4:14: depends_on: dependency cycle A-1 -> A-2 -> A-1",
        "backlog/a/A-2-x.md:4:14: depends_on: dependency cycle A-1 -> A-2 -> A-1",
        "backlog/a/A-3-x.md:4:14: depends_on: dependency cycle A-3 -> A-2 -> A-3",
    ]


def test_long_chain_has_no_recursion_limit() -> None:
    stories = [make(f"backlog/c/C-{i}-x.md", f"C-{i}", depends_on=[f"C-{i + 1}"]) for i in range(3000)]
    stories.append(make("backlog/c/C-3000-x.md", "C-3000", depends_on=["C-0"]))
    found = check_set(stories)
    assert len(found) == 3001
    assert {d.code for d in found} == {"dependency-cycle"}


# --- validating a few paths reads only what it needs --------------------------------------------------


def test_validating_one_path_resolves_dependencies_from_the_rest_of_the_tree(repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "a", depends_on=["API-1"])
    repo.story("backlog", "api", "API-1", "b", depends_on=["API-2"])
    repo.story("completed", "api", "API-2", "c", depends_on=["WEB-1"])
    repo.story("backlog", "web", "WEB-2", "d", depends_on=["GHOST-1"])
    config = Config(repo=repo.path)
    checked = validate_paths(config, WorkTreeSource(config), ["backlog/web/WEB-1-a.md"])
    assert checked.files == 1
    assert [str(d) for d in checked.diagnostics] == [
        "backlog/web/WEB-1-a.md:4:14: depends_on: dependency cycle API-1 -> API-2 -> WEB-1 -> API-1"
    ]
    checked = validate_paths(config, WorkTreeSource(config), ["backlog/web/WEB-2-d.md"])
    assert [d.code for d in checked.diagnostics] == ["missing-dependency"]
    whole = validate_paths(config, WorkTreeSource(config), None)
    assert whole.files == 4
    assert sorted(d.path for d in whole.diagnostics) == [
        "backlog/api/API-1-b.md",
        "backlog/web/WEB-1-a.md",
        "backlog/web/WEB-2-d.md",
        "completed/api/API-2-c.md",
    ]


def test_validating_one_path_sees_a_duplicate_elsewhere(repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "a")
    repo.story("active", "api", "WEB-1", "b")
    config = Config(repo=repo.path)
    checked = validate_paths(config, WorkTreeSource(config), ["active/api/WEB-1-b.md"])
    assert [str(d) for d in checked.diagnostics] == [
        "active/api/WEB-1-b.md:2:5: id 'WEB-1' is already used by backlog/web/WEB-1-a.md (the same id);"
        " ids are unique across all backlogs"
    ]


def test_non_story_files_are_ignored(repo: Repo) -> None:
    repo.write("backlog/web/README.md", "# not a story\n")
    repo.write("backlog/README.md", "nope")
    repo.write("backlog/web/plans/WEB-9-plan.md", "nope")
    repo.write("drafts/web/WEB-8-x.md", "nope")
    repo.write("backlog/web/notes.txt", "nope")
    repo.story("backlog", "web", "WEB-1", "a")
    config = Config(repo=repo.path)
    checked = validate_paths(config, WorkTreeSource(config), None)
    assert checked.files == 1
    assert checked.diagnostics == []
