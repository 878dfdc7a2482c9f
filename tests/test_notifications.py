"""Notifications out, with real loopback receivers: Slack and Teams shapes, a signed generic webhook a
receiver verifies (and a replay it refuses), retries that deliver once, Retry-After, coalescing,
filters, the delivery log, and the address guard."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from borealis.errors import InvalidInput
from borealis.jobs.registry import register_handlers
from borealis.jobstore import Retry, enqueue
from borealis.jobstore.models import JobSchedule
from borealis.notifications import service
from borealis.notifications.models import EVENTS, Destination
from tests.conftest import TEST_ACTOR
from tests.support.builders import problem_body
from tests.support.jobs import run_pending
from tests.support.receivers import Receiver, running_receiver
from tests.support.webhooks import wire_connection

REPLAY_WINDOW = 300


@pytest.fixture(autouse=True)
def _handlers() -> None:
    register_handlers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def wired(app, database, account):
    return wire_connection(database, app.state.secret_box, account.workspace_id)


def add_destination(account, receiver, kind: str, **extra: Any) -> dict[str, Any]:
    body = {"kind": kind, "name": f"{kind} on call", "url": receiver.url, "events": list(EVENTS)} | extra
    answer = account.client.post("/destinations", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def dispatch(app) -> None:
    """Run each workspace's dispatch now, as its schedule does every few seconds."""
    with app.state.database.session(write=True) as session:
        for schedule in session.scalars(
            sa.select(JobSchedule).where(JobSchedule.kind == service.DISPATCH_JOB)
        ):
            enqueue(
                db_session=session,
                kind=service.DISPATCH_JOB,
                workspace_id=schedule.workspace_id,
                key=schedule.key,
                payload=schedule.payload,
            )
        session.commit()
    run_pending(app, kind=service.DISPATCH_JOB)


def notify(app) -> list[Any]:
    """Dispatch the timeline, then send (retrying as the worker would, later each time)."""
    dispatch(app)
    return run_pending(app, kind=service.DELIVER_JOB, later=timedelta(minutes=30))


def open_incident(client, wired, pid: str = "1", **fields: Any) -> None:
    body = problem_body(pid, display=f"P-{pid}", entities=("SERVICE-CHECKOUT",), **fields)
    assert client.post(wired.url, json=body).status_code == 200


def test_slack_gets_a_block_kit_message(app, account, client, wired, receiver):
    add_destination(account, receiver, "slack")
    open_incident(client, wired)
    account.client.get("/incidents")  # the follow-up forms the incident
    notify(app)
    [message] = [item.json for item in receiver.accepted]
    assert isinstance(message["text"], str)
    assert message["text"].startswith("New incident: #")
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds == ["header", "section", "context"]
    header, section, context = message["blocks"]
    assert header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    assert section["text"]["type"] == "mrkdwn"
    assert len(section["text"]["text"]) <= 3000
    assert "*Status:* open" in section["text"]["text"]
    assert all(element["type"] == "mrkdwn" for element in context["elements"])
    assert "/incidents/" in context["elements"][0]["text"]


def test_teams_gets_an_adaptive_card(app, account, client, wired, receiver):
    add_destination(account, receiver, "teams")
    open_incident(client, wired)
    account.client.get("/incidents")
    notify(app)
    [message] = [item.json for item in receiver.accepted]
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert [item["type"] for item in card["body"]] == ["TextBlock", "FactSet"]
    assert all(
        isinstance(fact["title"], str) and isinstance(fact["value"], str) for fact in card["body"][1]["facts"]
    )
    [action] = card["actions"]
    assert action["type"] == "Action.OpenUrl"
    assert "/incidents/" in action["url"]


