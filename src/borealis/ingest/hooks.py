"""What ingest asks of the layers above it, installed once per process at start-up.

Ingest stands below incidents, RCA and the workers: it records what must follow from a changed problem
(a ``FollowUp`` row), it does not carry it out. Three things it needs still belong above it: whether a
change matters to correlation and what the problem's candidate-index keys were (incidents), and
carrying out queued follow-ups in the caller's transaction (the jobs layer). The entry points install
them (``borealis.assembly.install``) before anything is ingested; ingesting without them is a bug in
the entry point, reported as such.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

ProblemRow = Mapping[str, Any]


class FollowUp(Protocol):
    def __call__(
        self, *, db_session: Session, workspace_ids: Sequence[str] | None = None, limit: int = ...
    ) -> int:
        """Carry out queued follow-ups (of these workspaces, or of any workspace); returns how many."""
        ...


class LockWorkspace(Protocol):
    def __call__(self, *, db_session: Session, workspace_id: str) -> None:
        """Take the workspace's correlation lock, before any problem row."""
        ...


@dataclass(frozen=True, slots=True)
class IngestHooks:
    # Whether anything correlation or an incident's picture reads differs between two problem rows.
    picture_changed: Callable[[ProblemRow, ProblemRow], bool]
    # The candidate-index keys of a problem row, sorted.
    index_keys: Callable[[ProblemRow], list[str]]
    lock_workspace: LockWorkspace
    follow_up: FollowUp


_installed: list[IngestHooks] = []


def install(hooks: IngestHooks) -> None:
    """Install the hooks of this process (again: replaced)."""
    _installed[:] = [hooks]


def installed() -> IngestHooks:
    """The installed hooks; raises RuntimeError when the entry point installed none."""
    if not _installed:
        raise RuntimeError("ingest hooks are not installed: call borealis.assembly.install() at start-up")
    return _installed[0]
