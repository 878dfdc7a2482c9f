"""The postmortem of a scenario incident, as JSON and as Markdown with every section."""

from __future__ import annotations

from datetime import datetime

import pytest

from borealis.jobs.registry import register_handlers
from borealis.simulation import ALL_SCOPES
from tests.support.builders import webhook_body
from tests.support.jobs import run_pending
from tests.support.rca_scenarios import deployment_breaks_service

SECTIONS = ("## Summary", "## Timeline", "## Impact", "## Root cause", "## Figures", "## Action items")


@pytest.fixture
def incident_id(app, account, fake_dynatrace, client) -> int:
    """A scenario's incident, acknowledged, assigned, noted, analysed and resolved."""
    register_handlers()
    token = fake_dynatrace.add_token(list(ALL_SCOPES))
    connect = {"environmentUrl": fake_dynatrace.environment_url, "apiToken": token}
    assert account.client.post("/dynatrace/connect", json=connect).status_code == 200
    webhook = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    scenario = deployment_breaks_service()
    scenario.load_into(fake_dynatrace)
    alerts = [
        client.post(webhook, json=webhook_body(problem)).json()["alertId"] for problem in scenario.problems
    ]
    [incident] = {account.client.get(f"/dynatrace/alerts/{alert}").json()["incidentId"] for alert in alerts}
    path = f"/incidents/{incident}"
    assert account.client.post(f"{path}/acknowledge").status_code == 200
    assert account.client.post(f"{path}/assign", json={"userId": account.user_id}).status_code == 200
    note = "Rolled back **v2**.\nWatching <b>latency</b>."
    assert account.client.post(f"{path}/notes", json={"text": note}).status_code == 201
    assert account.client.post(f"{path}/rca").status_code == 202
    [outcome] = run_pending(app)
    assert outcome["status"] == "done"
    assert account.client.post(f"{path}/resolve").status_code == 200
    return incident


def test_the_postmortem_holds_every_section_as_json(account, incident_id):
    answer = account.client.get(f"/incidents/{incident_id}/postmortem")
    assert answer.status_code == 200
    body = answer.json()
    kinds = [event["kind"] for event in body["timeline"]]
    for kind in ("opened", "acknowledged", "assigned", "note_added", "rca_done", "resolved"):
        assert kind in kinds
    [note] = [event for event in body["timeline"] if event["kind"] == "note_added"]
    assert note["text"] == "Rolled back **v2**.\nWatching <b>latency</b>."
    assert note["by"]["username"] == "sre@example.com"
    assert body["impact"]["problems"]
    rca = account.client.get(f"/incidents/{incident_id}/rca").json()
    assert body["rootCause"]["verdict"] == rca["verdict"]
    assert body["rootCause"]["evidence"]
    assert body["acknowledgedBy"]["username"] == body["assignee"]["username"] == "sre@example.com"
    figures = body["figures"]
    started = datetime.fromisoformat(body["startedAt"])
    resolved = datetime.fromisoformat(body["resolvedAt"])
    assert figures["durationSeconds"] == pytest.approx((resolved - started).total_seconds())
    assert figures["timeToResolveSeconds"] == pytest.approx((resolved - started).total_seconds())
    assert figures["open"] is False
    assert figures["timeToAcknowledgeSeconds"] <= figures["timeToResolveSeconds"]
    assert body["actionItems"] == []


def test_the_postmortem_renders_in_markdown_by_parameter_or_by_accept(account, incident_id):
    by_parameter = account.client.get(f"/incidents/{incident_id}/postmortem", params={"format": "md"})
    by_accept = account.client.get(
        f"/incidents/{incident_id}/postmortem", headers={"Accept": "text/markdown"}
    )
    for answer in (by_parameter, by_accept):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/markdown")
    text = by_parameter.text
    assert text == by_accept.text
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert f"(incident #{incident_id})" in text
    assert "  > Rolled back **v2**." in text
    assert "Verdict: **" in text
    assert f"/incidents/{incident_id}/rca" in text
    assert "- Time to resolve: " in text
    assert text.rstrip().endswith("- [ ]")
    assert (
        account.client.get(f"/incidents/{incident_id}/postmortem", params={"format": "pdf"}).status_code
        == 422
    )
