"""Text the database cannot hold (an unpaired surrogate escape) is replaced, warned about and stored."""

from __future__ import annotations

import json

from tests.support.webhooks import notification, wire_connection


def test_an_unpaired_surrogate_is_replaced_and_the_update_stored(account, app, database, client):
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    body = notification(title="PLACEHOLDER")
    body["Tags"] = "team:PLACEHOLDER"
    body["ImpactedEntities"] = [
        {"type": "SERVICE", "name": "PLACEHOLDER", "entity": "SERVICE-0000000000000001"}
    ]
    # The escape as a sender may put it: valid JSON, but no text (a lone half of a surrogate pair).
    raw = json.dumps(body).replace("PLACEHOLDER", "x \\ud800 y").encode()
    answer = client.post(wired.url, content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    alert_id = answer.json()["alertId"]
    detail = account.client.get(f"/dynatrace/alerts/{alert_id}?include=payload")
    assert detail.status_code == 200, detail.text
    alert = detail.json()
    assert alert["title"] == "x \ufffd y"
    (delivery,) = alert["notifications"]
    assert any("surrogate" in warning for warning in delivery["warnings"])
    assert "\ufffd" in str(delivery["payload"])
    listed = account.client.get("/dynatrace/alerts?include=payload")
    assert listed.status_code == 200, listed.text
    # Sent again, the same body is the same delivery: counted, not lost, and still readable.
    again = client.post(wired.url, content=raw, headers={"Content-Type": "application/json"})
    assert again.status_code == 200, again.text
