"""Durable background work: enqueue with the cause, claim under a lease, retries, keys, schedules,
workers in threads and in real processes, and the /jobs API."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from borealis.crypto import SecretBox
from borealis.db import utcnow
from borealis.jobs.registry import Registry
from borealis.jobs.worker import Worker
from borealis.jobstore import (
    JobContext,
    PermanentFailure,
    Retry,
    enqueueing,
    leases,
    listing,
    outcomes,
    schedules,
)
from borealis.jobstore.models import Job, JobSchedule
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Workspace
from tests.conftest import TEST_SECRET_KEY
from tests.support.job_kinds import read_events
from tests.support.processes import borealis_processes, process_env
from tests.support.waiting import wait_until


@pytest.fixture
def workspace_id(database) -> str:
    with database.session(write=True) as session:
        _, workspace = workspaces_service.create_user(db_session=session, email="worker@example.com")
        session.commit()
        return workspace.id


def enqueue(database, **kwargs) -> int:
    with database.session(write=True) as session:
        job = enqueueing.enqueue(db_session=session, **kwargs)
        session.commit()
        return job.id


def load(database, job_id: int) -> Job:
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def claim(database, kinds, owner, *, lease_seconds=60.0, now=None) -> Job | None:
    with database.session(write=True) as session:
        job = leases.claim(db_session=session, kinds=kinds, owner=owner, lease_seconds=lease_seconds, now=now)
        session.commit()
        if job is not None:
            session.expunge(job)
        return job


def jobs_of(database, kind: str) -> list[Job]:
    with database.session() as session:
        jobs = list(session.scalars(sa.select(Job).where(Job.kind == kind).order_by(Job.id)))
        session.expunge_all()
        return jobs


@pytest.fixture
def start_worker(database, settings) -> Iterator[Callable[..., Worker]]:
    """In-process workers (threads) on the test database, each with its own handler registry."""
    workers: list[Worker] = []

    def factory(registry: Registry, **options) -> Worker:
        options = {"concurrency": 2, "lease_seconds": 10.0, "poll_min": 0.02, "poll_max": 0.2, **options}
        worker = Worker(
            database=database,
            settings=settings,
            secret_box=SecretBox.from_passphrase(TEST_SECRET_KEY),
            registry=registry,
            **options,
        )
        worker.start()
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        worker.stop(grace_seconds=5)


# --- enqueue -------------------------------------------------------------------------------------------


def test_enqueued_job_exists_only_if_the_callers_transaction_commits(database, workspace_id):
    with database.session(write=True) as session:
        enqueueing.enqueue(
            db_session=session, kind="problem.enrich", workspace_id=workspace_id, key="problem:1"
        )
        session.rollback()
    assert jobs_of(database, "problem.enrich") == []

    with database.session(write=True) as session:
        enqueueing.enqueue(
            db_session=session, kind="problem.enrich", workspace_id=workspace_id, key="problem:1"
        )
        session.commit()
    [job] = jobs_of(database, "problem.enrich")
    assert (job.state, job.attempts, job.workspace_id) == ("queued", 0, workspace_id)


def test_second_request_for_queued_work_is_folded_into_it(database, workspace_id):
    later = utcnow() + timedelta(minutes=5)
    first = enqueue(
        database,
        kind="problem.enrich",
        workspace_id=workspace_id,
        key="problem:5",
        payload={"a": 1},
        run_after=later,
    )
    second = enqueue(
        database, kind="problem.enrich", workspace_id=workspace_id, key="problem:5", payload={"b": 2}
    )

    assert second == first
    job = load(database, first)
    assert job.payload == {"a": 1, "b": 2}
    assert job.run_after < later, "the folded job starts as early as the earliest request"
    # Other kinds, other keys and unkeyed work are never folded.
    assert enqueue(database, kind="incident.rca", workspace_id=workspace_id, key="problem:5") != first
    assert enqueue(database, kind="problem.enrich", workspace_id=workspace_id, key="problem:6") != first
    unkeyed = {enqueue(database, kind="cleanup", workspace_id=workspace_id) for _ in range(2)}
    assert len(unkeyed) == 2


def test_request_while_the_job_runs_queues_a_follow_up(database, workspace_id):
    first = enqueue(database, kind="problem.enrich", workspace_id=workspace_id, key="problem:7")
    assert claim(database, ["problem.enrich"], "w1").id == first
    follow_up = enqueue(database, kind="problem.enrich", workspace_id=workspace_id, key="problem:7")
    assert follow_up != first
    # It waits for the running one: same key.
    assert claim(database, ["problem.enrich"], "w2") is None


# --- claim and lease -----------------------------------------------------------------------------------


def test_claim_takes_a_ready_job_of_a_known_kind_under_a_lease(database, workspace_id):
    future = enqueue(database, kind="a", workspace_id=workspace_id, run_after=utcnow() + timedelta(hours=1))
    ready = enqueue(database, kind="a", workspace_id=workspace_id)
    enqueue(database, kind="unknown-here", workspace_id=workspace_id)

    job = claim(database, ["a"], "worker-1", lease_seconds=30)
    assert job.id == ready
    assert (job.state, job.lease_owner, job.attempts) == ("running", "worker-1", 1)
    assert job.lease_expires_at > utcnow() + timedelta(seconds=20)
    assert claim(database, ["a"], "worker-2") is None, "the other job is not due yet"
    assert load(database, future).state == "queued"


def test_expired_lease_lets_another_worker_run_the_job_once(database, workspace_id):
    job_id = enqueue(database, kind="a", workspace_id=workspace_id, key="incident:9")
    assert claim(database, ["a"], "dead-worker", lease_seconds=5).id == job_id
    assert claim(database, ["a"], "worker-2") is None, "the lease still holds"

    after_lease = utcnow() + timedelta(seconds=6)
    taken = claim(database, ["a"], "worker-2", now=after_lease)
    assert (taken.id, taken.lease_owner, taken.attempts) == (job_id, "worker-2", 2)

    with database.session(write=True) as session:
        assert not outcomes.complete(db_session=session, job_id=job_id, owner="dead-worker")
        assert outcomes.complete(db_session=session, job_id=job_id, owner="worker-2", result={"ok": True})
        session.commit()
    assert claim(database, ["a"], "worker-3", now=after_lease + timedelta(hours=1)) is None
    job = load(database, job_id)
    assert (job.state, job.result, job.attempts) == ("done", {"ok": True}, 2)


def test_dead_workers_job_is_finished_by_a_live_worker(database, workspace_id, start_worker):
    runs: list[int] = []
    registry = Registry()

    @registry.register("a")
    def handler(ctx: JobContext) -> dict:
        runs.append(ctx.attempt)
        return {"attempt": ctx.attempt}

    job_id = enqueue(database, kind="a", workspace_id=workspace_id, key="problem:1")
    claim(database, ["a"], "dead-worker", lease_seconds=0.3)
    start_worker(registry)

    wait_until(lambda: load(database, job_id).state == "done", what="the job to be taken over")
    assert runs == [2]
    assert load(database, job_id).result == {"attempt": 2}


def test_last_attempt_of_a_dead_worker_fails_with_the_reason(database, workspace_id):
    job_id = enqueue(database, kind="a", workspace_id=workspace_id, max_attempts=1)
    claim(database, ["a"], "dead-worker", lease_seconds=1)
    later = utcnow() + timedelta(seconds=2)
    assert claim(database, ["a"], "worker-2", now=later) is None, "no attempt is left to take over"

    with database.session(write=True) as session:
        assert outcomes.fail_abandoned(db_session=session, now=later) == 1
        session.commit()
    job = load(database, job_id)
    assert job.state == "failed"
    assert "lease expired" in job.last_error


def test_released_job_is_claimable_at_once_without_losing_an_attempt(database, workspace_id):
    job_id = enqueue(database, kind="a", workspace_id=workspace_id, key="problem:3")
    claim(database, ["a"], "stopping-worker", lease_seconds=600)
    with database.session(write=True) as session:
        assert leases.release(db_session=session, job_ids=[job_id], owner="stopping-worker") == 1
        session.commit()
    taken = claim(database, ["a"], "worker-2")
    assert (taken.id, taken.attempts) == (job_id, 1)


# --- retries -------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half():
    rng = random.Random(7)
    for attempt, nominal in [(1, 10), (2, 20), (3, 40), (4, 80), (8, 900), (30, 900)]:
        delays = [outcomes.backoff_delay(attempt, base=10, cap=900, rng=rng) for _ in range(200)]
        assert all(nominal / 2 <= delay <= nominal for delay in delays)
        assert len({round(delay, 6) for delay in delays}) > 100, "jitter spreads retries"


def test_failed_attempt_is_queued_again_after_its_backoff(database, workspace_id):
    job_id = enqueue(database, kind="a", workspace_id=workspace_id, key="problem:2")
    claim(database, ["a"], "w1")
    retry_at = utcnow() + timedelta(seconds=40)
    with database.session(write=True) as session:
        outcome = outcomes.fail(
            db_session=session, job_id=job_id, owner="w1", error="HTTP 503", retry_at=retry_at
        )
        session.commit()
    assert outcome == "retry"
    job = load(database, job_id)
    assert (job.state, job.run_after, job.last_error, job.lease_owner) == (
        "queued",
        retry_at,
        "HTTP 503",
        None,
    )
    assert claim(database, ["a"], "w2") is None
    assert claim(database, ["a"], "w2", now=retry_at + timedelta(seconds=1)).id == job_id


def test_retry_while_a_twin_is_queued_hands_the_work_to_the_twin(database, workspace_id):
    first = enqueue(database, kind="a", workspace_id=workspace_id, key="problem:4")
    claim(database, ["a"], "w1")
    twin = enqueue(database, kind="a", workspace_id=workspace_id, key="problem:4", payload={"newer": True})
    retry_at = utcnow() + timedelta(seconds=30)
    with database.session(write=True) as session:
        outcome = outcomes.fail(
            db_session=session, job_id=first, owner="w1", error="HTTP 429", retry_at=retry_at
        )
        session.commit()
    assert outcome == "retry"
    assert load(database, first).state == "failed"
    assert f"retried as job {twin}" in load(database, first).last_error
    assert load(database, twin).run_after >= retry_at, "the twin keeps the back-off"


def test_failing_job_retries_with_backoff_then_fails_with_the_reason(database, workspace_id, start_worker):
    registry = Registry()
    attempts: list[int] = []

    @registry.register("flaky", backoff_base=0.05, backoff_cap=0.2)
    def handler(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("Dynatrace answered 503 for token dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.SECRETPART")

    job_id = enqueue(database, kind="flaky", workspace_id=workspace_id, max_attempts=3)
    start_worker(registry)

    job = wait_until(lambda: (j := load(database, job_id)).state == "failed" and j, what="the job to fail")
    assert attempts == [1, 2, 3]
    assert job.attempts == 3
    assert job.last_error.startswith("RuntimeError: Dynatrace answered 503")
    assert "SECRETPART" not in job.last_error, "secrets never reach the database"
    assert job.finished_at is not None


def test_permanent_failure_stops_at_once_and_retry_uses_its_delay(database, workspace_id, start_worker):
    registry = Registry()

    @registry.register("hopeless")
    def hopeless(ctx: JobContext) -> None:
        raise PermanentFailure("problem 12 no longer exists")

    @registry.register("limited")
    def limited(ctx: JobContext) -> None:
        raise Retry("Dynatrace rate limit", delay=3600)

    @registry.register("throttled")
    def throttled(ctx: JobContext) -> None:
        raise Retry("HTTP 429 from Dynatrace", delay=3600, count_attempt=False)

    hopeless_id = enqueue(database, kind="hopeless", workspace_id=workspace_id)
    limited_id = enqueue(database, kind="limited", workspace_id=workspace_id)
    throttled_id = enqueue(database, kind="throttled", workspace_id=workspace_id)
    start_worker(registry)

    wait_until(lambda: load(database, hopeless_id).state == "failed", what="the hopeless job to fail")
    job = load(database, hopeless_id)
    assert (job.attempts, job.last_error) == (1, "problem 12 no longer exists")
    wait_until(
        lambda: load(database, limited_id).attempts == 1 and load(database, limited_id).state == "queued"
    )
    assert load(database, limited_id).run_after > utcnow() + timedelta(minutes=50)
    wait_until(lambda: load(database, throttled_id).last_error == "HTTP 429 from Dynatrace")
    throttled_job = load(database, throttled_id)
    assert (throttled_job.state, throttled_job.attempts) == ("queued", 0), (
        "waiting out a 429 costs no attempt"
    )


def test_handler_can_commit_its_work_together_with_the_completion(database, workspace_id, start_worker):
    registry = Registry()

    @registry.register("atomic")
    def handler(ctx: JobContext) -> None:
        with ctx.session() as session:
            workspace = session.get(Workspace, ctx.workspace_id)
            workspace.rca_enabled = True
            ctx.complete(session, {"changed": "rca_enabled"})
            session.commit()

    job_id = enqueue(database, kind="atomic", workspace_id=workspace_id)
    start_worker(registry)
    wait_until(lambda: load(database, job_id).state == "done")
    assert load(database, job_id).result == {"changed": "rca_enabled"}


# --- keys: never two running at once -------------------------------------------------------------------


def test_concurrent_claimers_never_run_two_jobs_with_one_key(database, workspace_id):
    kinds = [f"k{i}" for i in range(4)]
    for kind in kinds:
        for key in ("problem:1", "problem:2", None):
            enqueue(database, kind=kind, workspace_id=workspace_id, key=key)

    claimers = 8
    barrier = threading.Barrier(claimers)
    claimed: list[Job] = []
    lock = threading.Lock()

    def claimer(index: int) -> None:
        barrier.wait()
        job = claim(database, kinds, f"claimer-{index}")
        if job is not None:
            with lock:
                claimed.append(job)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    keys = [job.key for job in claimed if job.key is not None]
    assert sorted(keys) == ["problem:1", "problem:2"], "one running job per key, and both keys got one"
    # 4 unkeyed jobs and one per key were claimable; 8 claimers took exactly those, each a different one.
    assert len({job.id for job in claimed}) == len(claimed) == 6
    with database.session() as session:
        running_keys = session.scalars(
            sa.select(Job.key).where(Job.state == "running", Job.key.is_not(None))
        ).all()
    assert sorted(running_keys) == ["problem:1", "problem:2"]


def test_workers_never_run_two_jobs_with_one_key_at_once(database, workspace_id, start_worker):
    registry = Registry()
    running: dict[str, int] = {}
    overlaps: list[str] = []
    finished: list[int] = []
    lock = threading.Lock()

    def handler(ctx: JobContext) -> None:
        with lock:
            if running.get(ctx.key):
                overlaps.append(ctx.key)
            running[ctx.key] = running.get(ctx.key, 0) + 1
        time.sleep(0.01)
        with lock:
            running[ctx.key] -= 1
            finished.append(ctx.job_id)

    kinds = [f"keyed.{i}" for i in range(5)]
    for kind in kinds:
        registry.register(kind)(handler)
    ids = [
        enqueue(database, kind=kind, workspace_id=workspace_id, key=f"problem:{n}")
        for kind in kinds
        for n in range(3)
    ]
    start_worker(registry, concurrency=4)
    start_worker(registry, concurrency=4)

    wait_until(lambda: len(finished) >= len(ids), what="every job to finish")
    assert overlaps == []
    assert sorted(finished) == sorted(ids), "each job ran exactly once"


# --- schedules -----------------------------------------------------------------------------------------


def test_schedule_fires_once_however_many_callers_look(database, workspace_id):
    with database.session(write=True) as session:
        schedules.ensure_schedule(
            db_session=session,
            kind="dynatrace.sync",
            key="connection:c1",
            workspace_id=workspace_id,
            interval_seconds=300,
            payload={"connectionId": "c1"},
        )
        session.commit()

    callers = 6
    barrier = threading.Barrier(callers)
    fired: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait()
        with database.session(write=True) as session:
            jobs = schedules.fire_due_schedules(db_session=session)
            session.commit()
        with lock:
            fired.extend(job.id for job in jobs)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(fired) == 1
    [job] = jobs_of(database, "dynatrace.sync")
    assert (job.key, job.payload, job.workspace_id) == ("connection:c1", {"connectionId": "c1"}, workspace_id)
    with database.session() as session:
        schedule = schedules.get_schedule(db_session=session, kind="dynatrace.sync", key="connection:c1")
        assert schedule.next_run_at > utcnow() + timedelta(seconds=290)
        assert schedule.last_job_id == job.id


def test_schedule_fires_once_with_two_running_workers(database, workspace_id, start_worker):
    with database.session(write=True) as session:
        schedules.ensure_schedule(
            db_session=session,
            kind="tick",
            key="connection:c2",
            workspace_id=workspace_id,
            interval_seconds=3600,
        )
        session.commit()
    registry = Registry()
    ran: list[int] = []
    registry.register("tick")(lambda ctx: ran.append(ctx.job_id))
    start_worker(registry, schedule_poll=0.05)
    start_worker(registry, schedule_poll=0.05)

    wait_until(lambda: ran, what="the scheduled job to run")
    with database.session() as session:
        schedule = schedules.get_schedule(db_session=session, kind="tick", key="connection:c2")
        assert schedule.next_run_at > utcnow() + timedelta(minutes=59)
    assert len(jobs_of(database, "tick")) == 1


def test_ensure_schedule_updates_in_place_and_remove_deletes(database, workspace_id):
    with database.session(write=True) as session:
        first = schedules.ensure_schedule(
            db_session=session,
            kind="sync",
            key="connection:c3",
            workspace_id=workspace_id,
            interval_seconds=600,
            first_run_at=utcnow() + timedelta(hours=2),
        )
        again = schedules.ensure_schedule(
            db_session=session,
            kind="sync",
            key="connection:c3",
            workspace_id=workspace_id,
            interval_seconds=60,
        )
        session.commit()
        assert again.id == first.id
        assert again.interval_seconds == 60
        assert again.next_run_at <= utcnow() + timedelta(seconds=60), "a shorter interval applies now"
    with database.session(write=True) as session:
        assert schedules.remove_schedule(db_session=session, kind="sync", key="connection:c3")
        assert not schedules.remove_schedule(db_session=session, kind="sync", key="connection:c3")
        session.commit()
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(JobSchedule)) == 0


# --- the /jobs API -------------------------------------------------------------------------------------


def test_jobs_api_lists_only_the_callers_jobs_with_filters(database, make_account):
    me = make_account("me@example.com")
    other = make_account("other@example.com")
    mine = [
        enqueue(database, kind="problem.enrich", workspace_id=me.workspace_id, key=f"problem:{n}")
        for n in range(3)
    ]
    enqueue(database, kind="incident.rca", workspace_id=me.workspace_id, key="incident:1")
    theirs = enqueue(database, kind="problem.enrich", workspace_id=other.workspace_id, key="problem:99")
    claim(database, ["incident.rca"], "w1")

    body = me.client.get("/jobs").json()
    assert body["total"] == 4
    assert theirs not in {job["id"] for job in body["jobs"]}
    assert {
        "id",
        "kind",
        "key",
        "state",
        "attempts",
        "maxAttempts",
        "runAfter",
        "lastError",
        "createdAt",
    } <= set(body["jobs"][0])

    enrich = me.client.get("/jobs", params={"kind": "problem.enrich", "limit": 2, "offset": 1}).json()
    assert (enrich["total"], enrich["limit"], enrich["offset"]) == (3, 2, 1)
    assert [job["id"] for job in enrich["jobs"]] == sorted(mine, reverse=True)[1:3]

    running = me.client.get("/jobs", params={"state": "running"}).json()
    assert [job["kind"] for job in running["jobs"]] == ["incident.rca"]

    assert me.client.get(f"/jobs/{mine[0]}").json()["key"] == "problem:0"
    missing = me.client.get(f"/jobs/{theirs}")
    assert missing.status_code == 404
    assert "GET /jobs" in missing.json()["error"]["message"]


def test_jobs_api_refuses_bad_filters_and_anonymous_callers(client, account):
    bad = account.client.get("/jobs", params={"state": "sleeping"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_input"
    assert account.client.get("/jobs", params={"limit": 0}).status_code == 422
    assert account.client.get("/jobs/99999999999999999999999").status_code == 422
    assert account.client.get("/jobs/not-a-number").status_code == 422
    assert client.get("/jobs").status_code == 401


def test_counts_by_state_cover_every_state(database, workspace_id):
    enqueue(database, kind="a", workspace_id=workspace_id)
    enqueue(database, kind="a", workspace_id=workspace_id)
    claim(database, ["a"], "w1")
    with database.session() as session:
        counts = listing.counts_by_state(db_session=session, workspace_id=workspace_id)
    assert counts == {"queued": 1, "running": 1, "done": 0, "failed": 0}


# --- real processes ------------------------------------------------------------------------------------


@pytest.fixture
def spawn(database_url, tmp_path, database) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``borealis`` subprocesses; whatever is still running at the end is killed."""
    # Fresh SQLite connections in this process: if anything here ever opened and closed the database
    # file directly (POSIX locks are per process), our old connections hold no locks, and a subprocess
    # closing its last connection would delete the WAL they still write to.
    database.engine.dispose()
    with borealis_processes(process_env(database_url, tmp_path), tmp_path) as start:
        yield start


