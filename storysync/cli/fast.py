"""The pre-commit hook's command line, read without click.

``storysync validate --staged`` runs on every commit, and importing click costs
about as much as the validation of a staged file.  ``parse`` accepts only the
plain forms a hook uses (``[--repo DIR] [-q|-v...] validate --staged
[--format F] [PATH...]``) and answers None for anything else (help, other
options, other commands, a value click would refuse), which then goes through
click as usual.  ``validate`` is the command's body, shared with
``storysync.cli.commands.validate``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from storysync.cli.app import App
from storysync.cli.report import FORMATS, plural, write_diagnostics
from storysync.errors import EXIT_USAGE


@dataclass(frozen=True)
class HookArgs:
    """What a plain ``validate --staged`` command line says."""

    repo: Path | None
    verbose: int
    quiet: bool
    paths: tuple[str, ...]
    fmt: str


def parse(argv: list[str]) -> HookArgs | None:
    """The arguments of a plain ``validate --staged`` command line, or None when click must read it."""
    if "validate" not in argv:
        return None
    split = argv.index("validate")
    top = _top_options(argv[:split])
    rest = _validate_options(argv[split + 1 :])
    if top is None or rest is None:
        return None
    repo, verbose, quiet = top
    paths, fmt = rest
    return HookArgs(repo, verbose, quiet, paths, fmt)


def parse_post_hook(argv: list[str]) -> tuple[Path | None, str, tuple[str, ...]] | None:
    """``(repo, hook, args)`` of the plain command line a post-* hook shim runs
    (``[--repo DIR] run-hook NAME [ARG...]``, no option after it), or None."""
    if "run-hook" not in argv:
        return None
    split = argv.index("run-hook")
    top = _top_options(argv[:split])
    rest = argv[split + 1 :]
    if top is None or top[1:] != (0, False) or not rest or any(a.startswith("-") for a in rest):
        return None
    return top[0], rest[0], tuple(rest[1:])


def nothing_to_do(argv: list[str]) -> bool:
    """Whether ``argv`` is a post-* hook's plain command line with nothing to do
    (``storysync.cli.hooks.nothing_to_do``); any doubt or failure: False, and the
    ordinary path runs (it decides and reports the same way)."""
    parsed = parse_post_hook(argv)
    if parsed is None:
        return False
    # local: the pre-commit and no-op hooks import only what they use (tests/test_hook_speed.py)
    from storysync.cli.hooks import nothing_to_do as settled

    app = App(repo_arg=parsed[0])
    try:
        return settled(app, parsed[1], parsed[2])
    except Exception:  # e.g. not a repository, a bad config: the ordinary path reports it
        return False


def _top_options(args: list[str]) -> tuple[Path | None, int, bool] | None:
    repo: str | None = None
    verbose, quiet = 0, False
    items = iter(args)
    for arg in items:
        if arg in ("-v", "--verbose"):
            verbose += 1
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif arg == "--repo" and repo is None:
            repo = next(items, None)
            if not repo or repo.startswith("-"):
                return None
        else:
            return None
    if repo is not None and os.path.exists(repo) and not os.path.isdir(repo):
        return None  # click's message: "Directory ... is a file"
    return (Path(repo) if repo is not None else None), verbose, quiet


def _validate_options(args: list[str]) -> tuple[tuple[str, ...], str] | None:
    staged, fmt = False, None
    paths: list[str] = []
    items = iter(args)
    for arg in items:
        if arg == "--staged":
            staged = True
        elif (arg == "--format" or arg.startswith("--format=")) and fmt is None:
            fmt = arg.partition("=")[2] if "=" in arg else next(items, None)
            if fmt not in FORMATS:
                return None
        elif arg and not arg.startswith("-"):
            paths.append(arg)
        else:
            return None
    if not staged:
        return None
    return tuple(paths), fmt or "text"


def run(args: HookArgs, on_logging: dict[str, bool]) -> int:
    """Run ``validate --staged`` as the click group and command would, without click."""
    # local: the pre-commit and no-op hooks import only what they use (tests/test_hook_speed.py)
    from storysync.log import setup_logging

    app = App(repo_arg=args.repo, verbosity=-1 if args.quiet else args.verbose)
    try:
        setup_logging(app.verbosity, "text", None)
        on_logging["logging"] = True
        return validate(app, args.paths, True, args.fmt)
    finally:
        app.close()


def validate(app: App, paths: tuple[str, ...], staged: bool, fmt: str) -> int:
    """Check story files and report every problem; the exit code (see ``storysync validate --help``)."""
    # local: the pre-commit and no-op hooks import only what they use (tests/test_hook_speed.py)
    from storysync.check.sources import WorkTreeSource
    from storysync.check.validate import validate_paths
    from storysync.story.layout import classify

    config = app.config
    wanted: list[str] | None = [app.repo_relative(p) for p in paths] or None
    if staged:
        # local: the pre-commit and no-op hooks import only what they use (tests/test_hook_speed.py)
        from storysync.check.index import IndexSource, validate_index

        index = IndexSource(config)
        try:
            if wanted is None:  # the whole staged change: deletions and renames too
                diagnostics, files = validate_index(config, index, index.staged(), index.replaced)
            else:
                diagnostics, files = validate_index(config, index, wanted)
        finally:
            index.close()
    else:
        top = app.top_level
        missing = [p for p, rel in zip(paths, wanted or [], strict=True) if not _exists(p, top / rel)]
        if missing:
            for path in missing:
                sys.stderr.write(f"{path}: no such file\n")
            return EXIT_USAGE
        if app.verbosity >= 0:
            for path, rel in zip(paths, wanted or [], strict=True):
                if classify(config, rel) is None:
                    sys.stderr.write(f"storysync: {path}: not a story file, skipped\n")
        checked = validate_paths(config, WorkTreeSource(config), wanted)
        diagnostics, files = checked.diagnostics, checked.files
    write_diagnostics(diagnostics, fmt, extra={"files": files})
    if fmt != "json" and app.verbosity >= 0:
        bad = len({d.path for d in diagnostics})
        if diagnostics:
            sys.stderr.write(
                f"storysync: {plural(len(diagnostics), 'error')} in {plural(bad, 'file')} "
                f"({plural(files, 'file')} checked); fix them and run again\n"
            )
        elif fmt == "text":
            sys.stderr.write(f"storysync: {plural(files, 'story file')} valid\n")
    return 1 if diagnostics else 0


def _exists(given: str, in_repo: Path) -> bool:
    """Whether a PATH names a file, relative to the cwd or (as a fallback) the repository."""
    return os.path.lexists(given) or os.path.lexists(in_repo)
