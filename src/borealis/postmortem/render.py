"""The postmortem in Markdown, section by section. Text that came from Dynatrace or from a person is made
inert (``rca.report.inert``), except notes, which are Markdown already and are quoted as written."""

from __future__ import annotations

from datetime import datetime

from borealis.postmortem.schemas import Postmortem
from borealis.rca.report import inert
from borealis.units import spoken_duration


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "—"


def _duration(seconds: float | None) -> str:
    return spoken_duration(seconds) if seconds is not None else "—"


def to_markdown(postmortem: Postmortem, *, base_url: str = "") -> str:
    lines = [f"# Postmortem: {inert(postmortem.title)} (incident #{postmortem.incident_id})", ""]
    lines += ["## Summary", "", inert(postmortem.summary), ""]
    lines += [
        f"- Status: {postmortem.status}; priority: {postmortem.priority}",
        f"- Started: {_when(postmortem.started_at)}; resolved: {_when(postmortem.resolved_at)}",
    ]
    if postmortem.acknowledged_by:
        lines.append(f"- Acknowledged by: {inert(postmortem.acknowledged_by.username)}")
    if postmortem.assignee:
        lines.append(f"- Assignee: {inert(postmortem.assignee.username)}")
    lines += ["", "## Timeline", ""]
    for event in postmortem.timeline:
        by = f" ({inert(event.by.username)})" if event.by else ""
        lines.append(f"- {_when(event.at)}: {inert(event.message)}{by}")
        if event.text:
            lines += [f"  > {line}" for line in event.text.splitlines() or [""]]
    if not postmortem.timeline:
        lines.append("- Nothing recorded.")
    impact = postmortem.impact
    lines += ["", "## Impact", ""]
    if impact.affected_entities:
        names = ", ".join(inert(entity.name or entity.entity_id) for entity in impact.affected_entities)
        lines.append(f"- Affected: {names}")
    if impact.users is not None:
        lines.append(f"- Affected users (Dynatrace's largest estimate): {impact.users}")
    lines.append(f"- Problems: {len(impact.problems)}")
    for problem in impact.problems:
        name = inert(problem.title or problem.display_id or f"alert {problem.alert_id}")
        lines.append(
            f"  - {inert(problem.display_id or '')} {name}: {problem.severity or 'unknown severity'}, "
            f"{problem.state}, {_when(problem.start_time)} to {_when(problem.end_time)}"
        )
    lines += ["", "## Root cause", ""]
    cause = postmortem.root_cause
    if cause is None:
        lines.append("No root-cause analysis finished for this incident.")
    else:
        entity = f" {inert(cause.entity.label)}." if cause.entity else ""
        lines.append(f"Verdict: **{cause.verdict}**.{entity}")
        if cause.explanation:
            lines += ["", inert(cause.explanation)]
        if cause.evidence:
            lines += ["", "Evidence:", ""]
            for item in cause.evidence:
                link = f" ({item.link})" if item.link else ""
                lines.append(f"- {item.id}: {inert(item.summary)}{link}")
        lines += ["", f"The whole analysis: {base_url}{cause.link}"]
    figures = postmortem.figures
    lines += [
        "",
        "## Figures",
        "",
        f"- Time to acknowledge: {_duration(figures.time_to_acknowledge_seconds)}",
        f"- Time to resolve: {_duration(figures.time_to_resolve_seconds)}",
        f"- Duration: {_duration(figures.duration_seconds)}" + (" (still open)" if figures.open else ""),
        "",
        "## Action items",
        "",
        "- [ ] ",
        "",
    ]
    return "\n".join(lines)