def worker_args(*extra: str) -> list[str]:
    return ["worker", "--import", "tests.support.job_kinds", *extra]


def test_sigterm_lets_a_worker_process_finish_its_job_and_exit_cleanly(
    database, workspace_id, spawn, tmp_path
):
    log = tmp_path / "events.log"
    job_id = enqueue(
        database, kind="test.record", workspace_id=workspace_id, payload={"log": str(log), "seconds": 1}
    )
    worker = spawn(*worker_args("--concurrency", "2"))

    wait_until(lambda: read_events(log), what="the job to start")
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)

    assert worker.returncode == 0, stderr
    assert [event["event"] for event in read_events(log)] == ["start", "end"]
    assert load(database, job_id).state == "done"
    messages = [line["message"] for line in _json_lines(stderr)]
    assert "worker started" in messages
    assert "worker stopped" in messages


def test_sigterm_gives_back_a_job_that_outlives_the_grace_period(database, workspace_id, spawn, tmp_path):
    log = tmp_path / "events.log"
    job_id = enqueue(
        database, kind="test.record", workspace_id=workspace_id, payload={"log": str(log), "seconds": 120}
    )
    worker = spawn(*worker_args("--grace", "0.5"))

    wait_until(lambda: read_events(log), what="the job to start")
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)

    assert worker.returncode == 0, stderr
    job = load(database, job_id)
    assert (job.state, job.lease_owner, job.attempts) == ("running", None, 0)
    taken = claim(database, ["test.record"], "next-worker")
    assert (taken.id, taken.attempts) == (job_id, 1), "the next worker takes it over at once"


