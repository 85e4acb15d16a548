"""Prometheus metrics for ``storysync watch`` and the HTTP server for ``/metrics`` and ``/healthz``.

The exposition format is prometheus_client's (a well-kept library, not
hand-written text).  Each ``Metrics`` has its own registry, so several watchers
in one process (tests) never collide.  ``/healthz`` answers 200 when every
check passes (database reachable, observer alive) and 503 otherwise, with the
checks as a JSON object.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from storysync.errors import UsageError

if TYPE_CHECKING:
    from storysync.watch.outcome import Outcome

PREFIX = "storysync"
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HealthCheck = Callable[[], dict[str, bool]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Metrics:
    """The watch metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.syncs = Counter(f"{PREFIX}_syncs", "Watch batches synced, by outcome.", ["outcome"], registry=r)
        self.written = Counter(
            f"{PREFIX}_stories_written", "Story rows written, by kind of change.", ["kind"], registry=r
        )
        self.errors = Counter(
            f"{PREFIX}_errors", "Problems: invalid files reported, batches that failed.", ["kind"], registry=r
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Story paths per synced batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.duration = Histogram(
            f"{PREFIX}_sync_duration_seconds", "Time to sync one batch.", buckets=DURATION_BUCKETS, registry=r
        )
        self.last_sync = Gauge(
            f"{PREFIX}_last_sync_timestamp_seconds", "Unix time of the last successful sync.", registry=r
        )
        self.lag = Gauge(f"{PREFIX}_lag_seconds", "First file event to committed row, for the last batch.", registry=r)
        self.open_problems = Gauge(f"{PREFIX}_invalid_files", "Files currently skipped as invalid.", registry=r)
        self.open_conflicts = Gauge(
            f"{PREFIX}_open_conflicts", "Unresolved conflicts in the conflicts table.", registry=r
        )
        for outcome in ("ok", "invalid", "failed"):
            self.syncs.labels(outcome)
        for kind in ("created", "updated", "deleted"):
            self.written.labels(kind)
        for kind in ("invalid_file", "sync_failed"):
            self.errors.labels(kind)

    def record(self, outcome: Outcome, invalid_files: int = 0, open_conflicts: int | None = None) -> None:
        """Count one batch; ``invalid_files`` is how many files are skipped as invalid now.

        ``open_conflicts`` (unresolved rows in the conflicts table) is set when
        known; None leaves the gauge as it was (the count could not be read).
        """
        if open_conflicts is not None:
            self.open_conflicts.set(open_conflicts)
        self.syncs.labels(outcome.label).inc()
        self.batch_size.observe(outcome.paths)
        self.duration.observe(outcome.duration)
        if outcome.lag is not None:
            self.lag.set(outcome.lag)
        if outcome.error is not None:
            self.errors.labels("sync_failed").inc()
            return
        self.last_sync.set(time.time())
        self.open_problems.set(invalid_files)
        self.errors.labels("invalid_file").inc(len({d.path for d in outcome.problems}))
        result = outcome.result
        if result is not None:
            self.written.labels("created").inc(len(result.created))
            self.written.labels("updated").inc(len(result.updated))
            self.written.labels("deleted").inc(len(result.deleted))


@dataclass(frozen=True)
class Address:
    """Where the metrics server listens."""

    host: str
    port: int


def parse_address(text: str) -> Address:
    """``HOST:PORT``, ``:PORT`` (loopback) or ``[IPv6]:PORT``; a bad one is a usage error."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--metrics {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    host = host.strip("[]") or "127.0.0.1"
    return Address(host, int(port))


def health_app(check: HealthCheck) -> WSGIApp:
    """A WSGI app: 200 with the checks as JSON when all pass, 503 otherwise."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        checks = check()
        ok = all(checks.values())
        body = json.dumps({"ok": ok, **checks}).encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def routes(metrics: Metrics, check: HealthCheck) -> WSGIApp:
    """``/healthz`` → the health app; ``/metrics`` → prometheus_client; anything else → 404."""
    metrics_app = make_wsgi_app(metrics.registry)
    healthz = health_app(check)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return healthz(environ, start_response)
        if path == "/metrics":
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class MetricsServer:
    """``/metrics`` and ``/healthz`` served from a daemon thread."""

    def __init__(self, address: Address, metrics: Metrics, check: HealthCheck) -> None:
        server_class = _server_class(address.host)
        try:
            self.server = make_server(
                address.host, address.port, routes(metrics, check), server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise UsageError(f"--metrics {address.host}:{address.port}: cannot listen: {exc.strerror}") from exc
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.5,), daemon=True, name="metrics")

    @property
    def url(self) -> str:
        """The base URL actually bound (port 0 picks a free one)."""
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def start(self) -> MetricsServer:
        """Start serving; returns self."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _server_class(host: str) -> type[ThreadingWSGIServer]:
    if ":" not in host:
        return ThreadingWSGIServer
    # local: socket only when the metrics server binds
    import socket

    class IPv6Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6

    return IPv6Server
