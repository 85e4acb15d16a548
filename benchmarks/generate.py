"""A seeded generator of realistic story repositories, committed to git.

Every story has a 1–3 KB Markdown body, realistic frontmatter (priority, points,
epic, assignee, tags, dates, sometimes an extra key), and dependencies that only
point at earlier stories, so there is never a cycle.  Stories are spread over
many backlogs and all four stages.  The same ``(size, seed)`` always gives the
same files and, with the fixed author and dates below, the same commit.

Generated repositories are cached under ``benchmarks/.cache/`` (git-ignored)::

    python -m benchmarks.generate --size 10k          # prints the cached path
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

GENERATOR_VERSION = 1
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
COMPLETE_MARK = "storysync-bench-complete"
STAGES = (("refinements", 0.15), ("backlog", 0.35), ("active", 0.15), ("completed", 0.35))
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench Author",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench Author",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T12:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T12:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
}

AREAS = [
    "payments",
    "checkout",
    "search",
    "catalog",
    "billing",
    "identity",
    "auth",
    "onboarding",
    "reporting",
    "mobile",
    "web",
    "api",
    "platform",
    "infra",
    "data",
    "ml",
    "growth",
    "support",
    "ledger",
    "inventory",
    "shipping",
    "pricing",
    "notifications",
    "messaging",
]
WORDS = [
    "the",
    "a",
    "user",
    "can",
    "should",
    "when",
    "after",
    "before",
    "with",
    "without",
    "order",
    "invoice",
    "refund",
    "page",
    "list",
    "filter",
    "sort",
    "export",
    "import",
    "retry",
    "timeout",
    "cache",
    "queue",
    "worker",
    "event",
    "webhook",
    "token",
    "session",
    "role",
    "permission",
    "audit",
    "log",
    "metric",
    "dashboard",
    "alert",
    "latency",
    "error",
    "budget",
    "schema",
    "migration",
    "index",
    "query",
    "report",
    "chart",
    "email",
    "sms",
    "push",
    "banner",
    "button",
    "form",
    "field",
    "validation",
    "address",
    "currency",
    "tax",
    "discount",
    "coupon",
    "cart",
    "basket",
    "stock",
    "warehouse",
    "parcel",
    "carrier",
    "label",
    "tracking",
    "status",
    "history",
    "owner",
    "team",
    "release",
    "flag",
    "rollout",
    "experiment",
    "cohort",
    "segment",
    "customer",
    "account",
    "profile",
    "avatar",
    "password",
    "reset",
    "link",
    "expiry",
    "locale",
    "translation",
    "timezone",
    "calendar",
]
NAMES = ("ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances", "edsger", "radia", "tim", "sofia")
TAGS = ("backend", "frontend", "ux", "security", "performance", "tech-debt", "bug", "a11y", "docs", "ops", "data")
EPICS = ("Checkout revamp", "Self-serve onboarding", "Audit trail", "Q3 reliability", "Mobile parity", "Cost cuts")


def parse_size(text: str) -> int:
    """'1k' → 1000, '100k' → 100000, '50' → 50."""
    text = text.strip().lower()
    if text.endswith("k"):
        return int(float(text[:-1]) * 1000)
    if text.endswith("m"):
        return int(float(text[:-1]) * 1_000_000)
    return int(text)


def size_label(n: int) -> str:
    """1000 → '1k'; 50 → '50'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


@dataclass(frozen=True)
class Backlog:
    """A backlog directory and the id prefix of its stories."""

    name: str
    prefix: str


def backlogs_for(n: int) -> list[Backlog]:
    """Many backlogs: about one per 200 stories (at least 3)."""
    count = max(3, n // 200)
    out = []
    for i in range(count):
        area = AREAS[i % len(AREAS)]
        suffix = i // len(AREAS)
        name = area if suffix == 0 else f"{area}-{suffix}"
        prefix = area[:4].upper() + (str(suffix) if suffix else "")
        out.append(Backlog(name, prefix))
    return out


def _sentence(rng: random.Random, lo: int = 6, hi: int = 16) -> str:
    words = rng.choices(WORDS, k=rng.randint(lo, hi))
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 5)))


def make_body(rng: random.Random) -> str:
    """A 1–3 KB Markdown body: context, acceptance criteria, notes."""
    target = rng.randint(1024, 3072)
    parts = ["## Context", "", _paragraph(rng), "", "## Acceptance criteria", ""]
    parts += [f"- [{'x' if rng.random() < 0.3 else ' '}] {_sentence(rng, 4, 10)}" for _ in range(rng.randint(2, 5))]
    parts += ["", "## Notes", ""]
    body = "\n".join(parts)
    while len(body.encode("utf-8")) < target:
        if rng.random() < 0.1:
            body += "\n```\n" + " ".join(rng.choices(WORDS, k=8)) + "\n```\n"
        else:
            body += "\n" + _paragraph(rng) + "\n"
    return body[:target].rstrip() + "\n"


def make_title(rng: random.Random) -> str:
    """A plain title (no YAML-special characters)."""
    return " ".join(rng.choices(WORDS, k=rng.randint(3, 8))).capitalize()