def test_killed_worker_job_completes_once_after_its_lease(database, workspace_id, spawn, tmp_path):
    log = tmp_path / "events.log"
    job_id = enqueue(
        database, kind="test.record", workspace_id=workspace_id, payload={"log": str(log), "seconds": 2}
    )
    first = spawn(*worker_args("--lease", "2"))
    wait_until(lambda: read_events(log), what="the job to start")
    first.kill()  # SIGKILL: no goodbye, the lease is all that is left
    first.communicate(timeout=30)

    second = spawn(*worker_args("--lease", "2"))
    wait_until(lambda: load(database, job_id).state == "done", what="the job to complete after the lease")
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=60)

    events = read_events(log)
    starts = [event for event in events if event["event"] == "start"]
    ends = [event for event in events if event["event"] == "end"]
    assert [event["pid"] for event in starts] == [first.pid, second.pid]
    assert [(event["pid"], event["attempt"]) for event in ends] == [(second.pid, 2)]
    assert load(database, job_id).attempts == 2


def test_two_worker_processes_never_run_one_job_twice(database, workspace_id, spawn, tmp_path):
    log = tmp_path / "events.log"
    # The first jobs wait for each other across processes: each worker fills its 3 slots with them,
    # so neither process can finish everything before the other starts.
    ids = [
        enqueue(
            database,
            kind="test.record",
            workspace_id=workspace_id,
            payload={"log": str(log), "until_pids": 2},
        )
        for _ in range(6)
    ]
    ids += [
        enqueue(
            database,
            kind="test.record",
            workspace_id=workspace_id,
            payload={"log": str(log), "seconds": 0.02},
        )
        for _ in range(30)
    ]
    # Keyed work across two kinds: never two at once per key.
    for kind in ("test.record", "test.record.other"):
        for n in range(3):
            ids.append(
                enqueue(
                    database,
                    kind=kind,
                    workspace_id=workspace_id,
                    key=f"problem:{n}",
                    payload={"log": str(log), "seconds": 0.1},
                )
            )
    workers = [spawn(*worker_args("--concurrency", "3")) for _ in range(2)]

    def all_done() -> bool:
        with database.session() as session:
            return session.scalar(
                sa.select(sa.func.count()).select_from(Job).where(Job.id.in_(ids), Job.state == "done")
            ) == len(ids)

    wait_until(all_done, what="every job to be done")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr

    events = read_events(log)
    starts = [event["job"] for event in events if event["event"] == "start"]
    assert sorted(starts) == sorted(ids), "every job started exactly once"
    running_keys: set[str] = set()
    for event in events:
        if event["key"] is None:
            continue
        if event["event"] == "start":
            assert event["key"] not in running_keys, f"two jobs ran at once on {event['key']}"
            running_keys.add(event["key"])
        else:
            running_keys.discard(event["key"])
    assert len({event["pid"] for event in events}) == 2, "both processes took work"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _json_lines(stderr: str) -> list[dict]:
    lines = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_serve_runs_workers_in_process_and_stops_them_on_sigterm(database, workspace_id, spawn, tmp_path):
    log = tmp_path / "events.log"
    port = _free_port()
    server = spawn("serve", "--port", str(port), "--import", "tests.support.job_kinds")
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), what="the server to answer")
    job_id = enqueue(database, kind="test.record", workspace_id=workspace_id, payload={"log": str(log)})
    wait_until(lambda: load(database, job_id).state == "done", what="the in-process worker to run the job")
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=60)

    assert server.returncode == 0, stderr
    messages = [line["message"] for line in _json_lines(stderr)]
    assert "worker started" in messages
    assert "worker stopped" in messages


def test_serve_without_workers_starts_none(spawn):
    port = _free_port()
    server = spawn("serve", "--port", str(port), "--no-workers")
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), what="the server to answer")
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=60)

    assert server.returncode == 0, stderr
    assert "worker started" not in [line["message"] for line in _json_lines(stderr)]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_kinds_registered_first_are_claimed_before_an_older_backlog(database, workspace_id, start_worker):
    registry = Registry()
    ran: list[str] = []

    @registry.register("backlog")
    def backlog(ctx: JobContext) -> None:
        ran.append(ctx.key)

    def urgent(ctx: JobContext) -> None:
        ran.append(ctx.key)

    registry.add("urgent", urgent, first=True)
    assert registry.tiers() == [["urgent"], ["backlog"]]
    for number in range(5):
        enqueue(database, kind="backlog", workspace_id=workspace_id, key=f"backlog:{number}")
    enqueue(database, kind="urgent", workspace_id=workspace_id, key="urgent:0")
    start_worker(registry, concurrency=1)
    wait_until(lambda: len(ran) == 6, what="every job to run")
    assert ran == ["urgent:0"] + [f"backlog:{number}" for number in range(5)]
