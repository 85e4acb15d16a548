"""Time whole processes: wall clock (perf_counter) and the child's own peak RSS.

``os.wait4`` returns the rusage of exactly the process waited for, so the peak RSS
of each run is its own (``RUSAGE_CHILDREN`` would be the maximum over all
children so far).  A child's own children (git) are separate processes and are
not counted in its RSS.

Linux counts in a process's peak RSS the memory of the process it was forked from
(``exec`` keeps the larger of the old and the new high-water mark), so a command
forked from this runner, which holds a 100k repository's paths, would report the
runner's size.  Each command is therefore started and waited for by a small
launcher (``python -I -S``, ~10 MB), which times it and reports its rusage.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Sample:
    """One run of a process."""

    seconds: float
    peak_rss_kb: int
    returncode: int
    cpu_seconds: float = 0.0  # user + system time of the process itself


@dataclass
class Series:
    """Repeated runs of one measurement."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)

    @property
    def low(self) -> float:
        return min(s.seconds for s in self.samples)

    @property
    def high(self) -> float:
        return max(s.seconds for s in self.samples)

    @property
    def peak_rss_mb(self) -> float:
        return max(s.peak_rss_kb for s in self.samples) / 1024


class CommandFailed(RuntimeError):
    """A measured command exited with an unexpected code."""


_LAUNCHER = """
import json, os, subprocess, sys, time
fd, argv = int(sys.argv[1]), sys.argv[2:]
start = time.perf_counter()
proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
elapsed = time.perf_counter() - start
report = [elapsed, usage.ru_maxrss, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime]
os.write(fd, json.dumps(report).encode())
"""


def run_once(
    argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None, ok: Sequence[int] = (0,), log: Path | None = None
) -> Sample:
    """Run ``argv`` once through the launcher, output to ``log`` (or discarded); its time and peak RSS."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    read_end, write_end = os.pipe()
    try:
        launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(write_end), *map(str, argv)]
        proc = subprocess.Popen(
            launcher, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, pass_fds=(write_end,)
        )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reply:
            raw = reply.read()
        if proc.wait() != 0 or not raw:
            raise CommandFailed(f"the launcher for {' '.join(map(str, argv))} failed (exit {proc.returncode})")
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    elapsed, maxrss, code, cpu = json.loads(raw)
    if code not in ok:
        where = f"; output in {log}" if log else ""
        raise CommandFailed(f"{' '.join(map(str, argv))} exited {code}{where}")
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    rss = maxrss // 1024 if sys.platform == "darwin" else maxrss
    return Sample(elapsed, rss, code, cpu)


def repeat(
    argv: Sequence[str],
    cwd: Path,
    times: int,
    *,
    env: dict[str, str] | None = None,
    setup: Callable[[int], None] | None = None,
    ok: Sequence[int] = (0,),
    log: Path | None = None,
) -> Series:
    """Run ``argv`` ``times`` times, calling ``setup(i)`` (untimed) before each run."""
    series = Series()
    for i in range(times):
        if setup:
            setup(i)
        series.samples.append(run_once(argv, cwd, env, ok, log))
    return series


def storysync_argv(repo: Path, db_url: str, *args: str) -> list[str]:
    """The command line of a storysync process on ``repo`` with database ``db_url``."""
    return [sys.executable, "-m", "storysync", "--repo", str(repo), "--db", db_url, *args]
