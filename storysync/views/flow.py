"""Flow metrics from ``status_history``: lead and cycle time, throughput, work in progress, ageing.

Every figure comes from the recorded moves (a commit's author time for a move
made in git, the write's time for one made in the database), so a history
rebuilt with ``sync --full --history`` gives the real past.  Times are UTC;
days are calendar days in UTC; weeks start on Monday.

* lead time: from the story's first recorded status to its completion;
* cycle time: from the first time it entered an in-progress status (``active``,
  or the configured stages from the started one up to the done one) to its
  completion; a story that never was in progress has none;
* completion: the last move into the done status, when the story is still done
  at the end of the range; it counts when it falls inside the range;
* throughput: completions per week; work in progress: stories per status at the
  end of each day (a deleted story leaves when its row was deleted);
* ageing: the stories in progress at the end of the range, and for how long.

A story whose history starts in the done status (synced once, already completed,
without ``--history``) has no known flow: it is left out of lead time, cycle time
and throughput, and counted as ``arrived_done``.

Percentiles are nearest-rank: the 85th of n sorted values is the ceil(0.85 n)-th.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from statistics import mean, median
from typing import TYPE_CHECKING, Any

from storysync.errors import UsageError
from storysync.views.queries import done_status, id_key, stamp, started_status, status_order

if TYPE_CHECKING:
    from storysync.db.queries import Reader

DAY = timedelta(days=1)
HISTORY = (
    'SELECT h.story_id, h.to_status, h.changed_at, h.id, h."commit", h.author '
    "FROM status_history h JOIN stories s ON s.id = h.story_id"
)
STORIES = "SELECT id, title, backlog_id, status, deleted_at FROM stories"


@dataclass(frozen=True)
class Move:
    """One recorded status change (``to`` None: the story was deleted)."""

    story_id: str
    to: str | None
    at: datetime
    order: int = 0
    commit: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class StoryInfo:
    """What a report names a story by."""

    id: str
    title: str
    backlog: str


@dataclass(frozen=True)
class Range:
    """The report's period, both ends included (UTC)."""

    since: datetime
    until: datetime

    def days(self) -> list[date]:
        first, last = self.since.date(), self.until.date()
        return [first + DAY * i for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class Summary:
    """Statistics of a list of durations, in days."""

    count: int
    mean: float | None = None
    median: float | None = None
    p85: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0)
        ordered = sorted(values)
        return cls(
            len(ordered),
            _days(mean(ordered)),
            _days(median(ordered)),
            _days(percentile(ordered, 85)),
            _days(ordered[0]),
            _days(ordered[-1]),
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of sorted values (the ceil(pct/100 n)-th)."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _days(value: float) -> float:
    return round(value, 4)


def _span(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 86400


@dataclass(frozen=True)
class Completed:
    """A story completed in the range, with its lead and cycle time in days."""

    story: StoryInfo
    first_seen: datetime
    started: datetime | None
    completed: datetime
    lead_days: float
    cycle_days: float | None
    commit: str | None
    author: str | None


@dataclass(frozen=True)
class Ageing:
    """A story in progress at the end of the range."""

    story: StoryInfo
    status: str
    started: datetime
    in_status_since: datetime
    age_days: float
    in_status_days: float


@dataclass
class Report:
    """Every figure of a flow report."""

    range: Range
    backlogs: tuple[str, ...]
    statuses: list[str]
    done: str
    in_progress: list[str]
    completed: list[Completed] = field(default_factory=list)
    arrived_done: int = 0
    throughput: list[tuple[date, int]] = field(default_factory=list)
    wip: list[tuple[date, dict[str, int]]] = field(default_factory=list)
    ageing: list[Ageing] = field(default_factory=list)

    @property
    def lead(self) -> Summary:
        return Summary.of([c.lead_days for c in self.completed])

    @property
    def cycle(self) -> Summary:
        return Summary.of([c.cycle_days for c in self.completed if c.cycle_days is not None])

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (times in ISO 8601 UTC, durations in days)."""
        return {
            "since": self.range.since.isoformat(),
            "until": self.range.until.isoformat(),
            "backlogs": list(self.backlogs),
            "statuses": self.statuses,
            "done_status": self.done,
            "in_progress_statuses": self.in_progress,
            "lead_time_days": vars(self.lead),
            "cycle_time_days": vars(self.cycle),
            "arrived_done": self.arrived_done,
            "completed": [_completed_dict(c) for c in self.completed],
            "throughput": [
                {"week": _week_name(start), "week_start": start.isoformat(), "completed": n}
                for start, n in self.throughput
            ],
            "wip": [{"date": day.isoformat(), "counts": counts} for day, counts in self.wip],
            "ageing": [_ageing_dict(a) for a in self.ageing],
        }


def _story_dict(story: StoryInfo) -> dict[str, Any]:
    return {"id": story.id, "title": story.title, "backlog": story.backlog}


def _completed_dict(c: Completed) -> dict[str, Any]:
    return {
        **_story_dict(c.story),
        "first_seen": c.first_seen.isoformat(),
        "started": c.started.isoformat() if c.started else None,
        "completed": c.completed.isoformat(),
        "lead_days": _days(c.lead_days),
        "cycle_days": None if c.cycle_days is None else _days(c.cycle_days),
        "commit": c.commit,
        "author": c.author,
    }


def _ageing_dict(a: Ageing) -> dict[str, Any]:
    return {
        **_story_dict(a.story),
        "status": a.status,
        "started": a.started.isoformat(),
        "in_status_since": a.in_status_since.isoformat(),
        "age_days": _days(a.age_days),
        "in_status_days": _days(a.in_status_days),
    }


def _week_name(start: date) -> str:
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


# --------------------------------------------------------------------------- the computation


def compute(
    stories: Mapping[str, StoryInfo],
    moves: Iterable[Move],
    stages: Mapping[str, str],
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    backlogs: Sequence[str] = (),
) -> Report:
    """The report of ``moves`` (each story's status changes and deletion) over a range:
    from ``since`` (default: the first move) to ``until`` (default: ``now``)."""
    ordered = sorted(moves, key=lambda m: (m.at, m.order))
    end = until or now or datetime.now(timezone.utc)
    start = since or (ordered[0].at if ordered else end)
    if start > end:
        raise UsageError(f"--since {start.isoformat()} is after --until {end.isoformat()}")
    by_story: dict[str, list[Move]] = {}
    for move in ordered:
        by_story.setdefault(move.story_id, []).append(move)
    seen = {m.to for m in ordered if m.to is not None}
    done = done_status(stages)
    report = Report(Range(start, end), tuple(backlogs), status_order(stages, seen), done, _in_progress(stages, done))
    for story_id in sorted(by_story, key=id_key):
        _story_figures(report, stories.get(story_id) or StoryInfo(story_id, "", ""), by_story[story_id])
    report.completed.sort(key=lambda c: (c.completed, id_key(c.story.id)))
    report.ageing.sort(key=lambda a: (-a.age_days, id_key(a.story.id)))
    report.throughput = _throughput(report)
    report.wip = _wip(ordered, report)
    return report


def _in_progress(stages: Mapping[str, str], done: str) -> list[str]:
    statuses = list(dict.fromkeys(stages.values()))
    started = started_status(stages)
    if started is None or started not in statuses:
        return []
    last = statuses.index(done) if done in statuses else len(statuses)
    return statuses[statuses.index(started) : last]


def _story_figures(report: Report, story: StoryInfo, moves: list[Move]) -> None:
    """Add the story's completion or ageing, as of the end of the range."""
    until = report.range.until
    past = [m for m in moves if m.at <= until]
    if not past or past[-1].to is None:
        return
    last = past[-1]
    if last.to == report.done:
        if past[0].to == report.done and all(m.to == report.done for m in past):
            report.arrived_done += int(last.at >= report.range.since)
            return
        if last.at < report.range.since:
            return
        started = next((m.at for m in past if m.to in report.in_progress), None)
        report.completed.append(
            Completed(
                story,
                past[0].at,
                started,
                last.at,
                _span(past[0].at, last.at),
                None if started is None else _span(started, last.at),
                last.commit,
                last.author,
            )
        )
    elif last.to in report.in_progress:
        started = next(m.at for m in past if m.to in report.in_progress)
        report.ageing.append(Ageing(story, last.to, started, last.at, _span(started, until), _span(last.at, until)))


def _throughput(report: Report) -> list[tuple[date, int]]:
    first, last = week_start(report.range.since.date()), week_start(report.range.until.date())
    weeks = {first + timedelta(weeks=i): 0 for i in range((last - first).days // 7 + 1)}
    for c in report.completed:
        weeks[week_start(c.completed.date())] += 1
    return list(weeks.items())


def _wip(ordered: list[Move], report: Report) -> list[tuple[date, dict[str, int]]]:
    """Stories per status at the end of each day of the range (at ``until`` on its last day)."""
    status_of: dict[str, str] = {}
    counts = dict.fromkeys(report.statuses, 0)
    out: list[tuple[date, dict[str, int]]] = []
    i = 0
    for day in report.range.days():
        cutoff = min(datetime.combine(day + DAY, time(), timezone.utc), report.range.until + timedelta(microseconds=1))
        while i < len(ordered) and ordered[i].at < cutoff:
            _apply(ordered[i], status_of, counts)
            i += 1
        out.append((day, dict(counts)))
    return out


def _apply(move: Move, status_of: dict[str, str], counts: dict[str, int]) -> None:
    old = status_of.pop(move.story_id, None)
    if old is not None:
        counts[old] -= 1
    if move.to is not None:
        status_of[move.story_id] = move.to
        counts[move.to] = counts.get(move.to, 0) + 1


# --------------------------------------------------------------------------- reading


def parse_when(text: str, end_of_day: bool = False) -> datetime:
    """A ``--since``/``--until`` value: a date (its first or last instant, UTC) or an ISO 8601
    date-time (UTC when it names no offset); ``UsageError`` otherwise."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end_of_day else time.min, timezone.utc)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{text!r} is not a date (2026-04-01) or an ISO 8601 date-time") from exc
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def read_report(
    reader: Reader,
    stages: Mapping[str, str],
    backlogs: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> Report:
    """The flow report of the stories of ``backlogs`` (all when empty) over a range."""
    stories_where, params = _in_backlogs("backlog_id", backlogs)
    history_where, _ = _in_backlogs("s.backlog_id", backlogs)
    stories: dict[str, StoryInfo] = {}
    moves: list[Move] = []
    for story_id, title, backlog, _status, deleted_at in reader.rows(STORIES + stories_where, params):
        stories[story_id] = StoryInfo(story_id, title, backlog)
        gone = stamp(deleted_at)
        if gone is not None:
            moves.append(Move(story_id, None, gone, order=1 << 62))
    for story_id, to, changed_at, order, commit, author in reader.rows(HISTORY + history_where, params):
        at = stamp(changed_at)
        assert at is not None
        moves.append(Move(story_id, to, at, order, commit, author))
    return compute(stories, moves, stages, since, until, now, backlogs)


def _in_backlogs(column: str, backlogs: Sequence[str]) -> tuple[str, dict[str, str]]:
    """`` WHERE column IN (:backlog_0, ...)`` and its bound values; nothing for all backlogs."""
    if not backlogs:
        return "", {}
    names = [f"backlog_{i}" for i in range(len(backlogs))]
    return f" WHERE {column} IN ({', '.join(':' + n for n in names)})", dict(zip(names, backlogs, strict=True))
