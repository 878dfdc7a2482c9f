"""Backfill on connect and reconciliation with ``GET /api/v2/problems``, through the live server, the real
job worker and the fake Dynatrace."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from borealis.dynatrace.capped import CallLimiter, CappedClient
from borealis.dynatrace.errors import RateLimited
from borealis.simulation import ALL_SCOPES, to_millis
from borealis.sync import reconcile
from tests.support.processes import borealis_processes, process_env
from tests.support.sync import (
    closed,
    connect,
    deliver,
    entity,
    history,
    jobs,
    problems,
    settled,
    webhook_for,
)
from tests.support.waiting import wait_until


def sync_now(account) -> dict:
    response = account.client.post("/dynatrace/sync")
    assert response.status_code == 200, response.text
    return response.json()


def counts(body: dict) -> dict:
    return {name: body[name] for name in ("created", "updated", "closed", "unchanged")}


def backfilled(database) -> list:
    return wait_until(lambda: settled(database, "dynatrace.backfill"), what="the backfill to finish")


# --- backfill --------------------------------------------------------------------------------------------


def test_connect_backfills_every_page_of_recent_problems(
    account, fake_dynatrace, database, background_worker, monkeypatch
):
    monkeypatch.setattr(reconcile, "PAGE_SIZE", 3)
    fake_dynatrace.last_page_key = "string-null"  # the last page says "null" as a string
    fake_dynatrace.total_count_override = 2  # and totalCount disagrees with the pages
    now = datetime.now(UTC)
    recent = [fake_dynatrace.add_problem(title=f"Recent {n}") for n in range(7)]
    closed(recent[0])
    fake_dynatrace.add_problem(
        title="Long gone",
        status="CLOSED",
        startTime=to_millis(now - timedelta(hours=100)),
        endTime=to_millis(now - timedelta(hours=90)),
    )
    background_worker()
    connect(account, fake_dynatrace)

    [job] = backfilled(database)
    assert job.state == "done", job.last_error
    assert {problem.title for problem in problems(database)} == {problem["title"] for problem in recent}
    assert {problem.state for problem in problems(database)} == {"OPEN", "RESOLVED"}
    assert job.result["created"] == 7
    assert job.result["listed"] == 7

    pages = fake_dynatrace.requests_to("/api/v2/problems")
    assert len(pages) == 3, "7 problems in pages of 3"
    assert pages[0].params["pageSize"] == "3"
    assert "from" in pages[0].params
    assert all(list(page.params) == ["nextPageKey"] for page in pages[1:]), "nextPageKey travels alone"
    sources = {source for problem in problems(database) for source, _ in history(database, problem.id)}
    assert sources == {"api"}


def test_backfill_honours_backfill_hours(account, fake_dynatrace, database, background_worker):
    now = datetime.now(UTC)
    fake_dynatrace.add_problem(title="Inside", startTime=to_millis(now - timedelta(hours=1)))
    fake_dynatrace.add_problem(
        title="Outside",
        status="CLOSED",
        startTime=to_millis(now - timedelta(hours=5)),
        endTime=to_millis(now - timedelta(hours=4)),
    )
    background_worker(backfill_hours=2)
    connect(account, fake_dynatrace)
    backfilled(database)
    assert [problem.title for problem in problems(database)] == ["Inside"]
    since = int(fake_dynatrace.requests_to("/api/v2/problems")[0].params["from"])
    assert abs(since - to_millis(now - timedelta(hours=2))) < 60_000


# --- reconciliation --------------------------------------------------------------------------------------


def test_sync_creates_a_problem_no_webhook_delivered(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect(account, fake_dynatrace)
    backfilled(database)
    missed = fake_dynatrace.add_problem(title="Nobody told us", impactedEntities=[entity("HOST-1", "web-1")])

    body = sync_now(account)

    assert counts(body) == {"created": 1, "updated": 0, "closed": 0, "unchanged": 0}
    [problem] = problems(database)
    assert (problem.title, problem.state, problem.display_id) == (
        "Nobody told us",
        "OPEN",
        missed["displayId"],
    )
    assert history(database, problem.id) == [("api", "OPEN")]
    alert = account.client.get(f"/dynatrace/alerts/{problem.id}").json()
    assert [item["source"] for item in alert["notifications"]] == ["api"]
    assert alert["incidentId"] is not None, "a problem found by the sync is correlated like any other"


def test_sync_closes_a_problem_whose_resolved_never_came(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect(account, fake_dynatrace)
    backfilled(database)
    problem = fake_dynatrace.add_problem(title="Disk full", impactedEntities=[entity("HOST-2", "db-1")])
    answer = deliver(account, webhook_for(problem))
    assert answer["outcome"] == "created"
    closed(problem)  # Dynatrace closed it; the RESOLVED webhook got lost

    body = sync_now(account)

    assert counts(body) == {"created": 0, "updated": 0, "closed": 1, "unchanged": 0}
    [stored] = problems(database)
    assert stored.state == "RESOLVED"
    assert stored.end_time is not None
    assert history(database, stored.id) == [("webhook", "OPEN"), ("api", "RESOLVED")]
    incident_id = account.client.get(f"/dynatrace/alerts/{stored.id}").json()["incidentId"]
    incident = account.client.get(f"/incidents/{incident_id}").json()
    assert incident["status"] == "resolved", "its incident resolves with it"


def test_webhook_and_api_for_one_pid_land_on_one_record(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect(account, fake_dynatrace)
    backfilled(database)
    problem = fake_dynatrace.add_problem(
        title="Slow checkout", impactedEntities=[entity("SERVICE-1", "cart")]
    )
    # The webhook's {PID} without the API's "_<start>V2" suffix is the same problem.
    deliver(account, webhook_for(problem))

    first = sync_now(account)
    assert counts(first) == {"created": 0, "updated": 0, "closed": 0, "unchanged": 1}
    problem["rootCauseEntity"] = entity("PROCESS_GROUP_INSTANCE-9", "cart-jvm")  # Dynatrace found it since
    second = sync_now(account)
    assert counts(second) == {"created": 0, "updated": 1, "closed": 0, "unchanged": 0}

    [stored] = problems(database)
    assert stored.root_cause_entity_id == "PROCESS_GROUP_INSTANCE-9"
    assert stored.api_problem_id == problem["problemId"]
    assert history(database, stored.id) == [("webhook", "OPEN"), ("api", "OPEN")]
    deliver(account, webhook_for(problem, "RESOLVED"))
    assert len(problems(database)) == 1


def test_second_sync_asks_only_for_what_changed_since_the_first(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect(account, fake_dynatrace)
    backfilled(database)
    fake_dynatrace.add_problem(title="One")
    before = datetime.now(UTC)
    sync_now(account)
    again = sync_now(account)

    assert counts(again) == {"created": 0, "updated": 0, "closed": 0, "unchanged": 1}
    backfill_from, first_from, second_from = (
        int(request.params["from"]) for request in fake_dynatrace.requests_to("/api/v2/problems")
    )
    assert backfill_from < first_from < second_from
    # Since the previous sync started, less the overlap.
    assert second_from >= to_millis(before - reconcile.OVERLAP) - 1000
    [stored] = problems(database)
    assert len(history(database, stored.id)) == 1, "agreeing API data stores nothing"


def test_sync_asks_about_open_problems_the_listing_left_out(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect(account, fake_dynatrace)
    backfilled(database)
    long_ago = datetime.now(UTC) - timedelta(days=10)
    old = fake_dynatrace.add_problem(title="Old", startTime=to_millis(long_ago))
    deliver(account, webhook_for(old))
    old["status"] = "CLOSED"
    old["endTime"] = to_millis(long_ago + timedelta(hours=1))  # ended before any window we ask for
    deliver(account, webhook_for(fake_dynatrace.add_problem(title="Elsewhere"), "OPEN"))
    del fake_dynatrace.problems[list(fake_dynatrace.problems)[-1]]  # Dynatrace no longer knows it

    body = sync_now(account)

    assert (body["closed"], body["notFound"]) == (1, 1)
    states = {problem.title: problem.state for problem in problems(database)}
    assert states == {"Old": "RESOLVED", "Elsewhere": "OPEN"}
    sync_now(account)
    # One by one without fields (enrichment asks with fields=evidenceDetails,...).
    asked = [
        r.path
        for r in fake_dynatrace.requests
        if r.path.startswith("/api/v2/problems/") and "fields" not in r.params
    ]
    assert len(asked) == 2, "a problem Dynatrace does not know is not asked about again"


def test_rate_limit_retry_after_is_honoured(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect(account, fake_dynatrace)
    backfilled(database)
    fake_dynatrace.add_problem(title="After the wait")
    fake_dynatrace.fail("/api/v2/problems", 429, retry_after=2, times=1)

    started = time.monotonic()
    body = sync_now(account)

    assert time.monotonic() - started >= 2.0, "the client waited as Retry-After said"
    assert body["created"] == 1
    assert len(fake_dynatrace.requests_to("/api/v2/problems")) == 3  # backfill, 429, retry


def test_sync_without_the_problems_scope_says_which_scope(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect(account, fake_dynatrace, scopes=[scope for scope in ALL_SCOPES if scope != "problems.read"])
    backfilled(database)

    response = account.client.post("/dynatrace/sync")

    assert response.status_code == 422
    assert "problems.read" in response.json()["error"]["message"]
    assert fake_dynatrace.requests_to("/api/v2/problems") == []
    sync = account.client.get("/dynatrace/status").json()["sync"]
    assert "problems.read" in sync["lastError"]


def test_sync_against_a_web_page_says_so_at_once_without_a_retry(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect(account, fake_dynatrace)
    backfilled(database)
    fake_dynatrace.fail("/api/v2/problems", html=True)

    response = account.client.post("/dynatrace/sync")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "dynatrace_environment_not_found"
    assert len(fake_dynatrace.requests_to("/api/v2/problems")) == 2  # the backfill, then the sync once
    [job] = [job for job in jobs(database, "dynatrace.sync") if job.id == error["details"]["jobId"]]
    assert (job.state, job.attempts) == ("done", 1)


def test_sync_needs_a_connection(account):
    response = account.client.post("/dynatrace/sync")
    assert response.status_code == 409
    assert "POST /dynatrace/connect" in response.json()["error"]["message"]


def test_status_shows_sync_state_next_run_and_job_counts(
    account, fake_dynatrace, database, background_worker
):
    background_worker(sync_interval=600)
    connect(account, fake_dynatrace)
    backfilled(database)
    fake_dynatrace.add_problem(title="Counted")
    before = datetime.now(UTC)
    sync_now(account)

    status = account.client.get("/dynatrace/status").json()
    sync = status["sync"]
    assert sync["lastSyncKind"] == "sync"
    assert sync["lastError"] is None
    assert datetime.fromisoformat(sync["lastSyncAt"]) >= before
    assert sync["lastResult"]["created"] == 1
    assert sync["backfilledAt"] is not None
    assert sync["intervalSeconds"] == 600
    next_run = datetime.fromisoformat(sync["nextRunAt"])
    assert before + timedelta(seconds=590) <= next_run <= datetime.now(UTC) + timedelta(seconds=600)
    assert status["jobs"]["done"] >= 2
    assert set(status["jobs"]) == {"queued", "running", "done", "failed"}

    account.client.delete("/dynatrace/disconnect")
    after = account.client.get("/dynatrace/status").json()["sync"]
    assert after["nextRunAt"] is None, "disconnecting stops the periodic sync"


def test_periodic_sync_runs_on_its_schedule(account, fake_dynatrace, database, background_worker):
    background_worker(sync_interval=10)
    connect(account, fake_dynatrace)
    backfilled(database)
    fake_dynatrace.add_problem(title="Found on schedule")

    wait_until(lambda: settled(database, "dynatrace.sync"), timeout=90, what="the scheduled sync")
    assert [problem.title for problem in problems(database)] == ["Found on schedule"]


# --- the cap on concurrent calls --------------------------------------------------------------------------


def test_calls_of_one_connection_never_exceed_the_cap():
    inside = 0
    most = 0
    lock = threading.Lock()
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        release.wait(30)
        with lock:
            inside -= 1
        return httpx.Response(200, json={"problemId": "-1", "displayId": "P-1"})

    limiter = CallLimiter()
    transport = httpx.MockTransport(handler)
    clients = [
        CappedClient(
            "https://abc12345.live.dynatrace.com",
            "dt0c01.token",
            slots=limiter.slots("connection-a", 2),
            transport=transport,
            allow_private=True,
        )
        for _ in range(5)
    ]
    other = CappedClient(
        "https://abc12345.live.dynatrace.com",
        "dt0c01.token",
        slots=limiter.slots("connection-b", 2),
        transport=transport,
        allow_private=True,
    )
    threads = [threading.Thread(target=client.get_problem, args=("-1",)) for client in clients]
    for thread in threads:
        thread.start()
    wait_until(lambda: inside == 2, what="two calls in flight")
    time.sleep(0.3)  # the other three had every chance to enter
    assert inside == 2
    other_thread = threading.Thread(target=other.get_problem, args=("-1",))
    other_thread.start()
    wait_until(lambda: inside == 3, what="another connection's call, not held back by the first's cap")
    release.set()
    for thread in [*threads, other_thread]:
        thread.join(30)
    assert most == 3


def test_slot_is_not_held_while_waiting_out_a_rate_limit():
    limiter = CallLimiter()
    slots = limiter.slots("connection-a", 1)
    waits: list[bool] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"message": "slow down"}})

    def sleep(_seconds: float) -> None:
        acquired = slots.acquire(blocking=False)
        waits.append(acquired)
        if acquired:
            slots.release()

    client = CappedClient(
        "https://abc12345.live.dynatrace.com",
        "dt0c01.token",
        slots=slots,
        transport=httpx.MockTransport(handler),
        allow_private=True,
        max_retries=2,
        sleep=sleep,
    )
    with pytest.raises(RateLimited):
        client.get_problem("-1")
    assert waits == [True, True]


# --- a worker killed mid-job -----------------------------------------------------------------------------


@pytest.fixture
def worker_process(database_url, tmp_path):
    env = process_env(database_url, tmp_path, BOREALIS_ALLOW_PRIVATE_DYNATRACE="true")
    with borealis_processes(env, tmp_path) as start:
        yield lambda *args: start("worker", *args)


def test_backfill_of_a_killed_worker_finishes_once_after_its_lease(
    account, fake_dynatrace, database, worker_process
):
    fake_dynatrace.add_problem(title="Backfilled once")
    fake_dynatrace.slow("/api/v2/problems", 60, times=1)  # the first worker hangs on the listing
    connect(account, fake_dynatrace)
    first = worker_process("--lease", "2")
    wait_until(lambda: fake_dynatrace.requests_to("/api/v2/problems"), what="the first worker to call")
    first.kill()  # SIGKILL mid-job: only its lease is left
    first.communicate(timeout=30)

    second = worker_process("--lease", "2")
    [job] = wait_until(lambda: settled(database, "dynatrace.backfill"), what="the backfill after the lease")
    second.terminate()
    second.communicate(timeout=60)
    assert (job.state, job.attempts) == ("done", 2)
    [problem] = problems(database)
    assert history(database, problem.id) == [("api", "OPEN")], "the problem was created once"
    assert len(jobs(database, "dynatrace.backfill")) == 1
