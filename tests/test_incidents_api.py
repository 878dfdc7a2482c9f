"""Incidents through the live server: problems arrive by webhook, incidents are read and changed by API."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.builders import problem_body
from tests.support.webhooks import wire_connection


@pytest.fixture
def dynatrace(app, database, account, client):
    """The default account with a wired webhook; ``send`` posts one notification."""
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)

    class Sender:
        user = account
        connection = wired

        @staticmethod
        def send(body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(wired.url, json=body)
            assert response.status_code == 200, response.text
            return response.json()

    return Sender


def incidents(account, **params) -> list[dict[str, Any]]:
    response = account.client.get("/incidents", params=params)
    assert response.status_code == 200, response.text
    return response.json()["incidents"]


def detail(account, incident_id: int) -> dict[str, Any]:
    response = account.client.get(f"/incidents/{incident_id}")
    assert response.status_code == 200, response.text
    return response.json()


def kinds(incident: dict[str, Any]) -> list[str]:
    return [event["kind"] for event in incident["timeline"]]


# -- joining and explaining ------------------------------------------------------------------------------


def test_related_problems_join_one_incident_with_a_checkable_reason(dynatrace):
    first = dynatrace.send(
        problem_body(
            "1", display="P-1", title="CPU saturation", root_cause="HOST-DB1", entities=("SERVICE-DB",)
        )
    )
    second = dynatrace.send(
        problem_body("2", display="P-2", minute=2, root_cause="HOST-DB1", entities=("SERVICE-API",))
    )
    (incident,) = incidents(dynatrace.user)
    assert incident["problemCount"] == 2
    assert incident["status"] == "open"
    found = detail(dynatrace.user, incident["id"])
    by_alert = {problem["alertId"]: problem for problem in found["problems"]}
    assert by_alert[first["alertId"]]["strategy"] == "new"
    joined = by_alert[second["alertId"]]
    assert joined["strategy"] == "root_cause"
    assert joined["reason"] == "shares root cause HOST-DB1 with P-1; started 2 min apart"
    assert joined["relatedAlertId"] == first["alertId"]
    assert joined["score"] >= 0.5
    assert kinds(found) == ["opened", "problem_joined"]
    assert {e["entityId"] for e in found["affectedEntities"]} == {"HOST-DB1", "SERVICE-DB", "SERVICE-API"}


def test_alerts_carry_their_incident_id(dynatrace):
    sent = dynatrace.send(problem_body("1", display="P-1", entities=("SERVICE-A",)))
    (incident,) = incidents(dynatrace.user)
    alerts = dynatrace.user.client.get("/dynatrace/alerts").json()["alerts"]
    assert [alert["incidentId"] for alert in alerts] == [incident["id"]]
    one = dynatrace.user.client.get(f"/dynatrace/alerts/{sent['alertId']}").json()
    assert one["incidentId"] == incident["id"]


def test_unrelated_problems_at_the_same_time_open_separate_incidents(dynatrace):
    dynatrace.send(
        problem_body("1", display="P-1", entities=("SERVICE-A",), tags="env:prod", zones=("Shop",))
    )
    dynatrace.send(
        problem_body("2", display="P-2", entities=("SERVICE-B",), tags="env:prod", zones=("Shop",))
    )
    assert len(incidents(dynatrace.user)) == 2


def test_incident_takes_the_title_and_priority_of_its_most_severe_problem(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", title="Slow checkout", entities=("SERVICE-A",)))
    dynatrace.send(
        problem_body(
            "2",
            display="P-2",
            minute=1,
            title="Checkout unavailable",
            severity="AVAILABILITY",
            entities=("SERVICE-A",),
        )
    )
    (incident,) = incidents(dynatrace.user)
    assert incident["title"] == "Checkout unavailable"
    assert incident["priority"] == "critical"
    assert incident["startedAt"].startswith("2023-11-14T22:13:20")


# -- lifecycle ---------------------------------------------------------------------------------------------


def test_every_resolved_does_not_open_a_new_incident(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", entities=("SERVICE-A",)))
    resolved = problem_body("1", display="P-1", state="RESOLVED", entities=("SERVICE-A",), observed_minute=5)
    dynatrace.send(resolved)
    dynatrace.send(resolved)  # Dynatrace redelivers
    (incident,) = incidents(dynatrace.user)
    assert incident["status"] == "resolved"
    assert incident["resolvedAt"] is not None
    assert kinds(detail(dynatrace.user, incident["id"])) == ["opened", "problem_state_changed", "resolved"]


def test_incident_resolves_when_all_its_problems_have_ended(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", root_cause="HOST-1"))
    dynatrace.send(problem_body("2", display="P-2", minute=1, root_cause="HOST-1"))
    dynatrace.send(
        problem_body("1", display="P-1", state="RESOLVED", root_cause="HOST-1", observed_minute=10)
    )
    (incident,) = incidents(dynatrace.user)
    assert incident["status"] == "open"
    assert incident["openProblemCount"] == 1
    dynatrace.send(problem_body("2", display="P-2", state="MERGED", minute=1, observed_minute=11))
    (incident,) = incidents(dynatrace.user)
    assert incident["status"] == "resolved"
    assert incident["openProblemCount"] == 0


def test_resolved_incident_takes_no_new_problems(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", root_cause="HOST-1"))
    dynatrace.send(problem_body("1", display="P-1", state="RESOLVED", root_cause="HOST-1", observed_minute=3))
    dynatrace.send(problem_body("2", display="P-2", minute=5, root_cause="HOST-1"))
    found = incidents(dynatrace.user)
    assert sorted(item["status"] for item in found) == ["open", "resolved"]
    assert all(item["problemCount"] == 1 for item in found)


def test_incident_reopens_when_one_of_its_problems_reopens(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", entities=("SERVICE-A",)))
    dynatrace.send(
        problem_body("1", display="P-1", state="RESOLVED", entities=("SERVICE-A",), observed_minute=5)
    )
    dynatrace.send(problem_body("1", display="P-1", entities=("SERVICE-A",), observed_minute=9))
    (incident,) = incidents(dynatrace.user)
    assert incident["status"] == "open"
    assert incident["resolvedAt"] is None
    assert kinds(detail(dynatrace.user, incident["id"]))[-1] == "reopened"


def test_a_late_open_after_resolved_does_not_reopen_the_incident(dynatrace):
    dynatrace.send(
        problem_body("1", display="P-1", state="RESOLVED", entities=("SERVICE-A",), observed_minute=5)
    )
    dynatrace.send(problem_body("1", display="P-1", entities=("SERVICE-A",), observed_minute=1))
    (incident,) = incidents(dynatrace.user)
    assert incident["status"] == "resolved"


def test_test_notifications_never_make_an_incident(dynatrace):
    body = problem_body("999", display="999", entities=("SERVICE-A",))
    body["ProblemTitle"] = "Dynatrace problem notification test run"
    body["ProblemDetailsJSONv2"] = {}
    body.pop("ProblemDetailsJSONv2")
    answer = dynatrace.send(body)
    assert answer["outcome"] == "test"
    assert incidents(dynatrace.user) == []


# -- manual actions ---------------------------------------------------------------------------------------


def test_manual_resolve_and_reopen_are_recorded_and_guard_new_problems(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", root_cause="HOST-1"))
    (incident,) = incidents(dynatrace.user)
    resolved = dynatrace.user.client.post(f"/incidents/{incident['id']}/resolve")
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    dynatrace.send(problem_body("2", display="P-2", minute=1, root_cause="HOST-1"))
    assert len(incidents(dynatrace.user)) == 2  # the resolved incident did not take P-2

    reopened = dynatrace.user.client.post(f"/incidents/{incident['id']}/reopen").json()
    assert reopened["status"] == "open"
    assert [(e["kind"], e["actor"]) for e in reopened["timeline"]][-2:] == [
        ("resolved", "user"),
        ("reopened", "user"),
    ]
    # P-3 started with P-1: the reopened incident takes it.
    dynatrace.send(problem_body("3", display="P-3", minute=0, root_cause="HOST-1"))
    assert detail(dynatrace.user, incident["id"])["problemCount"] == 2


def test_merge_moves_every_problem_and_leaves_a_pointer(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", entities=("SERVICE-A",)))
    dynatrace.send(problem_body("2", display="P-2", entities=("SERVICE-B",)))
    second, first = incidents(dynatrace.user)  # newest start first; same start, higher id first
    merged = dynatrace.user.client.post(
        f"/incidents/{first['id']}/merge", json={"sourceIncidentId": second["id"]}
    )
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert body["problemCount"] == 2
    assert {p["displayId"] for p in body["problems"]} == {"P-1", "P-2"}
    assert "merged" in kinds(body)
    source = detail(dynatrace.user, second["id"])
    assert source["mergedIntoId"] == first["id"]
    assert source["problems"] == []
    assert kinds(source)[-1] == "merged_into"
    assert [item["id"] for item in incidents(dynatrace.user)] == [first["id"]]
    alerts = dynatrace.user.client.get("/dynatrace/alerts").json()["alerts"]
    assert {alert["incidentId"] for alert in alerts} == {first["id"]}

    again = dynatrace.user.client.post(
        f"/incidents/{first['id']}/merge", json={"sourceIncidentId": second["id"]}
    )
    assert again.status_code == 409
    itself = dynatrace.user.client.post(
        f"/incidents/{first['id']}/merge", json={"sourceIncidentId": first["id"]}
    )
    assert itself.status_code == 422
    missing = dynatrace.user.client.post(f"/incidents/{first['id']}/merge", json={"sourceIncidentId": 999999})
    assert missing.status_code == 404
    bad = dynatrace.user.client.post(f"/incidents/{first['id']}/merge", json={"source": 1})
    assert bad.status_code == 422


def test_move_a_problem_to_a_new_incident_and_back(dynatrace):
    dynatrace.send(problem_body("1", display="P-1", root_cause="HOST-1"))
    moved = dynatrace.send(problem_body("2", display="P-2", minute=1, root_cause="HOST-1"))
    (original,) = incidents(dynatrace.user)
    response = dynatrace.user.client.post(
        f"/incidents/{original['id']}/problems/{moved['alertId']}/move", json={"targetIncidentId": None}
    )
    assert response.status_code == 200, response.text
    fresh = response.json()
    assert fresh["id"] != original["id"]
    assert [(p["displayId"], p["strategy"]) for p in fresh["problems"]] == [("P-2", "manual")]
    assert detail(dynatrace.user, original["id"])["problemCount"] == 1
    assert "problem_moved_out" in kinds(detail(dynatrace.user, original["id"]))

    back = dynatrace.user.client.post(
        f"/incidents/{fresh['id']}/problems/{moved['alertId']}/move",
        json={"targetIncidentId": original["id"]},
    )
    assert back.status_code == 200
    assert back.json()["id"] == original["id"]
    assert back.json()["problemCount"] == 2
    emptied = detail(dynatrace.user, fresh["id"])
    assert emptied["status"] == "resolved"
    assert emptied["problemCount"] == 0


def test_moving_a_problem_that_is_not_in_the_incident_is_404(dynatrace):
    sent = dynatrace.send(problem_body("1", display="P-1", entities=("SERVICE-A",)))
    dynatrace.send(problem_body("2", display="P-2", entities=("SERVICE-B",)))
    other = next(item for item in incidents(dynatrace.user) if item["title"] and item["problemCount"] == 1)
    owner = dynatrace.user.client.get(f"/dynatrace/alerts/{sent['alertId']}").json()["incidentId"]
    wrong = other["id"] if other["id"] != owner else incidents(dynatrace.user)[1]["id"]
    response = dynatrace.user.client.post(f"/incidents/{wrong}/problems/{sent['alertId']}/move", json={})
    assert response.status_code == 404
    assert "is not in incident" in response.json()["error"]["message"]


# -- listing -----------------------------------------------------------------------------------------------


def test_list_filters_and_pages(dynatrace):
    dynatrace.send(
        problem_body(
            "1", display="P-1", title="Disk full", entities=("HOST-A",), severity="RESOURCE_CONTENTION"
        )
    )
    dynatrace.send(
        problem_body(
            "2",
            display="P-2",
            minute=30,
            title="Checkout down",
            entities=("SERVICE-B",),
            severity="AVAILABILITY",
        )
    )
    dynatrace.send(problem_body("3", display="P-3", minute=60, title="Slow search", entities=("SERVICE-C",)))
    dynatrace.send(
        problem_body(
            "3",
            display="P-3",
            minute=60,
            title="Slow search",
            state="RESOLVED",
            entities=("SERVICE-C",),
            observed_minute=70,
        )
    )
    user = dynatrace.user
    assert [i["title"] for i in incidents(user)] == ["Slow search", "Checkout down", "Disk full"]
    assert [i["title"] for i in incidents(user, status="resolved")] == ["Slow search"]
    assert [i["title"] for i in incidents(user, priority="critical")] == ["Checkout down"]
    assert [i["title"] for i in incidents(user, q="CHECKOUT")] == ["Checkout down"]
    assert [i["title"] for i in incidents(user, q="p-1")] == ["Disk full"]
    assert [i["title"] for i in incidents(user, since="2023-11-14T22:40:00Z")] == [
        "Slow search",
        "Checkout down",
    ]
    assert [i["title"] for i in incidents(user, until="2023-11-14T22:40:00")] == ["Disk full"]
    page = user.client.get("/incidents", params={"limit": 1, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    assert [i["title"] for i in page["incidents"]] == ["Checkout down"]
    for bad in ({"status": "closed"}, {"priority": "urgent"}, {"limit": 0}, {"since": "yesterday"}):
        response = user.client.get("/incidents", params=bad)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_input"


def test_unknown_incident_is_a_json_404(account):
    response = account.client.get("/incidents/424242")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert account.client.post("/incidents/424242/resolve").status_code == 404


# -- correlation settings ---------------------------------------------------------------------------------


def test_correlation_settings_default_then_change_per_user(make_account):
    alice = make_account("alice@example.com")
    bob = make_account("bob@example.com")
    defaults = alice.client.get("/incidents/correlation-settings").json()
    assert defaults == {
        "windowMinutes": 60,
        "threshold": 0.5,
        "maxHops": 2,
        "signals": {
            "rootCause": True,
            "entities": True,
            "topology": True,
            "tags": True,
            "managementZones": True,
            "title": True,
            "time": True,
        },
    }
    changed = alice.client.put(
        "/incidents/correlation-settings", json={"threshold": 0.8, "signals": {"tags": False}}
    )
    assert changed.status_code == 200
    assert changed.json()["threshold"] == 0.8
    assert changed.json()["signals"]["tags"] is False
    assert changed.json()["signals"]["rootCause"] is True
    assert alice.client.get("/incidents/correlation-settings").json() == changed.json()
    assert bob.client.get("/incidents/correlation-settings").json() == defaults


@pytest.mark.parametrize(
    "body",
    [
        {"threshold": 1.5},
        {"threshold": 0},
        {"windowMinutes": 0},
        {"maxHops": 9},
        {"signals": {"gravity": True}},
        {"signals": {"tags": "no"}},
        {"window": 30},
    ],
)
def test_correlation_settings_refuse_bad_values(account, body):
    response = account.client.put("/incidents/correlation-settings", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


def test_settings_decide_whether_problems_group(dynatrace):
    dynatrace.user.client.put("/incidents/correlation-settings", json={"signals": {"rootCause": False}})
    dynatrace.send(problem_body("1", display="P-1", root_cause="HOST-1"))
    dynatrace.send(problem_body("2", display="P-2", minute=1, root_cause="HOST-1"))
    assert len(incidents(dynatrace.user)) == 2
    dynatrace.user.client.put("/incidents/correlation-settings", json={"signals": {"rootCause": True}})
    dynatrace.send(problem_body("3", display="P-3", minute=2, root_cause="HOST-1"))
    # P-3 relates to both open incidents, so they become one.
    (incident,) = incidents(dynatrace.user)
    assert incident["problemCount"] == 3


def test_a_narrow_window_keeps_problems_apart(dynatrace):
    dynatrace.user.client.put("/incidents/correlation-settings", json={"windowMinutes": 5})
    dynatrace.send(problem_body("1", display="P-1", root_cause="HOST-1"))
    dynatrace.send(problem_body("2", display="P-2", minute=20, root_cause="HOST-1"))
    assert len(incidents(dynatrace.user)) == 2


# -- isolation ---------------------------------------------------------------------------------------------


def test_users_see_and_change_only_their_own_incidents(app, database, make_account, client):
    alice = make_account("alice@example.com")
    bob = make_account("bob@example.com")
    alice_hook = wire_connection(database, app.state.secret_box, alice.workspace_id)
    bob_hook = wire_connection(database, app.state.secret_box, bob.workspace_id)
    client.post(alice_hook.url, json=problem_body("1", display="P-1", root_cause="HOST-SHARED"))
    client.post(bob_hook.url, json=problem_body("2", display="P-2", root_cause="HOST-SHARED"))
    (alices,) = incidents(alice)
    (bobs,) = incidents(bob)
    assert alices["id"] != bobs["id"]
    assert alices["problemCount"] == bobs["problemCount"] == 1  # same entity, different users: never joined
    assert bob.client.get(f"/incidents/{alices['id']}").status_code == 404
    assert bob.client.post(f"/incidents/{alices['id']}/resolve").status_code == 404
    stolen = bob.client.post(f"/incidents/{bobs['id']}/merge", json={"sourceIncidentId": alices["id"]})
    assert stolen.status_code == 404
    alice_alert = alice.client.get("/dynatrace/alerts").json()["alerts"][0]["id"]
    moved = bob.client.post(f"/incidents/{bobs['id']}/problems/{alice_alert}/move", json={})
    assert moved.status_code == 404
    assert detail(alice, alices["id"])["status"] == "open"
    assert detail(alice, alices["id"])["problemCount"] == 1


def test_incident_routes_need_a_user(client):
    assert client.get("/incidents").status_code == 401
    assert client.get("/incidents/correlation-settings").status_code == 401
