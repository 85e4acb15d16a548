"""storysync: keep Markdown story files in git and a SQL database in step.

The library API (the CLI is a thin layer over it)::

    from storysync import load_config, Database, open_repo, sync, SyncOptions
    cfg = load_config(Path("."))
    result = sync(cfg, Database(cfg.database), open_repo(cfg.repo), SyncOptions(full=True))

Names are imported on first use, so ``import storysync`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Config": "storysync.config",
    "load_config": "storysync.config",
    "Database": "storysync.db.database",
    "Diagnostic": "storysync.errors",
    "StorysyncError": "storysync.errors",
    "parse_story": "storysync.story.parse",
    "sync": "storysync.ingest.run",
    "SyncOptions": "storysync.ingest.types",
    "SyncResult": "storysync.ingest.types",
    "validate_paths": "storysync.check.validate",
    "open_repo": "storysync.git.repo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'storysync' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
