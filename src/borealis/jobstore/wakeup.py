"""Waking this process's workers when a transaction that enqueued a job commits, so they need not wait for
their next poll.

``enqueue`` runs deep inside other domains' units of work (a webhook, an RCA request, a schedule firing),
whose sessions it does not own; what it leaves behind is one fact per session, "this transaction queued
work", read when that transaction ends. The fact is kept here, in a set of those sessions (weakly held: a
session dropped without committing takes its fact with it), and not in ``Session.info``, where any code
holding the session could read or clear it. A commit wakes the listeners; a rollback forgets the fact, as
the jobs it announced are gone with it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

_listeners: list[Callable[[], None]] = []
_sessions_that_enqueued: weakref.WeakSet[Session] = weakref.WeakSet()
_lock = threading.Lock()


def add_wake_listener(listener: Callable[[], None]) -> None:
    """Call ``listener`` after any commit in this process that enqueued a job (workers poll less)."""
    with _lock:
        _listeners.append(listener)


def remove_wake_listener(listener: Callable[[], None]) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def note_enqueued(db_session: Session) -> None:
    """Remember that ``db_session``'s transaction queued work: its commit wakes the workers."""
    with _lock:
        _sessions_that_enqueued.add(db_session)


def _taken(session: Session) -> bool:
    """Whether ``session`` had enqueued, forgetting it either way."""
    with _lock:
        found = session in _sessions_that_enqueued
        _sessions_that_enqueued.discard(session)
    return found


@sa.event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if _taken(session):
        with _lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener()


@sa.event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    _taken(session)
