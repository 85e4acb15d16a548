"""A sync's bulk writes: one executemany per table and batch, with values serialised once.

SQLAlchemy processes every parameter of every row (16–20 µs a row for a story:
JSON text for ``tags`` and ``extra``, a DATETIME string per timestamp), which cost
a full sync of 10k stories about half of its write time.  On SQLite the rows are
handed to the driver as they will be stored instead: ``tags``/``extra`` are the JSON
text a ``Record`` carries (``json.dumps``, what SQLAlchemy's JSON type writes
when no serializer is configured), and each distinct timestamp goes once through
SQLAlchemy's own DATETIME bind processor, so the stored bytes are the same.  On
PostgreSQL the same rows go through SQLAlchemy Core, which adapts JSONB and
``timestamptz`` (there the JSON text is loaded back to its value first).

Parameters are always bound, never formatted into the SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.dml import UpdateBase

from storysync.db import tables as m

Row = tuple[Any, ...]


class BulkWriter:
    """Executes a statement once for many rows on one connection, the driver's way."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.raw = conn.dialect.name == "sqlite"
        self._stamp = m.Stamp.dialect_impl(conn.dialect).bind_processor(conn.dialect) if self.raw else None
        self._stamps: dict[tuple[datetime, timedelta | None], Any] = {}
        self._sql: dict[tuple[int, tuple[str, ...]], tuple[UpdateBase, str, list[int] | None]] = {}

    def stamp(self, when: datetime | None) -> Any:
        """A timestamp parameter: on SQLite the text SQLAlchemy would store, computed once per value."""
        if when is None or self._stamp is None:
            return when
        key = (when, when.utcoffset())  # equal instants at other offsets are stored as other text
        done = self._stamps.get(key)
        if done is None:
            done = self._stamps[key] = self._stamp(when)
        return done

    def json(self, text: str) -> Any:
        """A JSON column parameter from its serialised text."""
        return text if self.raw else json.loads(text)

    def run(self, stmt: UpdateBase, keys: tuple[str, ...], rows: Sequence[Row]) -> None:
        """Execute ``stmt`` once per row; each row holds the values of ``keys``, in that order."""
        if not rows:
            return
        if not self.raw:
            self.conn.execute(stmt, [dict(zip(keys, row, strict=True)) for row in rows])
            return
        sql, order = self._compiled(stmt, keys)
        if order is not None:
            rows = [tuple(row[i] for i in order) for row in rows]
        self.conn.exec_driver_sql(sql, list(rows))

    def _compiled(self, stmt: UpdateBase, keys: tuple[str, ...]) -> tuple[str, list[int] | None]:
        """The statement's SQL for this dialect, and how to reorder ``keys`` into its positions."""
        cache_key = (id(stmt), keys)  # the cache holds ``stmt``, so its id is not reused meanwhile
        found = self._sql.get(cache_key)
        if found is None:
            compiled = stmt.compile(dialect=self.conn.dialect, column_keys=list(keys))
            positions = list(compiled.positiontup or ())
            if sorted(positions) != sorted(keys):
                raise ValueError(f"statement parameters {positions} are not {list(keys)}")
            order = None if positions == list(keys) else [keys.index(k) for k in positions]
            found = self._sql[cache_key] = (stmt, str(compiled), order)
        return found[1], found[2]
