"""The raw floor of a full sync: the least work any files → SQLite loader must do.

Read every story file, split off the frontmatter, load it with PyYAML's C loader
(timestamps kept as strings, as storysync keeps them), check it with a compiled
fastjsonschema validator, and write one row per story with SQLAlchemy Core
``executemany`` in batches of 2000, all in one transaction (streamed, as a full
sync writes, so that its peak memory is a fair comparison too).  No positions,
no cross-file checks, no history: a full sync cannot be cheaper than this, so it
is measured against it::

    python -m benchmarks.floor REPO DB_FILE
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Text, create_engine

STAGES = ("refinements", "backlog", "active", "completed")
SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "story.schema.json"
COLUMNS = ("title", "priority", "points", "epic", "assignee")
BATCH = 2000


class FloorLoader(yaml.CSafeLoader):
    """The C safe loader, with timestamps left as the strings that were written."""


FloorLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}

metadata = MetaData()
stories = Table(
    "stories",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("backlog_id", String(200)),
    Column("status", String(100)),
    Column("title", Text),
    Column("priority", String(20)),
    Column("points", Integer),
    Column("epic", Text),
    Column("assignee", Text),
    Column("tags", JSON),
    Column("extra", JSON),
    Column("body", Text),
    Column("path", Text),
)


def compiled_validator() -> Any:
    """The story schema compiled by fastjsonschema (as draft-07)."""
    text = SCHEMA.read_text(encoding="utf-8").replace('"$defs"', '"definitions"').replace("#/$defs/", "#/definitions/")
    schema = json.loads(text)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(schema)


def story_paths(repo: Path) -> list[tuple[str, str, str]]:
    """(path, stage, backlog) of every ``<stage>/<backlog>/*.md`` file."""
    out = []
    for stage in STAGES:
        stage_dir = repo / stage
        if not stage_dir.is_dir():
            continue
        for backlog in os.scandir(stage_dir):
            for item in os.scandir(backlog.path):
                if item.name.endswith(".md") and item.name != "README.md":
                    out.append((item.path, stage, backlog.name))
    return out


def row(path: str, stage: str, backlog: str, validate: Any) -> dict[str, Any]:
    """One file → one validated row."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    _, fm, body = text.split("---\n", 2)
    data = yaml.load(fm, Loader=FloorLoader)  # noqa: S506 - FloorLoader is the C *safe* loader
    validate(data)
    values = {k: data.get(k) for k in COLUMNS}
    extra = {k: v for k, v in data.items() if k not in COLUMNS and k not in ("id", "tags", "depends_on")}
    return {
        "id": data["id"],
        "backlog_id": backlog,
        "status": stage,
        "tags": data.get("tags") or [],
        "extra": extra,
        "body": body,
        "path": path,
        **values,
    }


def main(argv: list[str] | None = None) -> int:
    """Load every story of REPO into the SQLite file DB_FILE."""
    args = sys.argv[1:] if argv is None else argv
    repo, db_file = Path(args[0]), Path(args[1])
    validate = compiled_validator()
    rows: Iterator[dict[str, Any]] = (row(p, stage, backlog, validate) for p, stage, backlog in story_paths(repo))
    engine = create_engine(f"sqlite:///{db_file}")
    metadata.create_all(engine)
    written = 0
    with engine.begin() as conn:
        while batch := list(islice(rows, BATCH)):
            conn.execute(stories.insert(), batch)
            written += len(batch)
    engine.dispose()
    print(f"{written} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