def verify(secret: str, header: str, body: bytes, *, now: int) -> bool:
    """What a receiver does (the snippet in docs/notifications.md): recompute, compare, refuse old ones."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(now - timestamp) <= REPLAY_WINDOW


def test_a_generic_receiver_verifies_the_signature_and_refuses_a_replay(
    app, account, client, wired, receiver
):
    created = add_destination(account, receiver, "webhook", events=["incident.opened"])
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in account.client.get("/destinations").json()["items"][0]
    open_incident(client, wired)
    account.client.get("/incidents")
    notify(app)
    [request] = receiver.accepted
    header = request.headers["x-borealis-signature"]
    sent_at = int(header.split(",")[0].removeprefix("t="))
    assert verify(secret, header, request.body, now=sent_at + 5)
    assert request.json["event"] == "incident.opened"
    assert not verify(secret, header, request.body + b" ", now=sent_at)  # tampered
    assert not verify("whsec_other", header, request.body, now=sent_at)
    assert not verify(secret, header, request.body, now=sent_at + REPLAY_WINDOW + 1)  # replayed later


def test_two_500s_then_a_200_deliver_once_on_the_third_attempt_and_the_log_shows_it(
    app, account, client, wired, receiver
):
    created = add_destination(account, receiver, "webhook", events=["incident.opened"])
    receiver.script = [500, 500]
    open_incident(client, wired)
    account.client.get("/incidents")
    dispatch(app)
    log = f"/destinations/{created['id']}/deliveries"
    first = run_pending(app, kind=service.DELIVER_JOB, later=timedelta(minutes=30))
    assert len(receiver.received) == 3
    assert len(receiver.accepted) == 1
    assert isinstance(first[0], Exception)
    [entry] = account.client.get(log).json()["items"]
    assert (entry["event"], entry["status"], entry["statusCode"], entry["attempts"]) == (
        "incident.opened",
        "delivered",
        200,
        3,
    )


def test_a_receivers_retry_after_sets_the_next_attempt(app, account, client, wired, receiver):
    created = add_destination(account, receiver, "webhook", events=["incident.opened"])
    receiver.script = [429]
    receiver.retry_after = "120"
    open_incident(client, wired)
    account.client.get("/incidents")
    dispatch(app)
    outcomes = run_pending(app, kind=service.DELIVER_JOB, later=timedelta(minutes=30))
    assert isinstance(outcomes[0], Retry)
    assert outcomes[0].delay == 120.0  # the worker schedules the next attempt that far out
    assert len(receiver.received) == 2
    [entry] = account.client.get(f"/destinations/{created['id']}/deliveries").json()["items"]
    assert (entry["status"], entry["statusCode"], entry["attempts"]) == ("delivered", 200, 2)


def test_creating_a_destination_schedules_the_dispatch(app, account, receiver, database):
    add_destination(account, receiver, "slack")
    with database.session() as session:
        [schedule] = session.scalars(
            sa.select(JobSchedule).where(JobSchedule.kind == service.DISPATCH_JOB)
        ).all()
        assert schedule.key == f"workspace:{account.workspace_id}"
        assert schedule.interval_seconds == service.DISPATCH_SECONDS


def test_a_flood_of_updates_to_one_incident_is_one_update_a_minute(app, account, client, wired, receiver):
    add_destination(account, receiver, "webhook", events=["incident.updated"])
    open_incident(client, wired, "1")
    account.client.get("/incidents")
    for number in range(2, 6):
        open_incident(client, wired, str(number))  # related: each joins the incident
        account.client.get("/incidents")
        dispatch(app)
    run_pending(app, kind=service.DELIVER_JOB, later=timedelta(0))
    assert [item.json["event"] for item in receiver.accepted] == ["incident.updated"]
    assert receiver.accepted[0].json["incident"]["problemCount"] == 5  # the newest state, not the first


def test_filters_keep_out_what_does_not_match(app, account, client, wired, receiver):
    add_destination(account, receiver, "webhook", filters={"severities": ["AVAILABILITY"]})
    open_incident(client, wired, severity="PERFORMANCE")
    account.client.get("/incidents")
    notify(app)
    assert receiver.received == []
    refused = account.client.post(
        "/destinations",
        json={"kind": "webhook", "url": receiver.url, "events": list(EVENTS), "filters": {"colour": ["red"]}},
    )
    assert refused.status_code == 422


def test_the_send_test_action_and_secrets_that_never_show(app, account, receiver, database):
    created = add_destination(account, receiver, "slack")
    answer = account.client.post(f"/destinations/{created['id']}/test")
    assert answer.status_code == 200
    assert (answer.json()["event"], answer.json()["status"]) == ("test", "delivered")
    assert receiver.accepted[0].json["text"].startswith("Test notification")
    listed = account.client.get("/destinations").json()["items"][0]
    assert receiver.url not in str(listed)
    assert listed["urlHint"].startswith("http://127.0.0.1:")
    with database.session() as session:
        stored = session.get(Destination, created["id"])
        assert receiver.url not in stored.url_ciphertext


def test_private_addresses_are_refused_unless_the_operator_allows_them(app, account, database, settings):
    strict = settings.model_copy(update={"allow_private_destinations": False})
    with (
        database.session(write=True) as session,
        pytest.raises(InvalidInput, match="ALLOW_PRIVATE_DESTINATIONS"),
    ):
        service.create(
            db_session=session,
            workspace_id=account.workspace_id,
            kind="webhook",
            name="inside",
            url="http://127.0.0.1:9/hook",
            events=["incident.opened"],
            filters={},
            settings=strict,
            secret_box=app.state.secret_box,
            actor=TEST_ACTOR,
        )
    refused = account.client.post(
        "/destinations", json={"kind": "webhook", "url": "ftp://example.com/x", "events": ["incident.opened"]}
    )
    assert refused.status_code == 422
