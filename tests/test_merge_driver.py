"""``storysync merge-driver``: git merges two branches' edits of one story field by field
(real git: merge, rebase, cherry-pick)."""

from __future__ import annotations

import pytest

from storysync.cli.hooks import MERGE_ATTRIBUTE, install_merge_driver
from tests.conftest import Repo

PATH = "backlog/web/WEB-1-login.md"
STORY = (
    "---\n"
    "id: WEB-1\n"
    "title: 'Login page'  # what the user sees\n"
    "priority: low\n"
    "tags: [auth]\n"
    "---\n"
    "Intro.\n"
    "\n"
    "Steps.\n"
    "\n"
    "Notes.\n"
)


@pytest.fixture
def story_repo(repo: Repo) -> Repo:
    repo.write(PATH, STORY)
    repo.commit("story")
    install_merge_driver(repo.path, repo.path)
    repo.commit("merge driver")
    return repo


def _edit(repo: Repo, old: str, new: str, message: str) -> None:
    text = (repo.path / PATH).read_text()
    assert old in text
    repo.write(PATH, text.replace(old, new))
    repo.commit(message)


def _branches(repo: Repo, main_edit: tuple[str, str], feature_edit: tuple[str, str]) -> None:
    repo.git("checkout", "-q", "-b", "feature")
    _edit(repo, *feature_edit, "feature edit")
    repo.git("checkout", "-q", "main")
    _edit(repo, *main_edit, "main edit")


def test_install_hooks_sets_up_the_driver(repo: Repo) -> None:
    repo.commit("initial")
    assert repo.run("install-hooks") == 0
    assert (repo.path / ".gitattributes").read_text() == MERGE_ATTRIBUTE + "\n"
    assert repo.git("config", "merge.storysync.driver").endswith("-m storysync merge-driver %O %A %B %P")
    assert repo.run("install-hooks") == 0
    assert (repo.path / ".gitattributes").read_text() == MERGE_ATTRIBUTE + "\n"  # not twice
    assert repo.git("check-attr", "merge", "--", PATH) == f"{PATH}: merge: storysync"


def test_two_branches_editing_different_fields_merge_without_conflict(story_repo: Repo) -> None:
    repo = story_repo
    _branches(repo, ("priority: low", "priority: high"), ("title: 'Login page'", "title: 'Sign in page'"))
    repo.git("merge", "-q", "--no-edit", "feature")
    assert (repo.path / PATH).read_text() == STORY.replace("priority: low", "priority: high").replace(
        "'Login page'", "'Sign in page'"
    )


def test_frontmatter_and_body_edits_on_adjacent_lines_merge(story_repo: Repo) -> None:
    """Git's line merge would conflict here (the edits touch neighbouring lines); field by field they do not."""
    repo = story_repo
    _branches(repo, ("tags: [auth]\n", "tags: [auth, ui]\n"), ("---\nIntro.", "---\nIntroduction."))
    repo.git("merge", "-q", "--no-edit", "feature")
    text = (repo.path / PATH).read_text()
    assert "tags: [auth, ui]\n---\nIntroduction.\n" in text


def test_tags_added_on_both_branches_merge_as_a_set(story_repo: Repo) -> None:
    repo = story_repo
    _branches(repo, ("tags: [auth]", "tags: [auth, ui]"), ("tags: [auth]", "tags: [auth, mobile]"))
    repo.git("merge", "-q", "--no-edit", "feature")
    assert "tags: [auth, ui, mobile]\n" in (repo.path / PATH).read_text()


def test_the_same_field_changed_on_both_branches_conflicts_on_that_field_only(story_repo: Repo) -> None:
    repo = story_repo
    repo.git("checkout", "-q", "-b", "feature")
    _edit(repo, "title: 'Login page'", "title: 'Sign in'", "feature title")
    _edit(repo, "Notes.", "Notes, more.", "feature body")
    repo.git("checkout", "-q", "main")
    _edit(repo, "title: 'Login page'", "title: 'Log in'", "main title")
    done = repo.git("merge", "--no-edit", "feature", check=False)
    assert repo.git("diff", "--name-only", "--diff-filter=U") == PATH, done
    text = (repo.path / PATH).read_text()
    assert text == (
        "---\nid: WEB-1\n"
        "<<<<<<< ours\ntitle: 'Log in'  # what the user sees\n"
        "||||||| base\ntitle: 'Login page'  # what the user sees\n"
        "=======\ntitle: 'Sign in'  # what the user sees\n"
        ">>>>>>> theirs\n"
        "priority: low\ntags: [auth]\n---\nIntro.\n\nSteps.\n\nNotes, more.\n"
    )


def test_rebase_and_cherry_pick_merge_field_by_field(story_repo: Repo) -> None:
    repo = story_repo
    _branches(repo, ("priority: low", "priority: high"), ("Steps.", "Steps: 1, 2."))
    repo.git("checkout", "-q", "feature")
    repo.git("rebase", "-q", "main")
    text = (repo.path / PATH).read_text()
    assert "priority: high" in text
    assert "Steps: 1, 2." in text
    repo.git("checkout", "-q", "main")
    repo.git("checkout", "-q", "-b", "other")
    _edit(repo, "tags: [auth]", "tags: [auth, ui]", "other tags")
    repo.git("checkout", "-q", "main")
    _edit(repo, "tags: [auth]", "tags: [auth, mobile]", "main tags")
    repo.git("cherry-pick", "other")
    assert "tags: [auth, mobile, ui]\n" in (repo.path / PATH).read_text()


def test_a_merge_that_would_be_an_invalid_story_is_refused(story_repo: Repo) -> None:
    """Each side is valid; together they would not be: the driver refuses, git records a conflict."""
    repo = story_repo
    repo.write("storysync.toml", 'schema = "schema.json"\n')
    repo.write(
        "schema.json",
        '{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",'
        ' "required": ["id", "title"], "not": {"required": ["epic", "assignee"]}}',
    )
    repo.commit("schema: no story has both an epic and an assignee")
    low = "priority: low\n"
    _branches(repo, (low, low + "epic: E1\n"), (low, low + "assignee: ada\n"))
    repo.git("merge", "--no-edit", "feature", check=False)
    assert repo.git("diff", "--name-only", "--diff-filter=U") == PATH
    text = (repo.path / PATH).read_text()
    assert "<<<<<<<" in text  # git's own line merge, with its markers


def test_the_driver_says_why_it_refuses(story_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = story_repo
    sides = {
        "O": STORY,
        "A": STORY.replace("priority: low\n", "priority: low\npoints: 3\n"),
        "B": STORY.replace("priority: low\n", "priority: low\npoints: 3\n").replace("id: WEB-1", "id: WEB-2"),
    }
    for name, text in sides.items():
        repo.write(name, text)
    capsys.readouterr()
    assert repo.run("merge-driver", *(str(repo.path / n) for n in "OAB"), PATH) == 1
    err = capsys.readouterr().err
    assert f"{PATH}: the merge would not be a valid story; resolve it by hand" in err
    assert (repo.path / "A").read_text() == sides["A"]  # a clean line merge: ours is left untouched
