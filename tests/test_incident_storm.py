"""A storm of related problems arriving at once ends in the same grouping as one by one, on both databases."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.support.builders import storm
from tests.support.webhooks import encode, followed_up, ingest_raw, wire_connection


def grouping(account) -> set[frozenset[str]]:
    listing = account.client.get("/incidents", params={"limit": 500}).json()
    groups = set()
    for incident in listing["incidents"]:
        detail = account.client.get(f"/incidents/{incident['id']}").json()
        groups.add(frozenset(problem["displayId"] for problem in detail["problems"]))
    return groups


def test_storm_through_the_webhook_groups_like_one_by_one(app, database, make_account, live_server):
    bodies, truth = storm()
    calm = make_account("calm@example.com")
    stormy = make_account("stormy@example.com")
    calm_hook = wire_connection(database, app.state.secret_box, calm.workspace_id)
    storm_hook = wire_connection(database, app.state.secret_box, stormy.workspace_id)

    ordered = list(bodies)
    random.Random(1).shuffle(ordered)
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        for body in ordered:
            assert http.post(calm_hook.url, json=body).status_code == 200

    shuffled = list(bodies)
    random.Random(2).shuffle(shuffled)
    local = threading.local()

    def send(body: dict[str, Any]) -> int:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=live_server.url, timeout=60)
        return local.http.post(storm_hook.url, json=body).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(send, shuffled)) == {200}

    # As the workers would (a reading request waits for them a bounded time only).
    followed_up(database)
    assert grouping(calm) == truth
    assert grouping(stormy) == truth


def test_concurrent_writers_group_like_one_by_one(app, database, make_account):
    """Several transactions at once, as several replicas would run them: the correlation lock keeps the
    outcome equal to one by one."""
    bodies, truth = storm()
    account = make_account("replicas@example.com")
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    shuffled = list(bodies)
    random.Random(3).shuffle(shuffled)

    def ingest(body: dict[str, Any]) -> str:
        return ingest_raw(database, wired.connection_id, encode(body)).outcome

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(ingest, shuffled))
    assert set(outcomes) == {"created"}
    assert grouping(account) == truth
