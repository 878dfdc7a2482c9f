"""POST /dynatrace/webhook/{workspace_id} over real HTTP: security, outcomes, test notifications, bad input."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from borealis.dynatrace.models import Connection
from borealis.problems.models import Notification, Problem, RejectedDelivery
from borealis.problems.service import REJECTED_KEPT_PER_CONNECTION
from tests.support.webhooks import SAMPLES, encode, notification, wire_connection


@pytest.fixture
def wired(account, app, database):
    return wire_connection(database, app.state.secret_box, account.workspace_id)


def count(database, model) -> int:
    with database.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model))


def nothing_stored(database) -> bool:
    return count(database, Problem) == count(database, Notification) == count(database, RejectedDelivery) == 0


# --- security ------------------------------------------------------------------------------------------


def test_secret_in_query_is_accepted(client, wired):
    response = client.post(wired.url, json=notification())
    assert response.status_code == 200
    assert response.json()["received"] is True


def test_secret_as_bearer_is_accepted(client, wired):
    response = client.post(
        wired.path, json=notification(), headers={"Authorization": f"Bearer {wired.secret}"}
    )
    assert response.status_code == 200


def test_missing_secret_is_401_and_stores_nothing(client, wired, database):
    response = client.post(wired.path, json=notification())
    assert response.status_code == 401
    assert "webhook-url" in response.json()["error"]["message"]
    assert nothing_stored(database)


def test_wrong_secret_is_401_and_stores_nothing(client, wired, database):
    response = client.post(f"{wired.path}?token=wrong-{wired.secret}", json=notification())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert nothing_stored(database)


def test_another_users_secret_is_401(client, wired, make_account, app, database):
    other = wire_connection(database, app.state.secret_box, make_account("other@example.com").workspace_id)
    response = client.post(f"{wired.path}?token={other.secret}", json=notification())
    assert response.status_code == 401
    assert nothing_stored(database)


def test_unknown_user_gets_the_same_401_as_a_wrong_secret_and_stores_nothing(client, wired, database):
    unknown = client.post(f"/dynatrace/webhook/no-such-user?token={wired.secret}", json=notification())
    wrong = client.post(f"{wired.path}?token=not-the-secret", json=notification())
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["error"]["code"] == wrong.json()["error"]["code"] == "not_authenticated"
    assert unknown.json()["error"]["message"] == wrong.json()["error"]["message"]
    assert nothing_stored(database)


def test_user_without_connection_is_401(client, account, database):
    response = client.post(f"/dynatrace/webhook/{account.workspace_id}?token=anything", json=notification())
    assert response.status_code == 401
    assert nothing_stored(database)


def test_disconnected_connection_is_401(client, wired, database):
    with database.session(write=True) as session:
        session.get(Connection, wired.connection_id).token_ciphertext = None
        session.commit()
    response = client.post(wired.url, json=notification())
    assert response.status_code == 401
    assert nothing_stored(database)


def test_oversized_body_is_413_and_stores_nothing(client, wired, database, settings):
    huge = encode(notification(title="x" * (settings.max_body_bytes + 10)))
    response = client.post(wired.url, content=huge)
    assert response.status_code == 413
    assert nothing_stored(database)


def test_oversized_chunked_body_is_413(client, wired, database, settings):
    def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    response = client.post(wired.url, content=chunks())
    assert response.status_code == 413
    assert nothing_stored(database)


def test_get_on_the_webhook_is_not_allowed(client, wired):
    assert client.get(wired.url).status_code in (404, 405)


# --- bad bodies ----------------------------------------------------------------------------------------


def test_malformed_json_is_400_and_kept_for_troubleshooting(client, wired, database, account):
    response = client.post(wired.url, content=b'{"PID": "1", broken', headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    assert count(database, Problem) == 0
    rejected = account.client.get("/dynatrace/rejected-deliveries").json()["deliveries"]
    assert rejected[0]["rawBody"] == '{"PID": "1", broken'
    assert rejected[0]["contentType"] == "text/plain"


def test_body_without_identity_is_422_naming_the_missing_pid(client, wired, database):
    response = client.post(wired.url, json={"ProblemTitle": "x", "State": "OPEN"})
    assert response.status_code == 422
    assert "PID" in response.json()["error"]["message"]
    assert count(database, Problem) == 0
    assert count(database, RejectedDelivery) == 1


def test_non_object_json_is_400(client, wired, database):
    assert client.post(wired.url, json=[notification()]).status_code == 400
    assert count(database, Problem) == 0


def test_rejected_deliveries_are_bounded_per_connection(client, wired, database):
    for index in range(REJECTED_KEPT_PER_CONNECTION + 5):
        client.post(wired.url, content=f"not json {index}".encode())
    assert count(database, RejectedDelivery) == REJECTED_KEPT_PER_CONNECTION


def test_json_is_read_whatever_the_content_type(client, wired):
    response = client.post(
        wired.url,
        content=encode(notification()),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


# --- outcomes ------------------------------------------------------------------------------------------


def test_answer_names_outcome_ids_and_state(client, wired):
    body = notification("-9001", problem_id="P-9001")
    first = client.post(wired.url, json=body).json()
    assert first == {
        "received": True,
        "outcome": "created",
        "problemId": "P-9001",
        "pid": "-9001",
        "state": "OPEN",
        "alertId": first["alertId"],
    }
    assert client.post(wired.url, json=body).json()["outcome"] == "duplicate"
    resolved = client.post(
        wired.url, json=notification("-9001", state="CLOSED", observed_ms=1_800_000_000_000)
    )
    assert resolved.json()["outcome"] == "updated"
    assert resolved.json()["state"] == "RESOLVED"
    late = client.post(wired.url, json=notification("-9001", title="late", observed_ms=1_700_000_000_001))
    assert late.json()["outcome"] == "stale"
    assert late.json()["alertId"] == first["alertId"]


def test_every_sample_is_accepted(client, wired):
    outcomes = {}
    for path in sorted(Path(SAMPLES).glob("*.json")):
        response = client.post(wired.url, content=path.read_bytes())
        assert response.status_code == 200, path.name
        outcomes[path.name] = response.json()["outcome"]
    assert outcomes == {
        "webhook-2017-open-process-crash-multi-entity.json": "created",
        "webhook-keptn-resolved-service-responsetime-problemdetailsv1.json": "created",
        "webhook-official-docs-testrun-example.json": "test",
    }


def test_accepted_delivery_updates_last_webhook_at(client, wired, database):
    client.post(wired.url, json=notification())
    with database.session() as session:
        assert session.get(Connection, wired.connection_id).last_webhook_at is not None


# --- test notifications --------------------------------------------------------------------------------


def test_test_notification_is_a_connection_check_not_a_problem(client, wired, database):
    body = (Path(SAMPLES) / "webhook-official-docs-testrun-example.json").read_bytes()
    response = client.post(wired.url, content=body)
    assert response.status_code == 200
    assert response.json()["outcome"] == "test"
    assert response.json()["alertId"] is None
    assert count(database, Problem) == 0
    with database.session() as session:
        connection = session.get(Connection, wired.connection_id)
        report = connection.last_test_report
        assert connection.last_test_notification_at is not None
    assert set(report) == {
        "receivedAt",
        "ok",
        "missingFields",
        "unreplacedPlaceholders",
        "problemId",
        "pid",
        "title",
    }
    assert report["ok"] is False
    assert "ProblemSeverity" in report["missingFields"]


def test_test_notification_reports_unreplaced_placeholders(client, wired, database):
    body = notification(
        "99999", problem_id="999", ProblemURL="{ProblemURL}", ImpactedEntity="{ImpactedEntity}"
    )
    assert client.post(wired.url, json=body).json()["outcome"] == "test"
    with database.session() as session:
        report = session.get(Connection, wired.connection_id).last_test_report
    assert report["unreplacedPlaceholders"] == ["ImpactedEntity", "ProblemURL"]
    assert report["ok"] is False


def test_status_shows_the_last_test_notification(client, wired, account):
    client.post(
        wired.url, content=(Path(SAMPLES) / "webhook-official-docs-testrun-example.json").read_bytes()
    )
    status = account.client.get("/dynatrace/status")
    assert status.status_code == 200
    shown = status.json()
    assert shown.get("lastTestNotificationAt")
    assert shown["lastTestNotification"]["problemId"] == "999"


# --- concurrency over HTTP -----------------------------------------------------------------------------


def test_concurrent_deliveries_over_http_all_land(live_server, wired, database):
    bodies = [encode(notification(f"-{n % 10}", observed_ms=1_700_000_000_000 + n)) for n in range(60)]
    bodies += bodies[:20]

    def send(body: bytes) -> int:
        with httpx.Client(base_url=live_server.url, timeout=30) as http:
            return http.post(wired.url, content=body).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(send, bodies))
    assert statuses == [200] * len(bodies)
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Problem)) == 10
        assert session.scalar(sa.select(sa.func.sum(Notification.delivery_count))) == len(bodies)
        assert session.scalar(sa.select(sa.func.sum(Problem.duplicate_count))) == 20


# --- documentation -------------------------------------------------------------------------------------


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_describes_the_webhook_as_it_answers(client, wired):
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/dynatrace/webhook/{workspace_id}"]["post"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"workspace_id"}
    schemes = document["components"]["securitySchemes"]
    assert [set(option) for option in operation["security"]] == [{"webhookBearer"}, {"webhookToken"}]
    assert schemes["webhookBearer"]["scheme"] == "bearer"
    assert (schemes["webhookToken"]["in"], schemes["webhookToken"]["name"]) == ("query", "token")
    assert {"200", "400", "401", "413", "422"} <= set(operation["responses"])
    assert "404" not in operation["responses"]
    schemas = document["components"]["schemas"]
    for ref in set(_refs(document)):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref

    documented = schemas["WebhookAnswer"]["properties"]
    answer = client.post(wired.url, json=notification()).json()
    assert set(answer) == set(documented)
    assert answer["outcome"] in documented["outcome"]["enum"]
    refused = client.post(wired.path, json=notification()).json()
    assert set(refused["error"]) <= set(schemas["ErrorBody"]["properties"])
