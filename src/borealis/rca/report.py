"""The root-cause report: one structure for the analyzer and the narrative, and its Markdown rendering."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from borealis.rca.evidence import EntityRef, Evidence, NotChecked
from borealis.schemas import CamelModel


class Verdict(StrEnum):
    # Dynatrace's own root cause and the evidence gathered here agree.
    CONFIRMED = "CONFIRMED"
    # The evidence points to one cause clearly ahead of the others, without that agreement.
    LIKELY = "LIKELY"
    # The evidence does not single out a cause; the report says what would settle it.
    INCONCLUSIVE = "INCONCLUSIVE"


class Claim(CamelModel):
    """A sentence and the evidence that backs it."""

    text: str
    evidence_ids: list[str] = Field(default_factory=list)


class RootCause(CamelModel):
    entity: EntityRef | None = None
    explanation: str
    evidence_ids: list[str] = Field(default_factory=list)


class TimelineEntry(CamelModel):
    at: datetime
    text: str
    evidence_ids: list[str] = Field(default_factory=list)


class Impact(CamelModel):
    entities: list[EntityRef] = Field(default_factory=list)
    applications: list[EntityRef] = Field(default_factory=list)
    services: list[EntityRef] = Field(default_factory=list)
    # Dynatrace's estimate of affected users, when its impact analysis gives one.
    users: int | None = None
    evidence_ids: list[str] = Field(default_factory=list)


class RuledOut(CamelModel):
    entity: EntityRef | None = None
    reason: str
    evidence_ids: list[str] = Field(default_factory=list)


class Candidate(CamelModel):
    """One ranked cause with the reasons behind its score, so the ranking can be checked."""

    entity: EntityRef
    score: float
    reasons: list[Claim] = Field(default_factory=list)


NodeState = Literal["cause", "anomalous", "healthy", "not_checked"]


class PathHop(CamelModel):
    """One entity on the way from the symptom down to the cause, with the figure that shows its trouble.

    ``timestamps`` (UTC milliseconds) and ``values`` are the hop's key series over the baseline and the
    incident window; ``baseline_low`` and ``baseline_high`` bound its normal range (the band drawn behind
    the sparkline), and ``onset`` is the first anomalous point.
    """

    entity: EntityRef
    role: Literal["symptom", "path", "cause"]
    figure: str
    metric: str | None = None
    unit: str | None = None
    baseline: float | None = None
    baseline_low: float | None = None
    baseline_high: float | None = None
    peak: float | None = None
    onset: datetime | None = None
    timestamps: list[int] = Field(default_factory=list)
    values: list[float | None] = Field(default_factory=list)
    evidence_ids: list[str] = Field(default_factory=list)


class GraphNode(CamelModel):
    """An entity the walk looked at: the cause, anomalous, checked and healthy, or not checked."""

    entity: EntityRef
    state: NodeState
    impacted: bool = False
    depth: int = 0


class GraphEdge(CamelModel):
    """``source`` depends on ``target`` (calls it, runs on it)."""

    source: str
    target: str


class Walk(CamelModel):
    """What the dependency walk saw: the path from the symptom to the cause and the graph around it."""

    path: list[PathHop] = Field(default_factory=list)
    nodes: list[GraphNode] = Field(default_factory=list)
    edges: list[GraphEdge] = Field(default_factory=list)
    # Entities the walk reached, and Dynatrace API calls the whole analysis made.
    entities_checked: int = 0
    calls: int = 0


class NarrativeReport(CamelModel):
    """The part of a report that is told, and all a model may write: the evidence, the gaps and the
    ranking stay as gathered."""

    verdict: Verdict
    summary: str
    root_cause: RootCause
    timeline: list[TimelineEntry] = Field(default_factory=list)
    impact: Impact = Field(default_factory=Impact)
    contributing_factors: list[Claim] = Field(default_factory=list)
    ruled_out: list[RuledOut] = Field(default_factory=list)
    next_steps: list[Claim] = Field(default_factory=list)


class Report(NarrativeReport):
    not_checked: list[NotChecked] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    walk: Walk = Field(default_factory=Walk)
    evidence: list[Evidence] = Field(default_factory=list)

    def cited_ids(self) -> set[str]:
        """Every evidence id the report's claims cite."""
        cited = set(self.root_cause.evidence_ids) | set(self.impact.evidence_ids)
        for group in (self.contributing_factors, self.next_steps, self.timeline, self.ruled_out):
            for entry in group:
                cited.update(entry.evidence_ids)
        for candidate in self.candidates:
            for reason in candidate.reasons:
                cited.update(reason.evidence_ids)
        return cited


