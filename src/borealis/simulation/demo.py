"""``borealis demo``: Borealis working against a simulated Dynatrace, incidents and RCA reports in a minute.

Everything goes the way a real tenant's would: a user account, ``POST /dynatrace/connect`` with a token,
automatic RCA switched on, and each problem posted to the account's webhook URL over HTTP. Only the
environment is simulated (``scenarios.py``), and the demo keeps its own data folder, never ``./data``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.db import Database
from borealis.simulation.cases import load
from borealis.simulation.scenarios import Scenario, notification, scenarios
from borealis.simulation.store import ALL_SCOPES, FakeDynatrace
from borealis.workspaces import service as workspaces_service

EMAIL = "demo@example.com"
DEMO_ACTOR = Actor(user_id=None, email="borealis demo", via="demo")
# Seconds between an incident's first problem and its automatic RCA: long enough for a storm to land.
DEBOUNCE_SECONDS = 5
MARKER = ".borealis-demo"
Say = Callable[[str], None]


class DemoError(Exception):
    """The demo cannot start; the message says what to change."""


@dataclass
class Account:
    email: str
    password: str
    api_key: str


def prepare_data_dir(path: Path) -> None:
    """Start clean: a folder the demo made before (it holds ``MARKER``) is emptied; any other folder
    that holds files is refused, so a mistyped ``--data-dir`` never deletes someone's data."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise DemoError(f"{path} holds files the demo did not make; choose another --data-dir")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    marker = path / MARKER
    marker.write_text("Made by `borealis demo`, which empties this folder on every run.\n")
    marker.chmod(0o600)


def environment(data_dir: Path) -> dict[str, str]:
    """The settings of a demo run as environment variables: the webhook writer (a process of its own)
    and the ingest hooks read them from the environment, so they are set there, over any ``.env``."""
    return {
        "BOREALIS_DATA_DIR": str(data_dir),
        "BOREALIS_DATABASE_URL": f"sqlite:///{(data_dir / 'borealis.db').resolve()}",
        "BOREALIS_ALLOW_PRIVATE_DYNATRACE": "true",
        "BOREALIS_RCA_DEBOUNCE_SECONDS": str(DEBOUNCE_SECONDS),
        "BOREALIS_PUBLIC_URL": "",
        "NGROK_URL": "",
    }


def apply_environment(data_dir: Path) -> None:
    from borealis.config import get_settings

    os.environ.update(environment(data_dir))
    os.environ.pop("BOREALIS_NGROK_URL", None)
    get_settings.cache_clear()


def create_account(database: Database) -> Account:
    """The demo user, with a new password and an API key (the demo's own calls use the key)."""
    password = secrets.token_urlsafe(12)
    with database.session(write=True) as session:
        user, workspace = workspaces_service.create_user(db_session=session, email=EMAIL, password=password)
        _, key = auth_service.create_api_key(
            db_session=session, user=user, workspace_id=workspace.id, actor=DEMO_ACTOR, name="demo"
        )
        session.commit()
    return Account(EMAIL, password, key)


def populate(base_url: str, account: Account, fake: FakeDynatrace, say: Say) -> list[Scenario]:
    """Connect the account to the simulated environment, switch automatic RCA on, and send each scenario's
    problems through the webhook; returns the scenarios."""
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {account.api_key}"}, timeout=30
    ) as client:
        token = fake.add_token(list(ALL_SCOPES), name="borealis-demo")
        _check(client.post("/dynatrace/connect", json={"environmentUrl": fake.url, "apiToken": token}))
        _check(client.put("/dynatrace/rca-settings", json={"rcaEnabled": True}))
        webhook_url = _check(client.get("/dynatrace/webhook-url"))["webhookUrl"]
    say(f"connected to the simulated Dynatrace; automatic RCA runs {DEBOUNCE_SECONDS} s after a problem")
    chosen = scenarios(datetime.now(UTC))
    for scenario in chosen:
        load(scenario.case, fake)
        for problem in scenario.problems[1:]:
            fake.add_problem(**problem)
    with httpx.Client(timeout=30) as webhook, ThreadPoolExecutor(max_workers=8) as pool:
        for scenario in chosen:
            started = time.monotonic()
            # A storm arrives all at once: the openings in parallel, then the updates.
            list(pool.map(lambda body: _post(webhook, webhook_url, body), _bodies(scenario.problems, fake)))
            for problem in scenario.updates:
                fake.add_problem(**problem)
            list(pool.map(lambda body: _post(webhook, webhook_url, body), _bodies(scenario.updates, fake)))
            say(
                f"{scenario.name}: {scenario.summary} ({scenario.notifications} notification"
                f"{'s' if scenario.notifications != 1 else ''} in {time.monotonic() - started:.1f} s)"
            )
    return chosen


def watch(base_url: str, account: Account, say: Say, *, expected: int, timeout: float = 180) -> None:
    """Say when each incident's RCA report is ready (its verdict and root cause), until at least
    ``expected`` incidents have one and none is left waiting, or ``timeout`` seconds pass. It only reads,
    as the web UI does."""
    started, done = time.monotonic(), set()
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {account.api_key}"}, timeout=30
    ) as client:
        while time.monotonic() - started < timeout:
            incidents = _check(client.get("/incidents", params={"limit": 100}))["incidents"]
            for incident in incidents:
                if incident["id"] not in done:
                    rca = _check(client.get(f"/incidents/{incident['id']}")).get("rca") or {}
                    if rca.get("status") in ("done", "failed", "skipped"):
                        done.add(incident["id"])
                        say(_finished(incident, rca, time.monotonic() - started))
            if len(done) >= max(expected, len(incidents)):
                return
            time.sleep(1)


def _finished(incident: dict[str, Any], rca: dict[str, Any], seconds: float) -> str:
    cause = (rca.get("rootCause") or {}).get("name") or "none named"
    count = incident["problemCount"]
    return (
        f"RCA report of incident #{incident['id']} ({incident['title']}, {count} problem"
        f"{'s' if count != 1 else ''}): {rca.get('verdict')}, root cause {cause} ({seconds:.0f} s after sending)"
    )


def _bodies(problems: list[dict[str, Any]], fake: FakeDynatrace) -> list[dict[str, Any]]:
    return [notification(problem, fake.url) for problem in problems]


def _post(client: httpx.Client, url: str, body: dict[str, Any]) -> None:
    _check(client.post(url, json=body))


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise DemoError(f"{response.request.method} {response.request.url.path}: {response.text}")
    return response.json()
