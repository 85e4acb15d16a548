"""Bad input, end to end: each kind is refused with its exact message and writes nothing.

Kinds are data files: ``tests/examples/invalid/<kind>.md`` (placed at the path its
expected message names) or ``tests/examples/invalid/<kind>/`` (a tree copied into the
repository), with ``<kind>.expected`` holding the exact ``path:line:col: message``
lines.  Kinds that cannot be committed as data (big files, symlinks, odd file names)
are generated below, each with its exact expected message too.  Every kind must make
``storysync validate`` exit 1 and ``storysync sync`` (from git objects) exit 1 with
the database exactly as it was, apart from the run's audit row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from storysync.errors import Diagnostic
from tests.conftest import GIT_ENV, Repo, make_repo, story_text

EXAMPLES = Path(__file__).parent / "examples"
INVALID = EXAMPLES / "invalid"
VALID = EXAMPLES / "valid"
BASE = "backlog/api/API-1-base.md"
WHERE = re.compile(r"^(.*):(\d+):(\d+): ")
DATA_TABLES = ("backlogs", "stories", "dependencies", "status_history", "sync_state", "conflicts", "changes")


def data_kinds() -> list[str]:
    return sorted(p.stem for p in INVALID.glob("*.expected"))


def expected_lines(kind: str) -> list[str]:
    return (INVALID / f"{kind}.expected").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed repository with one valid story, already synced into its database."""
    home = tmp_path_factory.mktemp("home")
    repo = make_repo_with_env(tmp_path_factory.mktemp("template") / "repo", home)
    repo.write(BASE, story_text("API-1", title="Base story"))
    repo.commit("base")
    from storysync.cli.main import main

    assert main(["--repo", str(repo.path), "--db", repo.db_url, "-q", "sync"]) == 0
    return repo.path


def make_repo_with_env(path: Path, home: Path) -> Repo:
    saved = {k: os.environ.get(k) for k in (*GIT_ENV, "HOME")}
    os.environ.update({**GIT_ENV, "HOME": str(home)})
    try:
        return make_repo(path)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def work(template: Path, tmp_path: Path) -> Repo:
    """A fresh copy of the template repository and its database."""
    target = tmp_path / "repo"
    shutil.copytree(template, target, symlinks=True)
    return Repo(target)


def snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every data table (not the sync_runs audit trail)."""
    with sqlite3.connect(db) as conn:
        return {t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}")), key=repr) for t in DATA_TABLES}  # noqa: S608


def audit_rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT outcome, errors FROM sync_runs ORDER BY id"))


def assert_refused(work: Repo, capsys: pytest.CaptureFixture[str], expected: list[str]) -> None:
    """validate exits 1 with exactly ``expected``; sync from git exits 1 and writes nothing."""
    capsys.readouterr()
    assert work.run("validate") == 1
    assert capsys.readouterr().out.splitlines() == expected
    work.commit("bad input")
    changed = changed_paths(work)
    before, runs_before = snapshot(work.db_path), audit_rows(work.db_path)
    assert work.run("sync") == 1
    reported = capsys.readouterr().out.splitlines()
    # an incremental sync reads only the changed files; the unchanged file of a
    # duplicate-id pair is then not reported again
    assert reported in (expected, [line for line in expected if _path(line) in changed])
    assert snapshot(work.db_path) == before
    runs = audit_rows(work.db_path)
    assert runs[: len(runs_before)] == runs_before
    assert len(runs) == len(runs_before) + 1
    outcome, errors = runs[-1]
    assert outcome == "invalid"
    recorded = json.loads(errors)
    assert [str(Diagnostic(**e)) for e in recorded] == reported


def changed_paths(work: Repo) -> set[str]:
    """The paths the last commit changed, decoded as the sync decodes them (any bytes survive)."""
    done = subprocess.run(
        ["git", "diff", "--name-only", "-z", "HEAD~1", "HEAD"], cwd=work.path, capture_output=True, check=True
    )
    return {os.fsdecode(p) for p in done.stdout.split(b"\0") if p}


def _path(line: str) -> str:
    """The raw path of an expected line (control characters are escaped in the text)."""
    match = WHERE.match(line)
    assert match, line
    shown = match.group(1)
    return shown.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in shown else shown


def place(work: Repo, kind: str, expected: list[str]) -> None:
    tree = INVALID / kind
    if tree.is_dir():
        shutil.copytree(tree, work.path, dirs_exist_ok=True)
        return
    # the file goes where the first expected line naming a new file says
    target = next(p for p in map(_path, expected) if not (work.path / p).exists())
    work.write(target, (INVALID / f"{kind}.md").read_bytes())


def test_enough_kinds() -> None:
    """Issue 8 asks for at least 25 kinds of bad input (data files and generated ones)."""
    assert len(data_kinds()) + len(GENERATED) >= 25
    for kind in data_kinds():
        assert (INVALID / f"{kind}.md").is_file() or (INVALID / kind).is_dir(), kind


@pytest.mark.parametrize("kind", data_kinds())
def test_data_kind_refused(kind: str, work: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    expected = expected_lines(kind)
    place(work, kind, expected)
    assert_refused(work, capsys, expected)


# --- generated kinds -----------------------------------------------------------------------

Generator = Callable[[Repo], list[str]]


def gen_big_frontmatter(work: Repo) -> list[str]:
    filler = "".join(f"k{i:05}: {'x' * 60}\n" for i in range(1100))  # ~74 KB of keys
    work.write("backlog/web/WEB-1-big.md", f"---\nid: WEB-1\ntitle: Big\n{filler}---\nbody\n")
    return ["backlog/web/WEB-1-big.md:1:1: frontmatter is over 64 KiB"]


def gen_five_mb(work: Repo) -> list[str]:
    body = ("lorem ipsum " * 90 + "\n") * 4900
    data = f"---\nid: WEB-1\ntitle: Huge\n---\n{body}".encode()
    assert len(data) > 5_000_000
    work.write("backlog/web/WEB-1-huge.md", data)
    return [f"backlog/web/WEB-1-huge.md:1:1: file is {len(data)} bytes; the limit is 1048576 (1 MiB)"]


def gen_just_over_limit(work: Repo) -> list[str]:
    head = b"---\nid: WEB-1\ntitle: Just over\n---\n"
    data = head + b"a" * (1024 * 1024 + 1 - len(head))
    work.write("backlog/web/WEB-1-over.md", data)
    return ["backlog/web/WEB-1-over.md:1:1: file is 1048577 bytes; the limit is 1048576 (1 MiB)"]


def gen_symlink(work: Repo) -> list[str]:
    link = work.path / "backlog/web/WEB-1-link.md"
    link.parent.mkdir(parents=True)
    link.symlink_to("../api/API-1-base.md")
    return [
        "backlog/web/WEB-1-link.md:1:1: story file is a symlink; a story must be a regular file"
        " (symlinks are not followed)"
    ]


def gen_dangling_symlink(work: Repo) -> list[str]:
    link = work.path / "active/web/WEB-1-gone.md"
    link.parent.mkdir(parents=True)
    link.symlink_to("/nonexistent/WEB-1.md")
    return [
        "active/web/WEB-1-gone.md:1:1: story file is a symlink; a story must be a regular file"
        " (symlinks are not followed)"
    ]


def gen_symlinked_backlog(work: Repo) -> list[str]:
    (work.path / "backlog" / "web").symlink_to("api", target_is_directory=True)  # API-1 seen twice
    return [
        "backlog/web:1:1: backlog directory is a symlink; stage and backlog directories must be real directories"
        " (symlinks are not followed)"
    ]


def gen_symlinked_stage(work: Repo) -> list[str]:
    (work.path / "active").symlink_to("backlog", target_is_directory=True)
    return [
        "active:1:1: stage directory is a symlink; stage and backlog directories must be real directories"
        " (symlinks are not followed)"
    ]


def gen_newline_name(work: Repo) -> list[str]:
    work.write("backlog/web/WEB-1-two\nlines.md", story_text("WEB-1", title="Newline in name"))
    return [
        "backlog/web/WEB-1-two\\nlines.md:1:1: file name contains the control character '\\n';"
        " rename the file to printable characters"
    ]


def gen_control_name(work: Repo) -> list[str]:
    work.write("backlog/web/WEB-1-\x1b[31mred.md", story_text("WEB-1", title="Escape in name"))
    return [
        "backlog/web/WEB-1-\\x1b[31mred.md:1:1: file name contains the control character '\\x1b';"
        " rename the file to printable characters"
    ]


def gen_control_backlog(work: Repo) -> list[str]:
    work.write("backlog/we\tb/WEB-1-tab.md", story_text("WEB-1", title="Tab in backlog"))
    return [
        "backlog/we\\tb/WEB-1-tab.md:1:1: file name contains the control character '\\t';"
        " rename the file to printable characters"
    ]


def gen_not_utf8_name(work: Repo) -> list[str]:
    folder = work.path / "backlog" / "web"
    folder.mkdir(parents=True)
    with open(os.fsencode(folder) + b"/WEB-1-caf\xe9.md", "wb") as fh:  # a Latin-1 name, as git allows
        fh.write(story_text("WEB-1", title="Latin-1 file name").encode())
    return ["backlog/web/WEB-1-caf\\xe9.md:1:1: file name is not valid UTF-8; rename the file to UTF-8 characters"]


GENERATED: dict[str, Generator] = {
    "big-frontmatter": gen_big_frontmatter,
    "five-mb-file": gen_five_mb,
    "just-over-1mib": gen_just_over_limit,
    "symlink": gen_symlink,
    "dangling-symlink": gen_dangling_symlink,
    "symlinked-backlog-directory": gen_symlinked_backlog,
    "symlinked-stage-directory": gen_symlinked_stage,
    "newline-in-name": gen_newline_name,
    "control-char-in-name": gen_control_name,
    "tab-in-backlog-name": gen_control_backlog,
    "not-utf8-file-name": gen_not_utf8_name,
}


@pytest.mark.parametrize("kind", sorted(GENERATED))
def test_generated_kind_refused(kind: str, work: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    expected = GENERATED[kind](work)
    assert_refused(work, capsys, expected)


# --- kinds that look odd but are valid -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in VALID.glob("*.md")))
def test_valid_example_accepted_byte_exact(name: str, work: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """BOM, CRLF, odd bodies, quoted look-alikes: valid, and the body is stored byte for byte."""
    from storysync.story.parse import split_body

    data = (VALID / name).read_bytes()
    rel = f"backlog/web/{name}"
    work.write(rel, data)
    assert work.run("validate") == 0, capsys.readouterr().out
    work.commit("valid example")
    assert work.run("sync") == 0, capsys.readouterr().out
    with sqlite3.connect(work.db_path) as conn:
        body, path = conn.execute(
            "SELECT body, path FROM stories WHERE id = ?", (name.split("-")[0] + "-" + name.split("-")[1],)
        ).fetchone()
    assert path == rel
    assert body == split_body(data)
    assert data.endswith(body.encode("utf-8"))
