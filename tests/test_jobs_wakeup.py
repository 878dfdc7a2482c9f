"""Workers in this process are woken by the commit of a transaction that enqueued, and only by that."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from borealis.jobstore import enqueue, wakeup
from borealis.workspaces import service as workspaces_service


@pytest.fixture
def wakes() -> Iterator[list[str]]:
    calls: list[str] = []

    def listener() -> None:
        calls.append("woken")

    wakeup.add_wake_listener(listener)
    yield calls
    wakeup.remove_wake_listener(listener)


@pytest.fixture
def workspace_id(database) -> str:
    with database.session(write=True) as session:
        _, workspace = workspaces_service.create_user(db_session=session, email="waker@example.com")
        session.commit()
        return workspace.id


def test_a_commit_that_enqueued_wakes_the_workers_once(database, workspace_id, wakes):
    with database.session(write=True) as session:
        enqueue(db_session=session, kind="tick", workspace_id=workspace_id, key="a")
        enqueue(db_session=session, kind="tick", workspace_id=workspace_id, key="b")
        assert wakes == []
        session.commit()
        assert wakes == ["woken"]
        session.commit()
    assert wakes == ["woken"]


def test_a_rolled_back_enqueue_does_not_wake_a_later_commit(database, workspace_id, wakes):
    with database.session(write=True) as session:
        enqueue(db_session=session, kind="tick", workspace_id=workspace_id, key="a")
        session.rollback()
        workspaces_service.create_user(db_session=session, email="someone@example.com")
        session.commit()
    assert wakes == []
