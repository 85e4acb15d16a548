"""The package built as a wheel (not the editable install) carries its schema and migrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        cwd=out,
    )
    assert done.returncode == 0, done.stderr
    [built] = out.glob("storysync-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        cwd=target,
    )
    assert done.returncode == 0, done.stderr
    return target


def test_wheel_contains_the_schema(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "storysync/schemas/story.schema.json" in names
        packaged = json.loads(zf.read("storysync/schemas/story.schema.json"))
        assert any(n.startswith("storysync/db/migrations/versions/0001") for n in names)
        assert "storysync/db/migrations/env.py" in names
        assert "storysync/db/migrations/script.py.mako" in names
        assert not any(n.startswith("tests/") for n in names)
    assert packaged == json.loads((ROOT / "schemas/story.schema.json").read_text(encoding="utf-8"))


def test_installed_wheel_finds_its_own_schema_and_migrations(installed: Path, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import storysync
        from storysync.check.schema import default_schema_path, load_checker
        from storysync.db.database import Database
        path = default_schema_path()
        checker = load_checker()
        db = Database("sqlite:///" + sys.argv[1])
        db.ensure_schema()
        print(json.dumps({
            "package": storysync.__file__,
            "schema": str(path),
            "checker": checker.source,
            "revision": db.schema_revision(),
        }))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "wheel.db")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,  # not the source tree, which would shadow the installed package
        env=env,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["package"]).is_relative_to(installed)
    assert Path(found["schema"]) == installed / "storysync" / "schemas" / "story.schema.json"
    assert found["checker"] == found["schema"]
    from storysync.db.database import HEAD_REVISION

    assert found["revision"] == HEAD_REVISION
