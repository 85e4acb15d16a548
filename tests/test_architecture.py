"""The package keeps the shape docs/architecture.md draws: each package imports only the
layers below it, and no modules import each other in a circle (TYPE_CHECKING and
function-local imports included).  The contracts live in pyproject.toml; import-linter
(``lint-imports``) checks them, as CI and the pre-commit hooks do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports")
    assert exe is not None, "import-linter is a dev dependency: pip install -e '.[dev]'"
    return subprocess.run([exe, "--no-cache"], cwd=root, capture_output=True, text=True, check=False)


def test_every_contract_of_the_architecture_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("storysync/story/model.py", "from storysync.cli import registry", "Layers"),
        ("storysync/ingest/types.py", "from storysync.ingest import run", "No import cycles"),
    ],
)
def test_an_import_against_the_architecture_is_refused(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """The check is real: an upward import, or one that closes a circle, even only for the
    type checker, breaks a contract."""
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "storysync", copy / "storysync", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / module
    text = target.read_text(encoding="utf-8")
    hook = "from __future__ import annotations\n"
    text = text.replace(hook, f"{hook}\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    {line}\n", 1)
    target.write_text(text, encoding="utf-8")
    done = lint_imports(copy)
    assert done.returncode == 1, done.stdout
    assert re.search(rf"{contract}.* BROKEN", done.stdout), done.stdout
