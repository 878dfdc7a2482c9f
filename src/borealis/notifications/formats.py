"""What each kind of destination receives for an event: Slack's Block Kit message, a Microsoft Teams
Adaptive Card, or Borealis's own JSON, signed (``X-Borealis-Signature``)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

SIGNATURE_HEADER = "X-Borealis-Signature"
# Slack's limits: a section's text and a header's (Block Kit reference).
SLACK_TEXT_LIMIT = 3000
SLACK_HEADER_LIMIT = 150

_TITLES = {
    "incident.opened": "New incident",
    "incident.updated": "Incident updated",
    "rca.completed": "Root-cause analysis done",
    "incident.acknowledged": "Incident acknowledged",
    "incident.assigned": "Incident assigned",
    "incident.resolved": "Incident resolved",
    "incident.reopened": "Incident reopened",
    "test": "Test notification",
}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _facts(event: dict[str, Any]) -> list[tuple[str, str]]:
    incident = event.get("incident") or {}
    facts = [
        ("Status", str(incident.get("status", "—"))),
        ("Priority", str(incident.get("priority", "—"))),
        ("Problems", f"{incident.get('openProblemCount', 0)} open of {incident.get('problemCount', 0)}"),
    ]
    if event.get("rca"):
        rca = event["rca"]
        cause = rca.get("rootCause") or "—"
        facts.append(("RCA", f"{rca.get('verdict', '—')}: {cause}"))
    if event.get("detail"):
        facts.append(("What happened", str(event["detail"])))
    return facts


def headline(event: dict[str, Any]) -> str:
    incident = event.get("incident") or {}
    title = _TITLES.get(event["event"], event["event"])
    return f"{title}: #{incident.get('id', '?')} {incident.get('title', '')}".strip()


def slack(event: dict[str, Any]) -> dict[str, Any]:
    """A Block Kit message: a header, the facts as a section, and the link as context."""
    facts = "\n".join(f"*{name}:* {value}" for name, value in _facts(event))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(headline(event), SLACK_HEADER_LIMIT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(facts, SLACK_TEXT_LIMIT)}},
    ]
    if event.get("link"):
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{event['link']}|Open in Borealis>"}],
            }
        )
    return {"text": _cut(headline(event), SLACK_TEXT_LIMIT), "blocks": blocks}


def teams(event: dict[str, Any]) -> dict[str, Any]:
    """An Adaptive Card (1.4) in the message envelope Teams incoming webhooks and workflows accept."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": headline(event),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in _facts(event)]},
        ],
    }
    if event.get("link"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Borealis", "url": event["link"]}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``: the receiver recomputes it and refuses old ``t``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def body_for(kind: str, event: dict[str, Any]) -> dict[str, Any]:
    if kind == "slack":
        return slack(event)
    if kind == "teams":
        return teams(event)
    return event