def _slug(title: str) -> str:
    return "-".join(title.lower().split()[:5])


def _date(rng: random.Random) -> str:
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _stage(rng: random.Random) -> str:
    return rng.choices([s for s, _ in STAGES], weights=[w for _, w in STAGES])[0]


def frontmatter(rng: random.Random, story_id: str, title: str, stage: str, backlog: str, deps: list[str]) -> str:
    """The YAML frontmatter lines of one story (without the ``---`` lines)."""
    lines = [f"id: {story_id}", f"title: {title}"]
    if rng.random() < 0.5:
        lines.append(f"status: {stage}")
    if rng.random() < 0.3:
        lines.append(f"backlog: {backlog}")
    lines.append(f"priority: {rng.choice(('low', 'medium', 'high', 'critical'))}")
    if rng.random() < 0.8:
        lines.append(f"points: {rng.choice((1, 2, 3, 5, 8, 13))}")
    if rng.random() < 0.4:
        lines.append(f"epic: {rng.choice(EPICS)}")
    if rng.random() < 0.7:
        lines.append(f"assignee: {rng.choice(NAMES)}@example.com")
    lines.append(f"tags: [{', '.join(rng.sample(TAGS, rng.randint(0, 3)))}]")
    if deps:
        lines.append(f"depends_on: [{', '.join(deps)}]")
    lines.append(f"created: {_date(rng)}")
    if rng.random() < 0.5:
        lines.append(f"updated: {_date(rng)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z")
    if rng.random() < 0.2:
        lines.append(f"confidence: {rng.choice(('low', 'medium', 'high'))}")
    return "\n".join(lines)


def story_files(n: int, seed: int) -> dict[str, str]:
    """Repository-relative path → file text for ``n`` stories."""
    rng = random.Random(seed)
    backlogs = backlogs_for(n)
    counters = dict.fromkeys((b.name for b in backlogs), 0)
    ids: list[str] = []
    files: dict[str, str] = {}
    for _ in range(n):
        backlog = rng.choice(backlogs)
        counters[backlog.name] += 1
        story_id = f"{backlog.prefix}-{counters[backlog.name]}"
        deps: list[str] = []
        if ids and rng.random() < 0.4:  # only earlier stories: never a cycle
            window = ids[-200:] if rng.random() < 0.7 else ids
            deps = sorted(set(rng.sample(window, min(len(window), rng.randint(1, 3)))))
        title = make_title(rng)
        stage = _stage(rng)
        text = f"---\n{frontmatter(rng, story_id, title, stage, backlog.name, deps)}\n---\n{make_body(rng)}"
        files[f"{stage}/{backlog.name}/{story_id}-{_slug(title)}.md"] = text
        ids.append(story_id)
    return files


def git(repo: Path, *args: str, data: bytes | None = None) -> str:
    """Run git in ``repo`` with the fixed bench identity; its stdout."""
    done = subprocess.run(
        ["git", *args], cwd=repo, input=data, capture_output=True, check=False, env={**os.environ, **GIT_ENV}
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def generate(path: Path, n: int, seed: int = 7) -> Path:
    """Write ``n`` stories into a new git repository at ``path`` and commit them."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "commit.gpgsign", "false")
    git(path, "config", "gc.auto", "0")
    (path / ".gitignore").write_text(".storysync/\n", encoding="utf-8")
    (path / "README.md").write_text(f"Generated benchmark backlog: {n} stories, seed {seed}.\n", encoding="utf-8")
    for rel, text in story_files(n, seed).items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", f"{n} generated stories")
    pack(path)
    return path


def pack(path: Path) -> None:
    """Pack the objects, as a cloned repository has them (loose objects read several times slower)."""
    git(path, "repack", "-a", "-d", "-q")


def loose_objects(path: Path) -> int:
    """How many loose objects the repository holds."""
    counts = dict(line.split(": ", 1) for line in git(path, "count-objects", "-v").splitlines())
    return int(counts.get("count", "0"))


def cached_repo(n: int, seed: int = 7, cache: Path = CACHE_DIR) -> Path:
    """The generated repository for ``(n, seed)``, built once and reused.

    A cached repository is reset to its generated commit (benchmarks that make
    commits work on their own branch), so every run starts from the same files.
    """
    path = cache / f"repo-{size_label(n)}-s{seed}-v{GENERATOR_VERSION}"
    mark = path / ".git" / COMPLETE_MARK
    if not mark.exists():
        generate(path, n, seed)
        mark.write_text(git(path, "rev-parse", "HEAD").strip(), encoding="utf-8")
    base = mark.read_text(encoding="utf-8").strip()
    if loose_objects(path) > max(1000, n // 10):  # a cache from before packing, or many benchmark commits
        pack(path)
    git(path, "checkout", "-q", "-f", "-B", "main", base)
    git(path, "clean", "-q", "-fdx", "-e", ".storysync")
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: build or reuse a cached repository and print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1k", help="number of stories: 50, 1k, 10k, 100k")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write here instead of the cache (always regenerates)")
    args = parser.parse_args(argv)
    n = parse_size(args.size)
    path = generate(args.out, n, args.seed) if args.out else cached_repo(n, args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
