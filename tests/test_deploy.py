"""deploy/: the systemd unit parses, the workflow and dashboard load, the alert rules
are valid YAML and name only metrics that ``storysync watch`` exports."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import generate_latest

from storysync.cli.group import cli
from storysync.cli.registry import COMMANDS
from storysync.watch.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "systemd" / "storysync-watch@.service"
RULES = DEPLOY / "prometheus" / "storysync-alerts.yml"
SCRAPE = DEPLOY / "prometheus" / "scrape.yml"
DASHBOARD = DEPLOY / "grafana" / "storysync-watch.json"
WORKFLOW = DEPLOY / "ci" / "storysync-export.yml"
METRIC = re.compile(r"\bstorysync_[a-z0-9_]+")


def exported_metric_names() -> set[str]:
    """Every series name the watch metrics registry exposes (``_total``, ``_bucket`` … included)."""
    text = generate_latest(Metrics().registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def read_unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_unit_parses_and_runs_watch_with_real_options() -> None:
    unit = read_unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    assert unit["Install"]["WantedBy"] == "default.target"  # a user unit
    assert unit["Service"]["KillSignal"] == "SIGINT"  # watch finishes the batch in flight
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[:2] == ["/usr/bin/env", "storysync"]
    command = next(a for a in argv[2:] if not a.startswith("-") and a in COMMANDS)
    assert command == "watch"
    before, after = argv[2 : argv.index(command)], argv[argv.index(command) + 1 :]
    for option in (a for a in before if a.startswith("--")):
        assert option in help_text(), option
    for option in (a for a in after if a.startswith("--")):
        assert option in help_text(command), option


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    instance = tmp_path / "storysync-watch@home-ada-stories.service"
    instance.write_text(UNIT.read_text(encoding="utf-8"), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "storysync-watch" not in done.stderr  # no warning about our unit


def test_alert_rules_are_valid_and_use_only_exported_metrics() -> None:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [rule for group in data["groups"] for rule in group["rules"]]
    assert {group["name"] for group in data["groups"]} == {"storysync-watch"}
    exported = exported_metric_names()
    used: set[str] = set()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]
        assert _balanced(rule["expr"]), rule["expr"]
        used |= set(METRIC.findall(rule["expr"]))
    assert used <= exported, used - exported
    assert {
        "storysync_syncs_total",
        "storysync_lag_seconds",
        "storysync_invalid_files",
        "storysync_open_conflicts",
    } <= used
    scrape = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    assert scrape["scrape_configs"][0]["job_name"] == "storysync-watch"
    assert 'job="storysync-watch"' in RULES.read_text(encoding="utf-8")


def test_dashboard_loads_and_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "storysync-watch"
    panels: list[dict[str, Any]] = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used <= exported_metric_names(), used - exported_metric_names()
    assert all(_balanced(e) for e in exprs)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("failed", "lag", "invalid", "errors"):
        assert topic in titles


def test_ci_workflow_loads_and_calls_real_commands() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"]
    steps = workflow["jobs"]["export"]["steps"]
    scripts = "\n".join(s.get("run", "") for s in steps)
    calls = re.findall(r"^\s*storysync ((?:--\S+ \S+ )*)(\w[\w-]*)", scripts, flags=re.MULTILINE)
    assert {command for _, command in calls} >= {"sync", "export"}
    for _, command in calls:
        assert command in COMMANDS, f"the workflow runs 'storysync {command}', which is not a command"
    assert "${{ secrets.STORYSYNC_DATABASE_URL }}" in WORKFLOW.read_text(encoding="utf-8")


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in expr:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack
