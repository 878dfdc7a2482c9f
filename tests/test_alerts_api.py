"""GET /dynatrace/alerts and /dynatrace/alerts/{id}: the seed contract, filters, validation, isolation."""

from __future__ import annotations

import pytest

from tests.support.webhooks import BASE_MS, notification, wire_connection

LIST_FIELDS = {
    "id",
    "problemId",
    "pid",
    "title",
    "state",
    "severity",
    "impact",
    "priority",
    "impactedEntity",
    "impactedEntities",
    "rootCauseEntity",
    "problemUrl",
    "tags",
    "startTime",
    "endTime",
    "firstReceivedAt",
    "lastReceivedAt",
    "notificationCount",
}


@pytest.fixture
def wired(account, app, database):
    return wire_connection(database, app.state.secret_box, account.workspace_id)


@pytest.fixture
def seeded(client, wired):
    """Five problems, sent in order (so newest activity is the last one sent)."""
    sent = [
        notification("-1", problem_id="P-1", title="Host unavailable", severity="AVAILABILITY"),
        notification("-2", problem_id="P-2", title="Error rate increase", severity="ERROR", impact="SERVICE"),
        notification(
            "-3",
            problem_id="P-3",
            title="Slow checkout",
            severity="PERFORMANCE",
            impact="APPLICATION",
            entities=[{"type": "SERVICE", "name": "checkout-svc", "entity": "SERVICE-00000000000000C0"}],
            root_cause={
                "entityId": {"id": "SERVICE-00000000000000C0", "type": "SERVICE"},
                "name": "checkout-svc",
            },
        ),
        notification("-4", problem_id="P-4", title="Disk full", state="RESOLVED", end_ms=BASE_MS + 5),
        notification("-5", problem_id="P-5", title="Merged one"),
    ]
    for body in sent:
        assert client.post(wired.url, json=body).status_code == 200
    assert (
        client.post(wired.url, json={"PID": "-5", "State": "MERGED", "ProblemTitle": ""}).status_code == 200
    )
    return sent


def test_list_follows_the_seed_contract(account, seeded):
    response = account.client.get("/dynatrace/alerts")
    assert response.status_code == 200
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 50, 0)
    assert [alert["problemId"] for alert in page["alerts"]] == ["P-5", "P-4", "P-3", "P-2", "P-1"]
    assert set(page["alerts"][0]) >= LIST_FIELDS
    assert "payload" not in page["alerts"][0] or page["alerts"][0]["payload"] is None
    slow = page["alerts"][2]
    assert slow["rootCauseEntity"] == {
        "entityId": "SERVICE-00000000000000C0",
        "name": "checkout-svc",
        "type": "SERVICE",
    }
    assert slow["impactedEntities"] == [
        {"entityId": "SERVICE-00000000000000C0", "name": "checkout-svc", "type": "SERVICE"}
    ]
    assert slow["tags"][1] == {"context": "Kubernetes", "key": "namespace", "value": "shop"}
    assert slow["priority"] == "medium"
    assert page["alerts"][0]["state"] == "MERGED"
    assert page["alerts"][0]["title"] == "Merged one"
    assert page["alerts"][1]["endTime"] is not None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=OPEN", ["P-3", "P-2", "P-1"]),
        ("state=resolved", ["P-4"]),
        ("state=Merged", ["P-5"]),
        ("severity=error", ["P-2"]),
        ("impact=APPLICATION", ["P-3"]),
        ("q=checkout", ["P-3"]),
        ("q=CHECKOUT-SVC", ["P-3"]),
        ("q=HOST-0000000000000001", ["P-5", "P-4", "P-2", "P-1"]),
        ("q=100%25", []),
        ("state=OPEN&severity=AVAILABILITY", ["P-1"]),
        ("since=2000-01-01T00:00:00Z", ["P-5", "P-4", "P-3", "P-2", "P-1"]),
        ("until=2000-01-01T00:00:00Z", []),
    ],
)
def test_filters(account, seeded, query, expected):
    page = account.client.get(f"/dynatrace/alerts?{query}").json()
    assert [alert["problemId"] for alert in page["alerts"]] == expected
    assert page["total"] == len(expected)


def test_limit_and_offset_page_through_with_the_full_total(account, seeded):
    page = account.client.get("/dynatrace/alerts?limit=2&offset=2").json()
    assert [alert["problemId"] for alert in page["alerts"]] == ["P-3", "P-2"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)


def test_cursor_pages_match_offset_pages(account, seeded):
    seen = []
    cursor = None
    for _ in range(3):
        url = "/dynatrace/alerts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = account.client.get(url).json()
        seen += [alert["problemId"] for alert in page["alerts"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == ["P-5", "P-4", "P-3", "P-2", "P-1"]


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("state=CLOSED", "OPEN, RESOLVED, MERGED"),
        ("severity=HUGE", "AVAILABILITY"),
        ("impact=PLANET", "INFRASTRUCTURE"),
        ("since=yesterday", "ISO 8601"),
        ("include=everything", "payload"),
        ("cursor=%%%", "cursor"),
    ],
)
def test_invalid_parameters_are_4xx_listing_what_is_valid(account, query, mentions):
    response = account.client.get(f"/dynatrace/alerts?{query}")
    assert 400 <= response.status_code < 500
    assert mentions in response.json()["error"]["message"]


def test_payload_only_on_request(account, seeded):
    plain = account.client.get("/dynatrace/alerts?limit=1&offset=1").json()["alerts"][0]
    assert plain.get("payload") is None
    full = account.client.get("/dynatrace/alerts?limit=1&offset=1&include=payload").json()["alerts"][0]
    assert full["payload"]["PID"] == "-4"


def test_alerts_need_authentication(client):
    assert client.get("/dynatrace/alerts").status_code == 401


def test_users_see_only_their_own_alerts(account, seeded, make_account, app, database, client):
    other = make_account("other@example.com")
    other_wired = wire_connection(database, app.state.secret_box, other.workspace_id)
    client.post(other_wired.url, json=notification("-1", problem_id="P-OTHER"))
    mine = account.client.get("/dynatrace/alerts").json()
    theirs = other.client.get("/dynatrace/alerts").json()
    assert mine["total"] == 5
    assert [alert["problemId"] for alert in theirs["alerts"]] == ["P-OTHER"]
    assert other.client.get(f"/dynatrace/alerts/{mine['alerts'][0]['id']}").status_code == 404


def test_one_alert_with_its_notification_history(account, seeded, client, wired):
    client.post(wired.url, json=seeded[0])
    alert_id = next(a["id"] for a in account.client.get("/dynatrace/alerts?q=unavailable").json()["alerts"])
    detail = account.client.get(f"/dynatrace/alerts/{alert_id}").json()
    assert set(detail) >= LIST_FIELDS
    assert detail["problemId"] == "P-1"
    assert detail["managementZones"] == [{"id": "1", "name": "Shop"}]
    assert detail["duplicateCount"] == 1
    assert detail["detailsFormat"] == "v2"
    assert detail["details"]["displayId"] == "P-1"
    assert [n["outcome"] for n in detail["notifications"]] == ["created"]
    assert detail["notifications"][0]["deliveryCount"] == 2
    assert detail["notifications"][0].get("payload") is None
    with_payload = account.client.get(f"/dynatrace/alerts/{alert_id}?include=payload").json()
    assert with_payload["notifications"][0]["payload"]["PID"] == "-1"


def test_unknown_alert_is_404(account):
    response = account.client.get("/dynatrace/alerts/999999")
    assert response.status_code == 404
    assert "GET /dynatrace/alerts" in response.json()["error"]["message"]


def test_non_numeric_alert_id_is_4xx(account):
    assert 400 <= account.client.get("/dynatrace/alerts/abc").status_code < 500
