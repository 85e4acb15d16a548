"""``storysync report``: flow figures from a fixed git history, checked against values
worked out by hand, on SQLite and PostgreSQL; and the HTML page in a real browser.

The history (tests/flow_history.py), all times UTC:

| story | first seen   | first active | completed    | lead (days) | cycle (days)          |
| WEB-1 | 03-02 09:00  | 03-03 09:00  | 03-05 09:00  | 3           | 2                     |
| API-2 | 03-02 09:00  | 03-04 15:00  | 03-09 09:00  | 7           | 4.75 (4 d 18 h)       |
| API-1 | 03-02 09:00  | 03-06 12:00  | 03-09 09:00  | 7           | 2.875 (2 d 21 h)      |
| WEB-3 | 03-06 12:00  | 03-06 12:00  | 03-11 18:00  | 5.25        | 5.25                  |
| API-3 | 03-11 18:00 (arrived completed: no flow to measure)                             |

lead: 3, 5.25, 7, 7 -> mean 5.5625, median 6.125, 85th (nearest rank, the 4th of 4) 7
cycle: 2, 2.875, 4.75, 5.25 -> mean 3.71875, median 3.8125, 85th 5.25
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from storysync.views.flow import Move, StoryInfo, compute, parse_when
from tests import flow_history
from tests.conftest import Repo
from tests.png import color_counts

UNTIL = "2026-03-12T09:00:00Z"
STATUSES = ["refinements", "backlog", "active", "completed"]
# stories per status at the end of each day: OLD-1 stays in refinements until its row is
# deleted (when the sync saw it, long after the range)
WIP = {
    "2026-03-02": [2, 3, 0, 0],
    "2026-03-03": [1, 3, 1, 0],
    "2026-03-04": [1, 2, 2, 0],
    "2026-03-05": [1, 2, 1, 1],
    "2026-03-06": [1, 1, 3, 1],
    "2026-03-07": [1, 1, 3, 1],
    "2026-03-08": [1, 1, 3, 1],
    "2026-03-09": [1, 1, 1, 3],
    "2026-03-10": [1, 0, 2, 3],
    "2026-03-11": [2, 2, 1, 5],
    "2026-03-12": [2, 2, 1, 5],
}


@pytest.fixture
def history_repo(repo: Repo, any_db: str) -> Repo:
    """The fixed history, synced into SQLite and into PostgreSQL."""
    flow_history.build(repo)
    return repo


def report(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert repo.run("report", "--format", "json", *args) == 0
    found: dict[str, Any] = json.loads(capsys.readouterr().out)
    return found


def test_figures_match_the_hand_computed_ones(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    finished = history_repo.git("log", "--format=%H", "--grep", "finish WEB-1")
    found = report(history_repo, capsys, "--since", "2026-03-02", "--until", UNTIL)
    assert (found["since"], found["until"]) == ("2026-03-02T00:00:00+00:00", "2026-03-12T09:00:00+00:00")
    assert found["lead_time_days"] == {"count": 4, "mean": 5.5625, "median": 6.125, "p85": 7, "min": 3, "max": 7}
    assert found["cycle_time_days"] == {
        "count": 4,
        "mean": 3.7188,  # 3.71875, to four places
        "median": 3.8125,
        "p85": 5.25,
        "min": 2,
        "max": 5.25,
    }
    assert found["arrived_done"] == 1
    done = {c["id"]: c for c in found["completed"]}
    assert [c["id"] for c in found["completed"]] == ["WEB-1", "API-1", "API-2", "WEB-3"]  # in completion order
    assert done["WEB-1"] == {
        "id": "WEB-1",
        "title": "Login page",
        "backlog": "web",
        "first_seen": "2026-03-02T09:00:00+00:00",
        "started": "2026-03-03T09:00:00+00:00",
        "completed": "2026-03-05T09:00:00+00:00",
        "lead_days": 3,
        "cycle_days": 2,
        "commit": finished,
        "author": "Bea Builder <bea@example.invalid>",
    }
    assert (done["API-2"]["lead_days"], done["API-2"]["cycle_days"]) == (7, 4.75)
    assert (done["API-1"]["lead_days"], done["API-1"]["cycle_days"]) == (7, 2.875)
    assert (done["WEB-3"]["lead_days"], done["WEB-3"]["cycle_days"]) == (5.25, 5.25)
    assert done["API-2"]["author"] == "Cy Coder <cy@example.invalid>"
    assert found["throughput"] == [
        {"week": "2026-W10", "week_start": "2026-03-02", "completed": 1},
        {"week": "2026-W11", "week_start": "2026-03-09", "completed": 3},
    ]
    assert {d["date"]: [d["counts"][s] for s in STATUSES] for d in found["wip"]} == WIP
    assert found["ageing"] == [
        {
            "id": "WEB-2",
            "title": "Signup",
            "backlog": "web",
            "status": "active",
            "started": "2026-03-10T09:00:00+00:00",
            "in_status_since": "2026-03-10T09:00:00+00:00",
            "age_days": 2,
            "in_status_days": 2,
        }
    ]


def test_a_backlog_and_a_shorter_range(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    web = report(history_repo, capsys, "--backlog", "web", "--until", UNTIL)
    assert web["since"] == "2026-03-02T09:00:00+00:00"  # the first move of the backlog
    assert [c["id"] for c in web["completed"]] == ["WEB-1", "WEB-3"]
    assert web["lead_time_days"] == {"count": 2, "mean": 4.125, "median": 4.125, "p85": 5.25, "min": 3, "max": 5.25}
    assert [w["completed"] for w in web["throughput"]] == [1, 1]
    assert web["arrived_done"] == 0
    assert web["wip"][-1]["counts"] == {"refinements": 1, "backlog": 1, "active": 1, "completed": 2}
    # WEB-1 finished before the range, WEB-3 after it (so it is ageing at its end)
    short = report(history_repo, capsys, "--since", "2026-03-06", "--until", "2026-03-10")
    assert short["until"] == "2026-03-10T23:59:59.999999+00:00"
    assert [c["id"] for c in short["completed"]] == ["API-1", "API-2"]
    assert short["cycle_time_days"]["median"] == 3.8125
    assert [w["completed"] for w in short["throughput"]] == [0, 2]
    assert [(a["id"], a["age_days"]) for a in short["ageing"]] == [("WEB-3", 4.5), ("WEB-2", 0.625)]
    assert [d["date"] for d in short["wip"]] == [f"2026-03-{day:02d}" for day in range(6, 11)]


def test_the_table(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert history_repo.run("report", "--until", UNTIL) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "flow of all backlogs, 2026-03-02 09:00 to 2026-03-12 09:00 UTC"
    assert lines[2].split() == ["lead", "time", "4", "5.6", "6.1", "7.0", "3.0", "7.0"]
    assert lines[3].split() == ["cycle", "time", "4", "3.7", "3.8", "5.2", "2.0", "5.2"]
    text = "\n".join(lines)
    assert "(1 story arrived already done" in text
    assert "2026-W11  2026-03-09  3" in text
    assert "WEB-2  active  2026-03-10  2.0" in text


def test_an_incremental_history_gives_the_same_report(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Synced as the hooks do, commit by commit, instead of rebuilt with --full --history."""
    flow_history.build(repo, synced=False)
    order = [repo.git("rev-parse", f"HEAD~{n}") for n in range(8, -1, -1)]
    for sha in order[:-1]:
        assert repo.run("-q", "sync", "--to", sha) == 0
    incremental = report(repo, capsys, "--until", UNTIL)
    assert repo.run("-q", "sync", "--full", "--history", "--to", order[-2]) == 0
    rebuilt = report(repo, capsys, "--until", UNTIL)
    assert incremental == rebuilt
    assert incremental["lead_time_days"]["count"] == 4


