"""A database written before workspaces (revision 0011) is migrated with nothing lost: every user gets a
personal workspace with their data, and their API keys, webhook URLs and secrets keep working."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from borealis import crypto, migrate
from borealis.app import create_app, make_secret_box
from borealis.auth.service import API_KEY_PREFIX
from borealis.config import Settings
from borealis.db import Database
from tests.conftest import TEST_SECRET_KEY
from tests.support.builders import problem_body
from tests.support.databases import throwaway_database
from tests.support.server import serve_in_thread

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
# The tables that held a user_id before: each row must come through, now keyed by workspace.
OWNED = (
    "connections",
    "problems",
    "problem_counts",
    "follow_ups",
    "incidents",
    "incident_keys",
    "correlation_settings",
    "rca_runs",
    "jobs",
    "job_schedules",
)


def _filler(column: sa.Column) -> Any:
    """A value for a required column the test does not care about."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.Float | sa.Numeric):
        return 0
    if isinstance(kind, sa.DateTime):
        return WHEN
    if isinstance(kind, sa.JSON):
        return {}
    return "x"


class OldDatabase:
    """Rows written straight into the schema of revision 0011, as the code of that time stored them."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.metadata = sa.MetaData()
        self.metadata.reflect(self.engine)

    def insert(self, table: str, **values: Any) -> Any:
        """Insert a row; returns its primary key (the database numbers rows as it did then)."""
        reflected = self.metadata.tables[table]
        numbered = [
            column.name for column in reflected.primary_key.columns if isinstance(column.type, sa.Integer)
        ]
        row = {
            column.name: _filler(column)
            for column in reflected.columns
            if not column.nullable and column.name not in values and [column.name] != numbered
        }
        with self.engine.begin() as connection:
            return connection.execute(reflected.insert().values(**(row | values))).inserted_primary_key[0]


@pytest.fixture
def old_url(tmp_path: Path) -> Iterator[str]:
    with throwaway_database(tmp_path) as url:
        migrate.upgrade(url, "0011")
        yield url


def test_a_populated_database_moves_into_personal_workspaces_with_nothing_lost(old_url, tmp_path):
    box = make_secret_box(Settings(_env_file=None, data_dir=tmp_path, secret_key=TEST_SECRET_KEY))
    old = OldDatabase(old_url)
    users = {"alice": "11111111-1111-4111-8111-111111111111", "bob": "22222222-2222-4222-8222-222222222222"}
    keys, secrets = {}, {}
    for number, (name, user_id) in enumerate(users.items()):
        old.insert(
            "users", id=user_id, email=f"{name}@example.com", rca_enabled=name == "alice", created_at=WHEN
        )
        keys[name] = f"{API_KEY_PREFIX}old-key-of-{name}"
        old.insert(
            "api_keys",
            id=f"k{number}",
            user_id=user_id,
            name="ci",
            prefix=keys[name][:10],
            key_hash=crypto.digest(keys[name]),
        )
        secrets[name] = f"whs_old-secret-of-{name}"
        old.insert(
            "connections",
            id=f"c{number}",
            user_id=user_id,
            environment_url="https://abc12345.live.dynatrace.com",
            token_ciphertext=box.encrypt("dt0c01.OLD"),
            token_scopes=["problems.read"],
            webhook_secret_ciphertext=box.encrypt(secrets[name]),
            webhook_secret_hash=crypto.digest(secrets[name]),
        )
        problem_id = old.insert(
            "problems",
            connection_id=f"c{number}",
            user_id=user_id,
            pid_key=f"-{number}",
            pid=f"-{number}",
            display_id=f"P-{number}",
            title=f"{name}'s database is slow",
            state="OPEN",
            priority="high",
            impacted_entities=[],
            tags=[],
            management_zones=[],
            lifecycle=[],
            search_text=f"{name}'s database is slow",
            notification_count=1,
        )
        old.insert("problem_counts", user_id=user_id, state="OPEN", severity="", impact="", count=1)
        search_number = old.insert("search_users", user_id=user_id)
        old.insert("problem_terms", problem_id=problem_id, term="database", user_number=search_number)
        old.insert("follow_ups", problem_id=problem_id, user_id=user_id, states=[], next_at=0)
        incident_id = old.insert(
            "incidents",
            user_id=user_id,
            title=f"{name}'s incident",
            status="resolved",
            priority="high",
            affected_entities=[],
            started_at=WHEN,
            resolved_at=WHEN.replace(hour=10),
            problem_count=1,
            search_text=f"{name}'s incident",
        )
        old.insert(
            "incident_problems",
            problem_id=problem_id,
            incident_id=incident_id,
            strategy="new",
            problem_state="OPEN",
        )
        old.insert(
            "incident_keys",
            user_id=user_id,
            key=f"entity:{name}",
            problem_id=problem_id,
            incident_id=incident_id,
        )
        old.insert("correlation_settings", user_id=user_id, window_minutes=30 + number)
        old.insert("rca_runs", incident_id=incident_id, user_id=user_id, trigger="automatic")
        old.insert("jobs", kind="follow_up", user_id=user_id, key=f"user:{user_id}", payload={})
        old.insert(
            "job_schedules", kind="sync", key=f"connection:c{number}", user_id=user_id, interval_seconds=300
        )
    before = _counts(old.engine)
    old.engine.dispose()

    migrate.upgrade(old_url)

    database = Database(old_url)
    with database.engine.connect() as connection:
        assert _counts(database.engine) == before
        workspaces = connection.execute(
            sa.text("SELECT id, name, rca_enabled FROM workspaces ORDER BY id")
        ).all()
        assert [(id_, name, bool(rca)) for id_, name, rca in workspaces] == [
            (users["alice"], "Personal", True),
            (users["bob"], "Personal", False),
        ]
        members = connection.execute(
            sa.text("SELECT workspace_id, user_id, role FROM workspace_members")
        ).all()
        assert sorted(tuple(row) for row in members) == sorted(
            (user_id, user_id, "owner") for user_id in users.values()
        )
        for table in OWNED:
            owners = set(connection.execute(sa.text(f"SELECT workspace_id FROM {table}")).scalars())
            assert owners == set(users.values()), table
        assert set(connection.execute(sa.text("SELECT key FROM jobs")).scalars()) == {
            f"workspace:{user_id}" for user_id in users.values()
        }
        assert connection.execute(
            sa.text("SELECT time_to_resolve_seconds FROM incidents")
        ).scalars().all() == [3600.0, 3600.0]

    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=old_url,
        secret_key=TEST_SECRET_KEY,
        allow_private_dynatrace=True,
    )
    with serve_in_thread(create_app(settings, database)) as server:
        for name, user_id in users.items():
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys[name]}"}) as http:
                # The old key acts in the personal workspace, as its owner, and sees the old records.
                [incident] = http.get("/incidents").json()["incidents"]
                assert incident["title"] == f"{name}'s incident"
                assert http.get("/incidents/correlation-settings").json()["windowMinutes"] == 30 + list(
                    users
                ).index(name)
                assert [
                    alert["title"]
                    for alert in http.get("/dynatrace/alerts", params={"q": "database"}).json()["alerts"]
                ] == [f"{name}'s database is slow"]
                # The URL pasted into Dynatrace long ago still delivers, with the same secret.
                delivery = httpx.post(
                    f"{server.url}/dynatrace/webhook/{user_id}?token={secrets[name]}",
                    json=problem_body("77", display="P-77", title=f"{name}'s new problem"),
                )
                assert delivery.status_code == 200, delivery.text
                assert delivery.json()["outcome"] == "created"
                # The URL shown from now on names the workspace, which is the same id.
                shown = http.get("/dynatrace/webhook-url").json()["webhookUrl"]
                assert f"/dynatrace/webhook/{user_id}?" in shown
                assert secrets[name] in shown
                assert http.get(f"/workspaces/{user_id}/members").json()["items"][0]["role"] == "owner"
    database.dispose()


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in (*OWNED, "users", "api_keys", "incident_problems", "problem_terms")
        }
