"""Shared fixtures: one migrated throwaway database and one live server per run, wiped between tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from borealis import assembly, migrate
from borealis.app import create_app
from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.config import Settings
from borealis.db import Database
from borealis.models import Base
from borealis.simulation import FakeDynatrace, running_fake_dynatrace
from borealis.workspaces import service as workspaces_service
from tests.fakes.llm import FakeLlm, running_fake_llm
from tests.support.databases import throwaway_database, wipe
from tests.support.server import RunningServer, serve_in_thread

# As every entry point does: tests ingest without an application too.
assembly.install()

TEST_SECRET_KEY = "test-secret-key-for-borealis"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("borealis-data")


@pytest.fixture(scope="session")
def database_url(data_dir: Path) -> Iterator[str]:
    with throwaway_database(data_dir) as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        allow_private_dynatrace=True,
        allow_private_destinations=True,
        dynatrace_timeout=5,
    )


@pytest.fixture(scope="session")
def database(settings: Settings) -> Iterator[Database]:
    database = Database(settings.effective_database_url)
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "database" in request.fixturenames:
        wipe(request.getfixturevalue("database").engine, Base.metadata)


@pytest.fixture(scope="session")
def app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings, database)


@pytest.fixture(scope="session")
def live_server(app: FastAPI) -> Iterator[RunningServer]:
    with serve_in_thread(app) as server:
        yield server


@pytest.fixture
def client(live_server: RunningServer, database: Database) -> Iterator[httpx.Client]:
    """An unauthenticated client of the live server."""
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        yield http


# Who the audit log names for changes a test makes straight through the services.
TEST_ACTOR = Actor(user_id=None, email="test set-up", via="test")


@dataclass
class Account:
    user_id: str
    # The account's personal workspace, where its API key acts as owner.
    workspace_id: str
    email: str
    api_key: str
    client: httpx.Client


@pytest.fixture
def make_account(live_server: RunningServer, database: Database) -> Iterator:
    """Create users with an API key and a client that sends it."""
    clients: list[httpx.Client] = []

    def factory(
        email: str = "sre@example.com", *, password: str | None = None, admin: bool = False
    ) -> Account:
        with database.session(write=True) as session:
            user, workspace = workspaces_service.create_user(
                db_session=session, email=email, password=password, is_admin=admin
            )
            _, key = auth_service.create_api_key(
                db_session=session, user=user, workspace_id=workspace.id, actor=TEST_ACTOR
            )
            session.commit()
            user_id, workspace_id = user.id, workspace.id
        http = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        clients.append(http)
        return Account(user_id=user_id, workspace_id=workspace_id, email=email, api_key=key, client=http)

    yield factory
    for http in clients:
        http.close()


@pytest.fixture
def account(make_account) -> Account:
    """The default signed-in user."""
    return make_account()


@pytest.fixture(scope="session")
def _fake_dynatrace_server() -> Iterator[FakeDynatrace]:
    with running_fake_dynatrace() as fake:
        yield fake


@pytest.fixture
def fake_dynatrace(_fake_dynatrace_server: FakeDynatrace) -> FakeDynatrace:
    """A fake Dynatrace environment on loopback, emptied before each test (see borealis.simulation)."""
    _fake_dynatrace_server.reset()
    return _fake_dynatrace_server


@pytest.fixture
def background_worker(database: Database, settings: Settings) -> Iterator:
    """Start workers (threads) that run the real job handlers on the test database; ``start(**changes)``
    takes settings changes for that worker. Stopped before the tables are wiped."""
    from borealis.app import make_secret_box
    from borealis.jobs.registry import register_handlers
    from borealis.jobs.worker import Worker

    register_handlers()
    workers: list[Worker] = []

    def start(*, concurrency: int = 4, lease_seconds: float = 10.0, **changes: object) -> Worker:
        worker_settings = settings.model_copy(update=changes)
        worker = Worker(
            database=database,
            settings=worker_settings,
            secret_box=make_secret_box(worker_settings),
            concurrency=concurrency,
            lease_seconds=lease_seconds,
            poll_min=0.02,
            poll_max=0.2,
        )
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop(grace_seconds=5)


@pytest.fixture(scope="session")
def _fake_llm_server() -> Iterator[FakeLlm]:
    with running_fake_llm() as fake:
        yield fake


@pytest.fixture
def fake_llm(_fake_llm_server: FakeLlm) -> Iterator[FakeLlm]:
    """A fake OpenAI-compatible endpoint on loopback (see tests/fakes/llm.py), reset around each test."""
    _fake_llm_server.reset()
    yield _fake_llm_server
    _fake_llm_server.reset()