def test_bad_ranges_are_usage_errors(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert history_repo.run("report", "--since", "yesterday") == 2
    assert "'yesterday' is not a date" in capsys.readouterr().err
    assert history_repo.run("report", "--since", "2026-03-10", "--until", "2026-03-01") == 2
    assert "is after --until" in capsys.readouterr().err
    assert history_repo.run("report", "--output", str(history_repo.path / "r.txt")) == 2
    assert history_repo.run("report", "--format", "html", "--output", str(history_repo.path / "no/r.html")) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_deleted_story_leaves_the_flow_when_deleted() -> None:
    day = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    moves = [
        Move("A-1", "backlog", day),
        Move("A-2", "backlog", day),
        Move("A-1", None, day.replace(day=3)),  # deleted
    ]
    found = compute(
        {"A-1": StoryInfo("A-1", "", "a")},
        moves,
        {"backlog": "backlog", "completed": "completed"},
        until=day.replace(day=4),
    )
    assert [(d.isoformat(), c) for d, c in found.wip] == [
        ("2026-03-02", {"backlog": 2, "completed": 0}),
        ("2026-03-03", {"backlog": 1, "completed": 0}),
        ("2026-03-04", {"backlog": 1, "completed": 0}),
    ]


def test_when_values() -> None:
    assert parse_when("2026-03-02") == datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert parse_when("2026-03-02", end_of_day=True).isoformat() == "2026-03-02T23:59:59.999999+00:00"
    assert parse_when("2026-03-02T10:00:00+02:00").isoformat() == "2026-03-02T08:00:00+00:00"
    assert parse_when("2026-03-02T10:00:00").isoformat() == "2026-03-02T10:00:00+00:00"


# --------------------------------------------------------------------------- the HTML page

BROWSERS = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")


def browser() -> str:
    """A headless Chromium on this machine; in CI its absence is a failure, elsewhere a skip."""
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        reason = f"no headless browser ({', '.join(BROWSERS)}); apt-get install chromium-headless-shell"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def test_the_html_page_is_self_contained(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert history_repo.run("set", "WEB-2", "title=<script>alert(1)</script> & more") == 0
    capsys.readouterr()
    assert history_repo.run("report", "--format", "html", "--until", UNTIL) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>")
    assert "<script" not in page  # no script of ours, and the title is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    for link in ("http:", "https:", "src=", "href=", "@import", "url("):
        assert link not in page
    for chart in ('<svg id="cfd"', '<svg id="throughput"', '<svg id="cycle-time"'):
        assert chart in page
    assert page.count("<polygon data-status=") == 4
    assert page.count("<circle data-story=") == 4


def test_the_html_page_renders_its_charts_in_a_browser(repo: Repo, tmp_path: Path) -> None:
    """Opened by a real headless Chromium: every chart is drawn (its colours are on screen)."""
    chrome = browser()
    flow_history.build(repo)
    page = tmp_path / "flow.html"
    assert repo.run("report", "--format", "html", "--until", UNTIL, "--output", str(page)) == 0
    shot = tmp_path / "flow.png"
    done = subprocess.run(
        [
            chrome,
            "--headless",
            "--no-sandbox",  # the tests may run as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=960,1500",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert shot.is_file(), done.stderr
    counts = color_counts(shot)
    from storysync.views import html

    for status, color in (("completed", html.DONE_COLOR), ("backlog", html.COLORS[1]), ("active", html.COLORS[2])):
        assert counts[color] > 5000, f"the {status} band of the cumulative flow is not drawn"
    assert counts[html.COLORS[0]] > 500, "the refinements band is not drawn"
    assert counts[html.BAR_COLOR] > 2000, "the throughput bars are not drawn"
    assert counts[html.DOT_COLOR] > 4 * 60, "the cycle-time dots are not drawn"
