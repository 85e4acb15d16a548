"""storysync: keep Markdown story files in git and a SQL database in step.

The library API (the CLI is a thin layer over it)::

    from storysync import load_config, Database, sync, SyncOptions
    cfg = load_config(Path("."))
    result = sync(cfg, Database(cfg.database), open_repo(cfg.repo), SyncOptions(full=True))

Names are imported on first use, so ``import storysync`` stays cheap.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "storysync.config",
    "load_config": "storysync.config",
    "Database": "storysync.db",
    "Diagnostic": "storysync.errors",
    "StorysyncError": "storysync.errors",
    "parse_story": "storysync.parse",
    "sync": "storysync.sync",
    "SyncOptions": "storysync.sync",
    "SyncResult": "storysync.sync",
    "validate_paths": "storysync.validate",
    "open_repo": "storysync.gitdiff",
}

__all__ = sorted(_EXPORTS)


class _CallableSyncModule(types.ModuleType):
    """``storysync.sync`` is both the module and, called, the ``sync()`` function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.sync(*args, **kwargs)


class _Package(types.ModuleType):
    """Importing the submodule ``storysync.sync`` sets this package's ``sync`` attribute
    to the module, shadowing the library function of that name; the module is made
    callable instead, so ``storysync.sync(config, db, repo, options)`` always works."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "sync" and type(value) is types.ModuleType:
            value.__class__ = _CallableSyncModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'storysync' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
