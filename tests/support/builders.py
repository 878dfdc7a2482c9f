"""Bodies and data sets the tests send: one place for what a notification looks like.

``notification`` (in ``webhooks.py``) is a single delivery from the suggested template; here are the
correlation tests' problems (``problem_body``), the storm they group, and a v2 problem of the fake
Dynatrace as the webhook would carry it (``webhook_body``).
"""

from __future__ import annotations

from typing import Any

from tests.support.webhooks import BASE_MS

MINUTE = 60_000


def problem_body(
    pid: str,
    *,
    display: str,
    title: str = "Response time degradation",
    state: str = "OPEN",
    minute: int = 0,
    entities: tuple[str, ...] = (),
    root_cause: str | None = None,
    tags: str = "",
    zones: tuple[str, ...] = (),
    severity: str = "PERFORMANCE",
    observed_minute: int | None = None,
) -> dict[str, Any]:
    """A notification from the suggested template; Dynatrace's start time is ``minute`` after BASE_MS
    and its newest evidence ``observed_minute`` (so later updates are demonstrably newer)."""
    start = BASE_MS + minute * MINUTE
    observed = BASE_MS + (observed_minute if observed_minute is not None else minute) * MINUTE
    ended = state in ("RESOLVED", "MERGED")
    impacted = [{"type": e.rsplit("-", 1)[0], "name": e.lower(), "entity": e} for e in entities]
    return {
        "ProblemID": display,
        "PID": pid,
        "State": state,
        "ProblemTitle": title,
        "ProblemSeverity": severity,
        "ProblemImpact": "SERVICE",
        "ProblemURL": f"https://abc12345.live.dynatrace.com/#problems/problemdetails;pid={pid}",
        "ImpactedEntity": f"{title} on {len(entities)} entities",
        "ImpactedEntityNames": ", ".join(e.lower() for e in entities),
        "ImpactedEntities": impacted,
        "Tags": tags,
        "ProblemDetailsJSONv2": {
            "problemId": f"{pid}_{start}V2",
            "displayId": display,
            "title": title,
            "status": "CLOSED" if ended else "OPEN",
            "startTime": start,
            "endTime": observed if ended else -1,
            "rootCauseEntity": (
                {
                    "entityId": {"id": root_cause, "type": root_cause.rsplit("-", 1)[0]},
                    "name": root_cause.lower(),
                }
                if root_cause
                else None
            ),
            "managementZones": [{"id": str(i), "name": name} for i, name in enumerate(zones)],
            "evidenceDetails": {
                "totalCount": 1,
                "details": [{"evidenceType": "EVENT", "startTime": observed}],
            },
        },
    }


CAUSES = 5
PER_CAUSE = 20
UNRELATED = 10


def storm() -> tuple[list[dict[str, Any]], set[frozenset[str]]]:
    """Five cascades and some unrelated problems, with the true grouping.

    In each cascade every fourth problem names the root-cause host; the others impact their own
    service and the previous one's, so a cascade is one chain: problems arriving out of order open
    separate incidents that a later problem must fold together.
    """
    bodies: list[dict[str, Any]] = []
    truth: set[frozenset[str]] = set()
    for cause in range(CAUSES):
        group = []
        for step in range(PER_CAUSE):
            display = f"P-{cause}{step:02d}"
            group.append(display)
            entities = (f"SERVICE-{cause}X{step}",) + ((f"SERVICE-{cause}X{step - 1}",) if step % 4 else ())
            bodies.append(
                problem_body(
                    f"{cause}-{step}",
                    display=display,
                    title=f"Cascade {chr(65 + cause)} step {chr(65 + step)}",
                    minute=cause * 2 + step % 10,
                    entities=entities,
                    root_cause=f"HOST-{cause}" if step % 4 == 0 else None,
                    tags="env:prod",
                    zones=("Shop",),
                )
            )
        truth.add(frozenset(group))
    for index in range(UNRELATED):
        display = f"P-9{index:02d}"
        bodies.append(
            problem_body(
                f"u-{index}",
                display=display,
                title=f"Unrelated {chr(65 + index)}",
                minute=index,
                entities=(f"HOST-U{index}",),
                tags="env:prod",
                zones=("Shop",),
            )
        )
        truth.add(frozenset({display}))
    return bodies, truth


def webhook_body(problem: dict[str, Any]) -> dict[str, Any]:
    """The suggested template filled in as Dynatrace would for this v2 problem."""
    impacted = [
        {"type": e["entityId"]["type"], "name": e["name"], "entity": e["entityId"]["id"]}
        for e in problem["impactedEntities"]
    ]
    return {
        "ProblemID": problem["displayId"],
        "PID": problem["problemId"],
        "State": "OPEN" if problem["status"] == "OPEN" else "RESOLVED",
        "ProblemTitle": problem["title"],
        "ProblemSeverity": problem["severityLevel"],
        "ProblemImpact": problem["impactLevel"],
        "ProblemURL": f"https://abc12345.live.dynatrace.com/#problems/problemdetails;pid={problem['problemId']}",
        "ImpactedEntity": f"{problem['title']} on {len(impacted)} entities",
        "ImpactedEntityNames": ", ".join(e["name"] for e in impacted),
        "ImpactedEntities": impacted,
        "Tags": "",
        "ProblemDetailsJSONv2": problem,
    }
