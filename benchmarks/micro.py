"""Per-file micro costs, in one process: the numbers that decide a full sync's speed.

Prints one JSON object: name → microseconds per file (or per row), the best of a
few rounds over the same sample of generated stories::

    python -m benchmarks.micro --files 500
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from benchmarks.floor import COLUMNS, FloorLoader, compiled_validator, metadata, stories
from benchmarks.generate import story_files

ROUNDS = 3


def per_item(items: Sequence[Any], fn: Callable[[Any], object]) -> float:
    """Best-of-``ROUNDS`` microseconds per item of ``fn`` over ``items``."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def per_batch(count: int, fn: Callable[[], object]) -> float:
    """Best-of-``ROUNDS`` microseconds per row of ``fn``, which handles ``count`` rows."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


class _Base(DeclarativeBase):
    pass


class _OrmStory(_Base):
    __tablename__ = "orm_stories"
    id: Mapped[str] = mapped_column(primary_key=True)
    backlog_id: Mapped[str]
    status: Mapped[str]
    title: Mapped[str]
    priority: Mapped[str | None]
    points: Mapped[int | None]
    epic: Mapped[str | None]
    assignee: Mapped[str | None]
    body: Mapped[str]
    path: Mapped[str]


def _rows(datas: list[dict[str, Any]], bodies: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": d["id"],
            "backlog_id": "b",
            "status": "backlog",
            "tags": d.get("tags") or [],
            "extra": {},
            "body": body,
            "path": f"backlog/b/{d['id']}.md",
            **{k: d.get(k) for k in COLUMNS},
        }
        for d, body in zip(datas, bodies, strict=True)
    ]


def yaml_costs(fms: list[str]) -> dict[str, float]:
    """PyYAML C and pure-Python loaders, and ruamel's round-trip loader."""
    from ruamel.yaml import YAML

    class PureLoader(yaml.SafeLoader):
        pass

    PureLoader.yaml_implicit_resolvers = FloorLoader.yaml_implicit_resolvers
    rt = YAML(typ="rt")
    return {
        "yaml_c_load": per_item(fms, lambda s: yaml.load(s, Loader=FloorLoader)),  # noqa: S506 - C safe loader
        "yaml_pure_load": per_item(fms, lambda s: yaml.load(s, Loader=PureLoader)),  # noqa: S506 - safe loader
        "ruamel_roundtrip_load": per_item(fms, rt.load),
    }


def schema_costs(datas: list[dict[str, Any]]) -> dict[str, float]:
    """Full jsonschema validation vs the compiled fastjsonschema check."""
    from jsonschema import Draft202012Validator

    from benchmarks.floor import SCHEMA

    validator = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    fast = compiled_validator()
    start = time.perf_counter()
    compiled_validator()
    compile_us = (time.perf_counter() - start) * 1e6
    return {
        "jsonschema_validate": per_item(datas, lambda d: list(validator.iter_errors(d))),
        "fastjsonschema_validate": per_item(datas, fast),
        "fastjsonschema_compile_once": compile_us,
    }


def storysync_costs(texts: list[bytes]) -> dict[str, float]:
    """storysync's own parser (with positions and every safety check) and schema check."""
    from storysync.check.schema import load_checker
    from storysync.story.model import Location
    from storysync.story.parse import parse_story

    loc = Location("backlog/b/X-1.md", "backlog", "backlog", "b", "X-1.md")
    parsed = [parse_story(loc, t) for t in texts]
    checker = load_checker(None)
    return {
        "storysync_parse_story": per_item(texts, lambda t: parse_story(loc, t)),
        "storysync_schema_check": per_item(parsed, checker.check),
    }


def db_costs(rows: list[dict[str, Any]]) -> dict[str, float]:
    """One Core ``executemany`` vs ORM ``add_all``, into in-memory SQLite."""

    def core() -> None:
        engine = create_engine("sqlite://")
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(stories.insert(), rows)
        engine.dispose()

    orm_fields = ("id", "backlog_id", "status", "title", "priority", "points", "epic", "assignee", "body", "path")

    def orm() -> None:
        engine = create_engine("sqlite://")
        _Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            session.add_all([_OrmStory(**{k: r[k] for k in orm_fields}) for r in rows])
        engine.dispose()

    return {"core_executemany_row": per_batch(len(rows), core), "orm_add_all_row": per_batch(len(rows), orm)}


def measure(count: int) -> dict[str, float]:
    """Every micro cost over ``count`` generated stories."""
    texts = [t.encode("utf-8") for t in story_files(count, seed=11).values()]
    fms = [t.decode("utf-8").split("---\n", 2)[1] for t in texts]
    bodies = [t.decode("utf-8").split("---\n", 2)[2] for t in texts]
    datas = [yaml.load(s, Loader=FloorLoader) for s in fms]  # noqa: S506 - C safe loader
    results: dict[str, float] = {}
    results.update(yaml_costs(fms))
    results.update(schema_costs(datas))
    results.update(storysync_costs(texts))
    results.update(db_costs(_rows(datas, bodies)))
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the micro costs as JSON."""
    parser = argparse.ArgumentParser(description="per-file micro costs")
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args(argv)
    print(json.dumps({k: round(v, 2) for k, v in measure(args.files).items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
