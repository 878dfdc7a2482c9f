"""Every API route, called as each kind of caller, against one table of expected statuses.

The routes come from the application's own OpenAPI document, which FastAPI builds from its router: a
new route without a row in ``EXPECTED`` fails the test until someone decides who may call it.

Callers, in the table's column order: the workspace's owner, a responder, a viewer, an outsider (the
owner of another workspace, with its key), a revoked key, and no key at all. Each route is called by
them in the reverse order (no key first, the owner last), so a call that changes something (a merge,
a removal) is made once the others have been refused; routes are called in the document's order, the
removals last and the disconnect the very last."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.notifications import service as notifications_service
from borealis.simulation.store import ALL_SCOPES
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Role
from tests.support.builders import problem_body
from tests.support.teams import Team, add_key, running_team
from tests.support.waiting import wait_until
from tests.support.webhooks import followed_up

COLUMNS = ("owner", "responder", "viewer", "outsider", "revoked", "none")
# A destination on loopback where nothing listens: creating and testing it need no receiver.
CLOSED_PORT = "http://127.0.0.1:9/hook"
SET_UP = Actor(user_id=None, email="test set-up", via="test")

# (method, path) -> statuses for COLUMNS, in that order.
EXPECTED: dict[tuple[str, str], str] = {
    # Settings and the connection: owners; the outsider acts in (and is owner of) their own workspace.
    ("GET", "/dynatrace/rca-settings"): "200 200 200 200 401 401",
    ("PUT", "/dynatrace/rca-settings"): "200 403 403 200 401 401",
    ("POST", "/dynatrace/connect"): "200 403 403 200 401 401",
    ("GET", "/dynatrace/status"): "200 200 200 200 401 401",
    ("GET", "/dynatrace/webhook-url"): "200 403 403 200 401 401",
    ("POST", "/dynatrace/webhook-url/rotate"): "200 403 403 200 401 401",
    ("GET", "/dynatrace/alerting-profiles"): "200 403 403 200 401 401",
    ("POST", "/dynatrace/webhook/install"): "200 403 403 200 401 401",
    ("GET", "/incidents/correlation-settings"): "200 200 200 200 401 401",
    ("PUT", "/incidents/correlation-settings"): "200 403 403 200 401 401",
    ("GET", "/dynatrace/write-back"): "200 200 200 200 401 401",
    ("PUT", "/dynatrace/write-back"): "200 403 403 200 401 401",
    # Reading: every member; another workspace's objects are as unknown as missing ones.
    ("GET", "/dynatrace/alerts"): "200 200 200 200 401 401",
    ("GET", "/dynatrace/alerts/{alert_id}"): "200 200 200 404 401 401",
    ("GET", "/dynatrace/alerts/{alert_id}/enrichment"): "200 200 200 404 401 401",
    ("GET", "/dynatrace/rejected-deliveries"): "200 200 200 200 401 401",
    ("GET", "/incidents"): "200 200 200 200 401 401",
    ("GET", "/incidents/{incident_id}"): "200 200 200 404 401 401",
    ("GET", "/incidents/{incident_id}/notes"): "200 200 200 404 401 401",
    ("GET", "/incidents/{incident_id}/rca"): "200 200 200 404 401 401",
    ("GET", "/incidents/{incident_id}/postmortem"): "200 200 200 404 401 401",
    ("GET", "/jobs"): "200 200 200 200 401 401",
    ("GET", "/insights"): "200 200 200 200 401 401",
    # Notification destinations: members list them; owners add, test, read the log and remove.
    ("GET", "/destinations"): "200 200 200 200 401 401",
    ("POST", "/destinations"): "201 403 403 201 401 401",
    ("GET", "/destinations/{destination_id}/deliveries"): "200 403 403 404 401 401",
    ("POST", "/destinations/{destination_id}/test"): "200 403 403 404 401 401",
    ("DELETE", "/destinations/{destination_id}"): "204 403 403 404 401 401",
    ("GET", "/jobs/{job_id}"): "200 200 200 404 401 401",
    # Acting on incidents: responders and owners.
    ("POST", "/incidents/{incident_id}/resolve"): "200 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/reopen"): "200 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/merge"): "200 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/problems/{alert_id}/move"): "200 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/acknowledge"): "200 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/assign"): "200 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/notes"): "201 201 403 404 401 401",
    # Only its author edits a note, whatever their role.
    ("PATCH", "/incidents/{incident_id}/notes/{note_id}"): "403 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/rca"): "202 202 403 404 401 401",
    ("POST", "/incidents/{incident_id}/rca/feedback"): "200 200 403 404 401 401",
    ("POST", "/incidents/{incident_id}/close-problems"): "202 202 403 404 401 401",
    ("POST", "/dynatrace/sync"): "200 200 403 200 401 401",
    # Workspaces: anyone signed in makes their own; members, roles and the audit log are the owners'.
    ("GET", "/workspaces"): "200 200 200 200 401 401",
    ("POST", "/workspaces"): "201 201 201 201 401 401",
    ("GET", "/workspaces/{workspace_id}/members"): "200 200 200 404 401 401",
    ("POST", "/workspaces/{workspace_id}/members"): "201 403 403 404 401 401",
    ("PATCH", "/workspaces/{workspace_id}/members/{user_id}"): "200 403 403 404 401 401",
    ("DELETE", "/workspaces/{workspace_id}/members/{user_id}"): "204 403 403 404 401 401",
    ("GET", "/workspaces/{workspace_id}/audit"): "200 403 403 404 401 401",
    ("DELETE", "/dynatrace/disconnect"): "200 403 403 200 401 401",
}

# Routes with an authentication of their own, or none by design.
NOT_MEMBER_ROUTES = {
    ("POST", "/dynatrace/webhook/{workspace_id}"): "the webhook secret authenticates it",
    ("GET", "/metrics"): "public, for the Prometheus scraper",
    ("GET", "/healthz"): "public, for the load balancer",
    ("GET", "/readyz"): "public, for the load balancer",
}


@dataclass
class World:
    team: Team
    revoked: httpx.Client
    anonymous: httpx.Client
    incident_id: int
    alert_ids: dict[str, int]
    merge_sources: dict[str, int]
    note_id: int
    job_id: int
    extra_members: dict[str, str]
    connect_body: dict[str, str]
    destination_id: str

    def client(self, caller: str) -> httpx.Client:
        if caller == "revoked":
            return self.revoked
        if caller == "none":
            return self.anonymous
        return getattr(self.team, caller).client


def _send(client: httpx.Client, problem: dict[str, Any], wired_url: str) -> None:
    assert client.post(wired_url, json=problem).status_code == 200


@pytest.fixture
def world(app, database, live_server, fake_dynatrace, background_worker, client) -> Iterator[World]:
    background_worker()
    with running_team(database, live_server.url) as team:
        token = fake_dynatrace.add_token(list(ALL_SCOPES))
        connect_body = {"environmentUrl": fake_dynatrace.environment_url, "apiToken": token}
        assert team.owner.client.post("/dynatrace/connect", json=connect_body).status_code == 200
        webhook = team.owner.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
        path = webhook.removeprefix(live_server.url)
        # One incident of three related problems (one to move out per caller that may), and one incident
        # of its own per caller that may merge one in.
        for number, service in enumerate(("SERVICE-A", "SERVICE-A", "SERVICE-A")):
            _send(client, problem_body(str(number), display=f"P-{number}", entities=(service,)), path)
        for number, caller in enumerate(("responder", "owner"), start=10):
            body = problem_body(
                str(number), display=f"P-{number}", entities=(f"SERVICE-{caller}",), minute=300 * number
            )
            _send(client, body, path)
        followed_up(database)
        incidents = team.viewer.client.get("/incidents", params={"limit": 500}).json()["incidents"]
        [main] = [item for item in incidents if item["problemCount"] == 3]
        others = sorted(item["id"] for item in incidents if item["id"] != main["id"])
        alerts = [
            problem["alertId"]
            for problem in team.viewer.client.get(f"/incidents/{main['id']}").json()["problems"]
        ]
        note = team.responder.client.post(f"/incidents/{main['id']}/notes", json={"text": "on it"}).json()
        assert team.responder.client.post(f"/incidents/{main['id']}/rca").status_code == 202
        wait_until(lambda: team.viewer.client.get(f"/incidents/{main['id']}/rca").json()["status"] == "done")
        jobs = team.viewer.client.get("/jobs").json()["jobs"]
        revoked = add_key(
            database, live_server.url, email=team.responder.email, workspace_id=team.workspace_id
        )
        extra = {}
        with database.session(write=True) as session:
            auth_service.revoke_api_key(
                db_session=session,
                workspace_id=team.workspace_id,
                key_id_or_prefix=revoked.api_key[:10],
                actor=SET_UP,
            )
            for purpose in ("role", "removal", "invite"):
                user, _ = workspaces_service.create_user(db_session=session, email=f"{purpose}@example.com")
                if purpose != "invite":
                    workspaces_service.add_member(
                        db_session=session,
                        workspace_id=team.workspace_id,
                        username=user.email,
                        role=Role.VIEWER,
                        actor=SET_UP,
                    )
                extra[purpose] = user.id
            destination, _ = notifications_service.create(
                db_session=session,
                workspace_id=team.workspace_id,
                kind="slack",
                name="alerts",
                url=CLOSED_PORT,
                events=["incident.opened"],
                filters={},
                settings=app.state.settings,
                secret_box=app.state.secret_box,
                actor=SET_UP,
            )
            destination_id = destination.id
            session.commit()
        anonymous = httpx.Client(base_url=live_server.url, timeout=30)
        try:
            yield World(
                team=team,
                revoked=revoked.client,
                anonymous=anonymous,
                incident_id=main["id"],
                alert_ids={"responder": alerts[1], "owner": alerts[2]},
                merge_sources={"responder": others[0], "owner": others[1]},
                note_id=note["id"],
                job_id=jobs[0]["id"],
                extra_members=extra,
                connect_body=connect_body,
                destination_id=destination_id,
            )
        finally:
            anonymous.close()
            revoked.client.close()


Request = Callable[[World, str], dict[str, Any]]


def _path_values(world: World, caller: str) -> dict[str, Any]:
    return {
        "incident_id": world.incident_id,
        "alert_id": world.alert_ids.get(caller, world.alert_ids["owner"]),
        "note_id": world.note_id,
        "job_id": world.job_id,
        "workspace_id": world.team.workspace_id,
        "destination_id": world.destination_id,
    }


# What each route is sent besides its path: JSON bodies, query strings, and path values of its own.
REQUESTS: dict[tuple[str, str], Request] = {
    ("PUT", "/dynatrace/rca-settings"): lambda world, caller: {"json": {"rcaEnabled": True}},
    ("POST", "/dynatrace/connect"): lambda world, caller: {"json": world.connect_body},
    ("POST", "/dynatrace/webhook/install"): lambda world, caller: {"json": {}},
    ("PUT", "/incidents/correlation-settings"): lambda world, caller: {"json": {"windowMinutes": 45}},
    ("PUT", "/dynatrace/write-back"): lambda world, caller: {"json": {"enabled": True}},
    ("POST", "/incidents/{incident_id}/rca/feedback"): lambda world, caller: {"json": {"mark": "right"}},
    ("POST", "/incidents/{incident_id}/merge"): lambda world, caller: {
        "json": {"sourceIncidentId": world.merge_sources.get(caller, world.merge_sources["owner"])}
    },
    ("POST", "/incidents/{incident_id}/problems/{alert_id}/move"): lambda world, caller: {
        "json": {"targetIncidentId": None}
    },
    ("POST", "/incidents/{incident_id}/assign"): lambda world, caller: {
        "json": {"userId": world.team.viewer.user_id}
    },
    ("POST", "/incidents/{incident_id}/notes"): lambda world, caller: {
        "json": {"text": "checking the database"}
    },
    ("PATCH", "/incidents/{incident_id}/notes/{note_id}"): lambda world, caller: {
        "json": {"text": "on it, still"}
    },
    ("POST", "/workspaces"): lambda world, caller: {"json": {"name": f"{caller}'s team"}},
    ("POST", "/destinations"): lambda world, caller: {
        "json": {"kind": "webhook", "url": CLOSED_PORT, "events": ["incident.opened"]}
    },
    ("POST", "/workspaces/{workspace_id}/members"): lambda world, caller: {
        "json": {"username": "invite@example.com", "role": "viewer"}
    },
    ("PATCH", "/workspaces/{workspace_id}/members/{user_id}"): lambda world, caller: {
        "path": {"user_id": world.extra_members["role"]},
        "json": {"role": "responder"},
    },
    ("DELETE", "/workspaces/{workspace_id}/members/{user_id}"): lambda world, caller: {
        "path": {"user_id": world.extra_members["removal"]}
    },
}


def _routes(app) -> list[tuple[str, str]]:
    return [
        (method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations
    ]


def test_every_route_answers_each_caller_as_the_table_says(app, world):
    routes = [route for route in _routes(app) if route not in NOT_MEMBER_ROUTES]
    observed: dict[tuple[str, str], str] = {}
    # Removals last (the disconnect the very last): they take away what other routes act on.
    ordered = sorted(
        routes, key=lambda route: (route[0] == "DELETE", route == ("DELETE", "/dynatrace/disconnect"))
    )
    for method, path in ordered:
        statuses = {}
        for caller in reversed(COLUMNS):
            extra = REQUESTS.get((method, path), lambda world, caller: {})(world, caller)
            values = _path_values(world, caller) | extra.get("path", {})
            response = world.client(caller).request(
                method, path.format(**values), json=extra.get("json"), params=extra.get("params")
            )
            statuses[caller] = str(response.status_code)
        observed[(method, path)] = " ".join(statuses[caller] for caller in COLUMNS)
    assert set(observed) == set(EXPECTED), "a route without a row in EXPECTED, or a row without a route"
    wrong = {
        route: (observed[route], EXPECTED[route]) for route in EXPECTED if observed[route] != EXPECTED[route]
    }
    assert wrong == {}, f"(observed, expected) for {' '.join(COLUMNS)}"
