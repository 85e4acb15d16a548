"""The branch overlay, read side: which branches a story differs on, and its most
progressed status across the main line and every branch (issue 16).

``branch_stories`` holds, per branch, the stories whose file differs from the main
line at the merge base (``storysync sync --branch NAME`` records them,
``storysync.ingest.overlay`` writes them).  It is small (the work in progress of the
open branches), so a view loads it once into a dict and never joins it per row.
These are SQL texts run through a ``Reader``, free of SQLAlchemy: ``list`` reads
them through sqlite3 on a SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from storysync.db.queries import Reader

KIND_SET = "branch"  # the changes kind of an overlay row written or changed
KIND_DROP = "unbranch"  # the changes kind of an overlay row dropped
SOURCE = "git"  # the changes source of both

OVERLAY = "SELECT story_id, branch, status, kind FROM branch_stories"


class BranchStatus(NamedTuple):
    """A story as one branch has it: the status there (None: deleted there) and how it differs."""

    branch: str
    status: str | None
    kind: str  # added | modified | deleted

    def as_dict(self) -> dict[str, Any]:
        return {"branch": self.branch, "status": self.status, "kind": self.kind}

    def label(self, main: str | None = None) -> str:
        """``active on feature/x``, ``deleted on feature/x``; ``edited on feature/x`` when the
        branch keeps the ``main`` status and changed something else."""
        what = "deleted" if self.status is None else "edited" if self.status == main else self.status
        return f"{what} on {self.branch}"


Overlay = dict[str, list[BranchStatus]]  # story id -> the branches it differs on, by name


def read_overlay(reader: Reader) -> Overlay:
    """Every overlay row, by story id, each story's by branch name (empty when no branch was
    recorded: one query over an empty table).  Sorted here, so both databases agree."""
    out: Overlay = {}
    for story_id, branch, status, kind in reader.rows(OVERLAY):
        out.setdefault(story_id, []).append(BranchStatus(branch, status, kind))
    for branches in out.values():
        branches.sort()
    return out


def status_rank(stages: Mapping[str, str]) -> dict[str, int]:
    """Each configured status's place in the stage order (refinements < backlog < active <
    completed, as configured); a status not configured ranks below all of them."""
    return {status: i for i, status in enumerate(dict.fromkeys(stages.values()), start=1)}


def furthest(main: str | None, others: Iterable[str | None], rank: Mapping[str, int]) -> str | None:
    """The most progressed of ``main`` and ``others`` (None: deleted or absent, skipped);
    on a tie the main status, then the first given."""
    best = main
    for status in others:
        if status is not None and (best is None or rank.get(status, 0) > rank.get(best, 0)):
            best = status
    return best


def furthest_of(main: str | None, branches: Sequence[BranchStatus], rank: Mapping[str, int]) -> str | None:
    """``furthest`` over a story's overlay rows."""
    return furthest(main, (b.status for b in branches), rank)


def note(branches: Sequence[BranchStatus], main: str | None = None) -> str:
    """``active on feature/x, completed on fix/y``: what a list or a card shows next to the
    ``main`` status."""
    return ", ".join(b.label(main) for b in branches)
