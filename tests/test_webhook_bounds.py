"""Stored JSON is bounded so every read succeeds, and the webhook refuses what it cannot read with a 400
only once the secret is known to be right."""

from __future__ import annotations

import json

import pytest

from borealis import jsontext
from borealis.ingest import delivery
from borealis.problems.models import Problem
from tests.support.webhooks import notification, wire_connection

HTML = {"Accept": "text/html"}


def _nested(levels: int) -> object:
    document: object = {"leaf": True}
    for level in range(levels):
        document = {"level": level, "inner": [document]}
    return document


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


@pytest.fixture
def wired(account, app, database):
    return wire_connection(database, app.state.secret_box, account.workspace_id)


@pytest.mark.parametrize("levels", [130, 450])
def test_deep_details_are_cut_with_a_marker_and_read_back(account, client, wired, levels):
    body = notification()
    body["ProblemDetailsJSONv2"]["evidenceDetails"]["details"][0]["data"] = _nested(levels)
    answer = client.post(wired.url, json=body)
    assert answer.status_code == 200, answer.text
    alert_id = answer.json()["alertId"]

    detail = account.client.get(f"/dynatrace/alerts/{alert_id}?include=payload")
    assert detail.status_code == 200, detail.text
    alert = detail.json()
    assert jsontext.DEPTH_MARKER in json.dumps(alert["details"])
    assert _depth(alert["details"]) <= jsontext.MAX_DEPTH
    assert _depth(alert["payload"]) <= jsontext.MAX_DEPTH
    (delivery,) = alert["notifications"]
    assert any("cut short" in warning for warning in delivery["warnings"])
    assert account.client.get("/dynatrace/alerts?include=payload").status_code == 200
    page = account.client.get(f"/dynatrace/alerts/{alert_id}", headers=HTML)
    assert page.status_code == 200


def test_a_document_of_too_many_values_is_cut(account, client, wired):
    body = notification()
    body["ProblemDetailsJSONv2"]["filler"] = [0] * (jsontext.MAX_NODES + 5_000)
    answer = client.post(wired.url, json=body)
    assert answer.status_code == 200, answer.text
    alert = account.client.get(f"/dynatrace/alerts/{answer.json()['alertId']}").json()
    assert alert["details"]["filler"][-1] == jsontext.NODES_MARKER
    assert len(alert["details"]["filler"]) < jsontext.MAX_NODES


def test_a_document_stored_before_the_bound_still_reads(account, client, wired, database):
    answer = client.post(wired.url, json=notification())
    alert_id = answer.json()["alertId"]
    with database.session(write=True) as session:
        session.get(Problem, alert_id).details = _nested(400)
        session.commit()
    detail = account.client.get(f"/dynatrace/alerts/{alert_id}")
    assert detail.status_code == 200, detail.text
    assert jsontext.DEPTH_MARKER in detail.text
    assert account.client.get(f"/dynatrace/alerts/{alert_id}", headers=HTML).status_code == 200


HUGE_NUMBER = b'{"ProblemID": "P-1", "PID": "1", "State": "OPEN", "Count": ' + b"7" * 5_000 + b"}"


def test_a_number_too_long_to_read_is_401_without_the_secret(client, wired):
    for url in (f"{wired.path}?token=wrong", f"/dynatrace/webhook/{'0' * 36}?token=x"):
        answer = client.post(url, content=HUGE_NUMBER, headers={"Content-Type": "application/json"})
        assert answer.status_code == 401, answer.text


def test_a_number_too_long_to_read_is_400_with_the_secret(account, client, wired):
    answer = client.post(wired.url, content=HUGE_NUMBER, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "malformed_payload"
    assert "digits" in answer.json()["error"]["message"]
    (rejected,) = account.client.get("/dynatrace/rejected-deliveries").json()["deliveries"]
    assert rejected["rawBody"].startswith('{"ProblemID"')


def test_the_body_is_parsed_here_only_for_a_sender_the_writer_accepted(client, wired, monkeypatch):
    """This process parses a body only for a user id and secret the writer (a process of its own,
    which authenticates every delivery) accepted before; the writer parses the others after its check."""
    parsed_here: list[bytes] = []
    real_parse = delivery.parse_webhook

    def counting_parse(body: bytes):
        parsed_here.append(body)
        return real_parse(body)

    monkeypatch.setattr(delivery, "parse_webhook", counting_parse)
    wrong = client.post(f"{wired.path}?token=wrong", json=notification())
    assert wrong.status_code == 401
    first = client.post(wired.url, json=notification())
    assert first.status_code == 200
    assert parsed_here == []  # neither the stranger's body nor the first of the right sender
    second = client.post(wired.url, json=notification(state="RESOLVED"))
    assert second.status_code == 200
    assert len(parsed_here) == 1
    client.post(f"{wired.path}?token=wrong", json=notification())
    assert len(parsed_here) == 1
