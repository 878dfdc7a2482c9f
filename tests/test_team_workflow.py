"""A team in one workspace: members and roles, the incident workflow (acknowledge, assign, notes) and
the audit log, through the live server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from borealis.audit import service as audit
from borealis.audit.models import AuditEntry
from borealis.auth import service as auth_service
from borealis.auth.models import User
from borealis.db import utcnow
from borealis.incidents.models import MAX_NOTE_CHARS
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Membership
from tests.support.builders import problem_body
from tests.support.forms import PASSWORD, log_in
from tests.support.teams import Team, running_team
from tests.support.webhooks import Wired, wire_connection


@pytest.fixture
def team(database, live_server) -> Iterator[Team]:
    with running_team(database, live_server.url) as team:
        yield team


@pytest.fixture
def wired(app, database, team) -> Wired:
    return wire_connection(database, app.state.secret_box, team.workspace_id)


@pytest.fixture
def incident_id(team, client, wired) -> int:
    """One incident in the team's workspace, from a notification through its webhook."""
    assert (
        client.post(wired.url, json=problem_body("1", display="P-1", entities=("SERVICE-A",))).status_code
        == 200
    )
    [incident] = ok(team.viewer.client.get("/incidents"))["incidents"]
    return incident["id"]


def ok(response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def refused(response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error["message"], error["message"]
    return error


# -- workspaces and members --------------------------------------------------------------------------------


def test_creating_a_workspace_makes_the_caller_its_owner(team):
    created = ok(team.viewer.client.post("/workspaces", json={"name": "  Payments   team "}), 201)
    assert created["name"] == "Payments team"
    assert created["role"] == "owner"
    listed = ok(team.viewer.client.get("/workspaces"))["items"]
    by_id = {item["id"]: item for item in listed}
    assert by_id[created["id"]]["role"] == "owner"
    assert by_id[team.workspace_id] == {
        "id": team.workspace_id,
        "name": "On call",
        "role": "viewer",
        "current": True,
    }
    assert len(listed) == 3  # personal, the team's, the new one
    refused(team.viewer.client.post("/workspaces", json={"name": " "}), 422, "name")


def test_members_are_listed_with_their_roles_owners_first(team):
    members = ok(team.viewer.client.get(f"/workspaces/{team.workspace_id}/members"))["items"]
    assert [(member["username"], member["role"]) for member in members] == [
        ("owner@example.com", "owner"),
        ("responder@example.com", "responder"),
        ("viewer@example.com", "viewer"),
    ]
    # Another workspace's members are as unknown as a missing workspace.
    refused(team.outsider.client.get(f"/workspaces/{team.workspace_id}/members"), 404, "does not exist")


def test_an_owner_adds_members_by_username_and_is_told_what_is_wrong(team, make_account):
    make_account("newcomer@example.com")
    path = f"/workspaces/{team.workspace_id}/members"
    added = ok(
        team.owner.client.post(path, json={"username": "Newcomer@Example.com", "role": "responder"}), 201
    )
    assert (added["username"], added["role"]) == ("newcomer@example.com", "responder")
    refused(team.owner.client.post(path, json={"username": "newcomer@example.com"}), 409, "already a member")
    refused(
        team.owner.client.post(path, json={"username": "ghost@example.com"}), 422, "borealis users create"
    )
    refused(team.owner.client.post(path, json={"username": "x@example.com", "role": "admin"}), 422)
    refused(team.responder.client.post(path, json={"username": "newcomer@example.com"}), 403, "owner")


def test_a_demoted_or_removed_member_loses_the_power_of_their_keys_at_once(team, incident_id):
    members = f"/workspaces/{team.workspace_id}/members"
    ok(team.responder.client.post(f"/incidents/{incident_id}/resolve"))
    ok(team.owner.client.patch(f"{members}/{team.responder.user_id}", json={"role": "viewer"}))
    refused(team.responder.client.post(f"/incidents/{incident_id}/reopen"), 403, "responder", "viewer")
    ok(team.responder.client.get(f"/incidents/{incident_id}"))
    ok(team.owner.client.delete(f"{members}/{team.responder.user_id}"), 204)
    refused(team.responder.client.get("/incidents"), 401, "no longer a member")


def test_a_workspace_keeps_at_least_one_owner(team):
    members = f"/workspaces/{team.workspace_id}/members"
    refused(
        team.owner.client.patch(f"{members}/{team.owner.user_id}", json={"role": "responder"}),
        409,
        "last owner",
    )
    refused(team.owner.client.delete(f"{members}/{team.owner.user_id}"), 409, "last owner")
    ok(team.owner.client.patch(f"{members}/{team.viewer.user_id}", json={"role": "owner"}))
    # With a second owner the first may step down, and the other owner is the last one then.
    ok(team.owner.client.patch(f"{members}/{team.owner.user_id}", json={"role": "responder"}))
    refused(team.viewer.client.delete(f"{members}/{team.viewer.user_id}"), 409, "last owner")
    refused(team.viewer.client.delete(f"{members}/not-a-member"), 404, "no member")


# -- acknowledge, assign, notes ------------------------------------------------------------------------------


def test_acknowledging_is_idempotent_and_names_who_was_first(team, incident_id):
    path = f"/incidents/{incident_id}/acknowledge"
    first = ok(team.responder.client.post(path))
    assert first["first"] is True
    assert first["acknowledgedBy"] == {"userId": team.responder.user_id, "username": "responder@example.com"}
    again = ok(team.owner.client.post(path))
    assert again["first"] is False
    assert again["acknowledgedBy"]["username"] == "responder@example.com"
    assert again["acknowledgedAt"] == first["acknowledgedAt"]
    refused(team.viewer.client.post(path), 403)
    incident = ok(team.viewer.client.get(f"/incidents/{incident_id}"))
    acknowledged = [event for event in incident["timeline"] if event["kind"] == "acknowledged"]
    assert len(acknowledged) == 1
    assert acknowledged[0]["by"]["username"] == "responder@example.com"
    assert incident["acknowledgedBy"]["username"] == "responder@example.com"
    assert incident["timeToAcknowledgeSeconds"] >= 0


def test_time_to_resolve_is_stored_on_resolution_and_cleared_on_reopen(team, incident_id):
    resolved = ok(team.responder.client.post(f"/incidents/{incident_id}/resolve"))
    assert resolved["timeToResolveSeconds"] >= 0
    assert resolved["timeline"][-1]["by"]["username"] == "responder@example.com"
    reopened = ok(team.responder.client.post(f"/incidents/{incident_id}/reopen"))
    assert reopened["timeToResolveSeconds"] is None


def test_an_incident_is_assigned_to_members_only(team, incident_id):
    path = f"/incidents/{incident_id}/assign"
    assigned = ok(team.responder.client.post(path, json={"userId": team.viewer.user_id}))
    assert assigned["assignee"] == {"userId": team.viewer.user_id, "username": "viewer@example.com"}
    assert assigned["timeline"][-1]["kind"] == "assigned"
    assert assigned["timeline"][-1]["by"]["username"] == "responder@example.com"
    error = refused(
        team.responder.client.post(path, json={"userId": team.outsider.user_id}), 422, "not a member"
    )
    assert error["details"]["field"] == "userId"
    refused(team.responder.client.post(path, json={}), 422)
    unassigned = ok(team.responder.client.post(path, json={"userId": None}))
    assert unassigned["assignee"] is None
    assert unassigned["timeline"][-1]["kind"] == "unassigned"


def test_lists_filter_by_assignee_and_acknowledgement(team, client, wired, incident_id):
    unrelated = problem_body(
        "2", display="P-2", entities=("SERVICE-UNRELATED",), title="Disk full", minute=400
    )
    assert client.post(wired.url, json=unrelated).status_code == 200
    ids = {item["id"] for item in ok(team.viewer.client.get("/incidents"))["incidents"]}
    assert len(ids) == 2
    other = (ids - {incident_id}).pop()
    ok(team.responder.client.post(f"/incidents/{incident_id}/assign", json={"userId": team.viewer.user_id}))
    ok(team.responder.client.post(f"/incidents/{other}/acknowledge"))

    def listed(member, **params) -> set[int]:
        return {item["id"] for item in ok(member.client.get("/incidents", params=params))["incidents"]}

    assert listed(team.viewer, assignee="me") == {incident_id}
    assert listed(team.responder, assignee="me") == set()
    assert listed(team.owner, assignee=team.viewer.user_id) == {incident_id}
    assert listed(team.owner, assignee="none") == {other}
    assert listed(team.owner, acknowledged="true") == {other}
    assert listed(team.owner, acknowledged="false") == {incident_id}


def test_notes_are_markdown_rendered_safely_and_edits_keep_their_history(team, incident_id):
    path = f"/incidents/{incident_id}/notes"
    text = "Rolled back **v2.3**. <script>alert(1)</script> [runbook](https://wiki.example/rb) [x](javascript:alert(1))"
    note = ok(team.responder.client.post(path, json={"text": text}), 201)
    assert note["author"]["username"] == "responder@example.com"
    assert "<strong>v2.3</strong>" in note["html"]
    assert "<script>" not in note["html"]
    assert "&lt;script&gt;" in note["html"]
    assert 'href="https://wiki.example/rb"' in note["html"]
    assert 'href="javascript:' not in note["html"]
    edited = ok(
        team.responder.client.patch(f"{path}/{note['id']}", json={"text": "Rolled back v2.3; watching."})
    )
    assert edited["text"] == "Rolled back v2.3; watching."
    assert [entry["text"] for entry in edited["history"]] == [text]
    refused(team.owner.client.patch(f"{path}/{note['id']}", json={"text": "mine now"}), 403, "author")
    refused(team.viewer.client.post(path, json={"text": "hello"}), 403)
    refused(team.responder.client.post(path, json={"text": "x" * (MAX_NOTE_CHARS + 1)}), 422, "10,000")
    refused(team.responder.client.post(path, json={"text": "   "}), 422, "text")
    refused(team.responder.client.patch(f"{path}/999999", json={"text": "?"}), 404, "no note")
    [listed] = ok(team.viewer.client.get(path))["notes"]
    assert listed["id"] == note["id"]
    assert len(listed["history"]) == 1
    kinds = [event["kind"] for event in ok(team.viewer.client.get(f"/incidents/{incident_id}"))["timeline"]]
    assert kinds[-2:] == ["note_added", "note_edited"]


# -- the audit log -----------------------------------------------------------------------------------------------


def test_the_audit_log_records_member_changes_for_owners_only_and_pages_newest_first(team, make_account):
    make_account("newcomer@example.com")
    members = f"/workspaces/{team.workspace_id}/members"
    added = ok(
        team.owner.client.post(members, json={"username": "newcomer@example.com", "role": "viewer"}), 201
    )
    ok(team.owner.client.patch(f"{members}/{added['userId']}", json={"role": "responder"}))
    ok(team.owner.client.delete(f"{members}/{added['userId']}"), 204)
    audit_path = f"/workspaces/{team.workspace_id}/audit"
    page = ok(team.owner.client.get(audit_path, params={"limit": 2}))
    assert [entry["action"] for entry in page["items"]] == ["member.removed", "member.role_changed"]
    assert page["items"][0]["actor"] == "owner@example.com"
    assert page["items"][0]["via"].startswith("api key brl_")
    assert page["items"][0]["address"] == "127.0.0.1"
    assert page["items"][1]["details"] == {"from": "viewer", "to": "responder"}
    rest = ok(team.owner.client.get(audit_path, params={"before": page["nextBefore"]}))["items"]
    assert rest[0]["action"] == "member.added"
    refused(team.responder.client.get(audit_path), 403, "owner")
    refused(team.outsider.client.get(audit_path), 404)


def test_the_audit_log_names_secret_changes_without_the_secrets(team, fake_dynatrace):
    from borealis.simulation.store import ALL_SCOPES

    token = fake_dynatrace.add_token(list(ALL_SCOPES))
    connect = {"environmentUrl": fake_dynatrace.environment_url, "apiToken": token}
    ok(team.owner.client.post("/dynatrace/connect", json=connect))
    refused(team.responder.client.post("/dynatrace/connect", json=connect), 403, "owner")
    rotated = ok(team.owner.client.post("/dynatrace/webhook-url/rotate"))
    ok(team.owner.client.put("/dynatrace/rca-settings", json={"rcaEnabled": True}))
    ok(team.owner.client.put("/incidents/correlation-settings", json={"windowMinutes": 45}))
    entries = ok(team.owner.client.get(f"/workspaces/{team.workspace_id}/audit"))["items"]
    actions = [entry["action"] for entry in entries]
    for action in (
        "connection.connected",
        "webhook_secret.rotated",
        "settings.rca_changed",
        "settings.correlation_changed",
        "api_key.created",
        "member.added",
        "workspace.created",
    ):
        assert action in actions
    recorded = json.dumps(entries)
    secret = rotated["headers"]["Authorization"].removeprefix("Bearer ")
    for value in (token, secret, team.owner.api_key):
        assert value not in recorded


def test_audit_entries_past_the_retention_are_removed(database, team):
    with database.session(write=True) as session:
        old = audit.page(db_session=session, workspace_id=team.workspace_id, limit=1)[0]
        session.get(AuditEntry, old.id).at = utcnow() - timedelta(days=400)
        session.commit()
        before = len(audit.page(db_session=session, workspace_id=team.workspace_id, limit=500))
        assert audit.prune(db_session=session, before=utcnow() - timedelta(days=365)) == 1
        session.commit()
        after = audit.page(db_session=session, workspace_id=team.workspace_id, limit=500)
    assert len(after) == before - 1
    assert old.id not in {entry.id for entry in after}


def raw_json(client: httpx.Client, method: str, path: str, body: dict[str, str]) -> httpx.Response:
    """The body as JSON text with its escapes as written (a lone surrogate stays one)."""
    content = json.dumps(body).encode()
    return client.request(method, path, content=content, headers={"Content-Type": "application/json"})


def field_of(error: dict[str, Any]) -> str:
    """The field a 422 names: the service's ``field``, or the first of the schema's ``fields``."""
    details = error["details"]
    return details["field"] if "field" in details else details["fields"][0]["field"]


def test_text_no_database_can_keep_and_ids_that_are_not_ids_are_refused_with_the_field(team, incident_id):
    members = f"/workspaces/{team.workspace_id}/members"
    for text in ("held\x00up", "broken \ud800 escape"):
        note = raw_json(team.responder.client, "POST", f"/incidents/{incident_id}/notes", {"text": text})
        assert field_of(refused(note, 422)) == "text"
        named = raw_json(team.owner.client, "POST", "/workspaces", {"name": text})
        assert field_of(refused(named, 422)) == "name"
        invited = raw_json(team.owner.client, "POST", members, {"username": text})
        assert field_of(refused(invited, 422)) == "username"
    refused(team.owner.client.patch(f"{members}/not%00an-id", json={"role": "viewer"}), 422)
    refused(team.owner.client.get("/workspaces/not%00an-id/members"), 422)
    assigned = team.responder.client.post(f"/incidents/{incident_id}/assign", json={"userId": "x\x00y"})
    refused(assigned, 422)


def test_an_account_removed_from_every_workspace_gets_a_personal_one_at_its_next_login(
    database, live_server, team
):
    with database.session(write=True) as session:
        personal = workspaces_service.for_user(db_session=session, user_id=team.viewer.user_id)
        auth_service.set_password(
            db_session=session, user=session.get(User, team.viewer.user_id), password=PASSWORD
        )
        for workspace, _ in personal:
            session.delete(session.get(Membership, (workspace.id, team.viewer.user_id)))
        session.commit()
    refused(team.viewer.client.get("/incidents"), 401, "no longer a member")
    with httpx.Client(base_url=live_server.url, headers={"Accept": "text/html"}) as browser:
        assert log_in(browser, "viewer@example.com", PASSWORD).status_code == 303
        page = browser.get("/members", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "Members of Personal" in page.text