def _cite(ids: list[str]) -> str:
    return f" [{', '.join(ids)}]" if ids else ""


_CITATION = re.compile(r"\\\[(E\d+(?:, E\d+)*)\\\]")


def inert(text: str) -> str:
    """Text that may come from a payload, made inert in Markdown (no links, no HTML, no headings); our
    own citations (``[E1, E2]``) stay readable."""
    inert = (
        text.replace("\\", "\\\\")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("[", "\\[")
        .replace("]", "\\]")
        .replace("`", "\\`")
        .replace("\n", " ")
    )
    return _CITATION.sub(r"[\1]", inert)


def _impact_lines(impact: Impact) -> list[str]:
    lines = []
    if impact.applications:
        lines.append("- Applications: " + ", ".join(inert(e.label) for e in impact.applications))
    if impact.services:
        lines.append("- Services: " + ", ".join(inert(e.label) for e in impact.services))
    others = [e for e in impact.entities if e not in impact.applications and e not in impact.services]
    if others:
        lines.append("- Other entities: " + ", ".join(inert(e.label) for e in others))
    if impact.users is not None:
        lines.append(f"- Affected users (Dynatrace's largest estimate): {impact.users}")
    if not lines:
        lines.append("- Not known")
    lines[-1] += _cite(impact.evidence_ids)
    return lines


def render_markdown(report: Report, *, title: str | None = None) -> str:
    """The report as Markdown an on-call engineer can read top to bottom and check line by line."""
    lines: list[str] = [f"# Root-cause analysis{': ' + inert(title) if title else ''}", ""]
    lines += [f"**Verdict: {report.verdict.value}**", "", inert(report.summary), ""]
    lines += ["## Root cause", ""]
    cause = report.root_cause
    if cause.entity:
        lines.append(f"**{inert(cause.entity.label)}** ({cause.entity.type or 'entity'})")
        lines.append("")
    lines += [inert(cause.explanation) + _cite(cause.evidence_ids), ""]
    if report.walk.path:
        lines += ["## From the symptom to the cause", ""]
        for hop in report.walk.path:
            lines.append(f"- {hop.role}: {inert(hop.figure)}{_cite(hop.evidence_ids)}")
        lines += [
            "",
            f"{report.walk.entities_checked} entities checked, {report.walk.calls} Dynatrace API calls.",
            "",
        ]
    if report.candidates:
        lines += ["## Candidates", ""]
        for rank, candidate in enumerate(report.candidates, start=1):
            why = "; ".join(inert(reason.text) for reason in candidate.reasons[:3]) or "no reason of its own"
            lines.append(f"{rank}. **{inert(candidate.entity.label)}** (score {candidate.score}): {why}")
        lines.append("")
    if report.timeline:
        lines += ["## Timeline", ""]
        for entry in report.timeline:
            lines.append(
                f"- {entry.at:%Y-%m-%d %H:%M:%S} UTC: {inert(entry.text)}{_cite(entry.evidence_ids)}"
            )
        lines.append("")
    lines += ["## Impact", "", *_impact_lines(report.impact), ""]
    for heading, claims in (
        ("Contributing factors", report.contributing_factors),
        ("Next steps", report.next_steps),
    ):
        if claims:
            lines += [f"## {heading}", ""]
            lines += [f"- {inert(claim.text)}{_cite(claim.evidence_ids)}" for claim in claims]
            lines.append("")
    if report.ruled_out:
        lines += ["## Ruled out", ""]
        for entry in report.ruled_out:
            who = f"{inert(entry.entity.label)}: " if entry.entity else ""
            lines.append(f"- {who}{inert(entry.reason)}{_cite(entry.evidence_ids)}")
        lines.append("")
    lines += ["## Not checked", ""]
    if report.not_checked:
        lines += [f"- {inert(gap.what)}: {inert(gap.reason)}" for gap in report.not_checked]
    else:
        lines.append("- Everything planned was checked.")
    lines.append("")
    if report.evidence:
        lines += ["## Evidence", ""]
        for item in report.evidence:
            link = f" ([open in Dynatrace]({item.link}))" if item.link else ""
            lines.append(f"- **{item.id}** ({item.kind.value}): {inert(item.summary)}{link}")
            lines.append(f"  - source: `{item.source.replace('`', '')}`")
        lines.append("")
    return "\n".join(lines)
