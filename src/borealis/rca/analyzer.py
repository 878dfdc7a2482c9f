"""The deterministic analyzer: writes the whole report from the ranking of candidate causes.

Pure (no database, no network), so the same evidence always gives the same report. ``signals`` reads the
evidence per component, ``ranking`` orders the candidates, ``verdict`` decides and says what would settle
it, ``walk_report`` draws the path below the symptom; this module writes the report's sections.

Infrastructure with trouble of its own that no impacted entity depends on is noise: it is ruled out rather
than blamed over the application cause. The verdict is CONFIRMED only when Dynatrace's root cause and the
evidence gathered here (events, error logs, metrics) agree; INCONCLUSIVE says what would settle it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from borealis.rca.evidence import (
    APPLICATION_TYPES,
    EntityRef,
    Evidence,
    EvidenceKind,
    NotChecked,
    entity_ref,
    entity_type_of,
)
from borealis.rca.ranking import Ranked, all_reason_ids, candidates, rank, rival
from borealis.rca.report import Claim, Impact, Report, RootCause, RuledOut, TimelineEntry, Verdict
from borealis.rca.signals import Analysis, Signals, unique
from borealis.rca.verdict import settle, verdict_of
from borealis.rca.walk_report import path_text, walk_of
from borealis.rca.weights import WEIGHTS, Weights


def analyze(
    evidence: Sequence[Evidence],
    not_checked: Sequence[NotChecked] = (),
    *,
    lookback: timedelta = timedelta(minutes=30),
    weights: Weights = WEIGHTS,
) -> Report:
    """The full report for the evidence of one incident; the same evidence always gives the same report."""
    return _report(Analysis(evidence, not_checked, lookback=lookback, weights=weights))


def _report(analysis: Analysis) -> Report:
    """Collect, rank, decide, then write every section from the same ranking."""
    signals = analysis.collect()
    ranked = rank(analysis, signals)
    top = ranked[0] if ranked else None
    second = rival(analysis, ranked)
    roots = {k for k, s in signals.items() if s.dynatrace_root}
    verdict, doubts = verdict_of(analysis, top, second, roots)

    root_cause = _root_cause(analysis, verdict, top, second, roots, signals, doubts)
    ruled_out = _ruled_out(analysis, ranked, top, verdict, signals)
    contributing = _contributing(analysis, ranked, top, verdict, roots, signals)
    return Report(
        verdict=verdict,
        summary=_summary(analysis, verdict, top, second),
        root_cause=root_cause,
        timeline=_timeline(analysis),
        impact=_impact(analysis),
        contributing_factors=contributing,
        ruled_out=ruled_out,
        not_checked=analysis.not_checked,
        next_steps=_next_steps(analysis, verdict, top, second, roots),
        candidates=candidates(analysis, ranked, top),
        walk=walk_of(analysis, verdict, top),
        evidence=analysis.evidence,
    )


def _root_cause(
    analysis: Analysis,
    verdict: Verdict,
    top: Ranked | None,
    second: Ranked | None,
    roots: set[str],
    signals: dict[str, Signals],
    doubts: list[str],
) -> RootCause:
    if verdict is Verdict.INCONCLUSIVE or top is None:
        leading = [r for r in (top, second) if r is not None]
        text = "The evidence does not single out a cause."
        if leading:
            text += (
                " Leading candidates: "
                + "; ".join(
                    f"{r.entity.label} (score {r.score}: {', '.join(c.text for c in r.reasons[:2])})"
                    for r in leading
                )
                + "."
            )
        if doubts:
            text += " Why it is not settled: " + "; ".join(doubts) + "."
        text += " What would settle it: " + " ".join(settle(analysis, top, second, roots))
        ids = unique(i for r in leading for i in all_reason_ids(r))
        return RootCause(entity=None, explanation=text.strip(), evidence_ids=ids)
    reasons = "; ".join(c.text for c in top.reasons)
    if verdict is Verdict.CONFIRMED:
        lead = (
            f"{top.entity.label} is the root cause: Dynatrace names it and the evidence gathered here agrees."
        )
    else:
        lead = f"{top.entity.label} is the likely root cause."
        if roots and top.key not in roots:
            named = ", ".join(analysis.representative(k, signals[k]).label for k in sorted(roots))
            lead += f" Dynatrace names {named} instead; the evidence here points elsewhere."
        elif top.key in roots:
            lead += " Dynatrace names it too, but nothing gathered here corroborates it yet."
    path = path_text(analysis, top)
    return RootCause(
        entity=top.entity,
        explanation=f"{lead} Why: {reasons}." + (f" Path: {path}." if path else ""),
        evidence_ids=all_reason_ids(top),
    )


def _summary(analysis: Analysis, verdict: Verdict, top: Ranked | None, second: Ranked | None) -> str:
    span = ""
    if analysis.problems:
        span = f"{len(analysis.problems)} problem(s)"
        if analysis.start:
            span += f" starting {analysis.start:%Y-%m-%d %H:%M} UTC"
    if verdict is Verdict.INCONCLUSIVE or top is None:
        names = " and ".join(r.entity.label for r in (top, second) if r is not None)
        detail = f" {names} remain candidates." if names else ""
        return f"Inconclusive for {span or 'this incident'}: no single cause stands out.{detail}"
    s = top.signals
    preferred = [
        c for c in top.reasons if c.evidence_ids and set(c.evidence_ids) & set(s.changes + s.dynatrace_root)
    ]
    heads = (preferred or top.reasons)[:2]
    ids = unique(i for c in heads for i in c.evidence_ids)[:4] or all_reason_ids(top)[:4]
    head = "; ".join(c.text for c in heads) or "the evidence"
    word = "Confirmed" if verdict is Verdict.CONFIRMED else "Likely"
    return f"{word}: {top.entity.label} caused {span or 'this incident'}; {head} [{', '.join(ids)}]."


def _ruled_out(
    analysis, ranked: list[Ranked], top: Ranked | None, verdict: Verdict, signals: dict[str, Signals]
) -> list[RuledOut]:
    out: list[RuledOut] = []
    for r in ranked:
        if top is not None and r.key == top.key and verdict is not Verdict.INCONCLUSIVE:
            continue
        s = r.signals
        if analysis.is_noise(r.key, s):
            out.append(
                RuledOut(
                    entity=r.entity,
                    reason="shows trouble of its own, but no impacted entity is known to depend on it: noise, not the cause",
                    evidence_ids=s.corroboration,
                )
            )
        elif top is not None and verdict is not Verdict.INCONCLUSIVE and r.score * 3 <= top.score:
            out.append(
                RuledOut(
                    entity=r.entity,
                    reason=f"much weaker evidence (score {r.score} against {top.score})",
                    evidence_ids=all_reason_ids(r)[:4],
                )
            )
    for key, s in signals.items():
        if s.late_changes:
            entity = analysis.representative(key, s)
            out.append(
                RuledOut(
                    entity=entity,
                    reason="a change on it came after the incident had started, so it cannot have caused it: "
                    + "; ".join(analysis.relative(analysis.by_id[i].start) for i in s.late_changes[:2]),
                    evidence_ids=s.late_changes,
                )
            )
    return out


def _contributing(
    analysis: Analysis,
    ranked: list[Ranked],
    top: Ranked | None,
    verdict: Verdict,
    roots: set[str],
    signals: dict[str, Signals],
) -> list[Claim]:
    if top is None or verdict is Verdict.INCONCLUSIVE:
        return []
    claims: list[Claim] = []
    for r in ranked[1:]:
        s = r.signals
        if r.score * 3 <= top.score:
            continue
        if analysis.is_noise(r.key, s):
            continue
        if s.corroboration or s.relevant_findings:
            claims.append(
                Claim(
                    text=f"{r.entity.label} was also in trouble: " + "; ".join(c.text for c in r.reasons[:2]),
                    evidence_ids=all_reason_ids(r)[:5],
                )
            )
    for key in sorted(roots - {top.key}):
        s = signals[key]
        entity = analysis.representative(key, s)
        if not any(c.text.startswith(entity.label) for c in claims):
            claims.append(
                Claim(
                    text=f"Dynatrace names {entity.label} as a root cause; the evidence here weighs it lower",
                    evidence_ids=s.dynatrace_root,
                )
            )
    if top.signals.restarts and not top.signals.changes:
        claims.append(
            Claim(
                text=f"{top.entity.label} restarted during the incident",
                evidence_ids=top.signals.restarts,
            )
        )
    return claims


def _next_steps(
    analysis: Analysis, verdict: Verdict, top: Ranked | None, second: Ranked | None, roots: set[str]
) -> list[Claim]:
    steps: list[Claim] = []
    if top is not None and verdict is not Verdict.INCONCLUSIVE:
        s = top.signals
        if s.changes:
            steps.append(
                Claim(
                    text=f"Review the change on {top.entity.label} and roll it back or fix forward; compare with the previous version",
                    evidence_ids=s.changes,
                )
            )
        resource = [
            i
            for i in s.relevant_findings + s.anomaly_events + s.metric_anomalies
            if any(
                word in (analysis.by_id[i].event_type or "").upper()
                for word in ("CPU", "MEMORY", "GC", "DISK", "MEM", "RESOURCE")
            )
        ]
        if resource:
            steps.append(
                Claim(
                    text=f"Check the capacity and limits of {top.entity.label} (CPU, memory, garbage collection, disk) and what drove the load",
                    evidence_ids=resource,
                )
            )
        if s.error_logs:
            steps.append(
                Claim(
                    text=f"Read the error logs of {top.entity.label} from the first error on",
                    evidence_ids=s.error_logs,
                )
            )
        if not steps:
            steps.append(
                Claim(
                    text=f"Open {top.entity.label} in Dynatrace and look at what changed around the start",
                    evidence_ids=all_reason_ids(top)[:3],
                )
            )
    else:
        for text in settle(analysis, top, second, roots):
            steps.append(Claim(text=text.rstrip(";.").capitalize()))
    for gap in analysis.not_checked:
        if gap.code == "missing_scope" and gap.scope:
            claim = Claim(
                text=f"Grant the Dynatrace token the {gap.scope} scope so {gap.what} can be checked"
            )
            if claim not in steps and not any(gap.scope in c.text for c in steps):
                steps.append(claim)
    return steps


def _timeline(analysis: Analysis) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    seen_events: dict[str, TimelineEntry] = {}
    for item in analysis.evidence:
        if item.kind is EvidenceKind.PROBLEM:
            name = str(item.data.get("displayId") or item.problem_id)
            title = str(item.data.get("title") or "")
            if item.start:
                entries.append(
                    TimelineEntry(at=item.start, text=f"{name} opened: {title}", evidence_ids=[item.id])
                )
            if item.end:
                entries.append(TimelineEntry(at=item.end, text=f"{name} closed", evidence_ids=[item.id]))
            continue
        if item.start is None:
            continue
        who = item.entity.label if item.entity else "?"
        if item.kind in (EvidenceKind.EVENT, EvidenceKind.FINDING):
            if item.kind is EvidenceKind.FINDING and not item.root_cause_relevant:
                continue
            event_id = str(item.data.get("eventId") or "")
            if event_id and event_id in seen_events:
                seen_events[event_id].evidence_ids.append(item.id)
                continue
            label = item.data.get("displayName") or item.data.get("title") or item.event_type
            entry = TimelineEntry(
                at=item.start,
                text=f"{item.event_type or 'event'} '{label}' on {who}",
                evidence_ids=[item.id],
            )
            if event_id:
                seen_events[event_id] = entry
            entries.append(entry)
        elif item.kind is EvidenceKind.LOGS and int(item.data.get("count") or 0) > 0:
            entries.append(
                TimelineEntry(at=item.start, text=f"first error log record of {who}", evidence_ids=[item.id])
            )
        elif item.kind is EvidenceKind.METRIC and item.data.get("anomalous"):
            label = item.summary.split(" of ", 1)[0]
            entries.append(
                TimelineEntry(at=item.start, text=f"{label} of {who} rose", evidence_ids=[item.id])
            )
    entries.sort(key=lambda e: (e.at, e.text))
    return entries[:40]


def _impact(analysis: Analysis) -> Impact:
    entities: dict[str, EntityRef] = {}
    users: int | None = None
    ids: list[str] = []
    for problem in analysis.problems:
        ids.append(problem.id)
        for ref in analysis.impacted_refs(problem):
            entities.setdefault(ref.id, analysis.names.get(ref.id, ref))
        for impact in (problem.data.get("impactAnalysis") or {}).get("impacts") or []:
            ref = entity_ref(impact.get("impactedEntity")) if isinstance(impact, dict) else None
            if ref:
                entities.setdefault(ref.id, analysis.names.get(ref.id, ref))
            count = impact.get("estimatedAffectedUsers") if isinstance(impact, dict) else None
            if isinstance(count, int) and count >= 0:
                users = max(users or 0, count)
    listed = list(entities.values())
    return Impact(
        entities=listed,
        applications=[e for e in listed if (e.type or entity_type_of(e.id)) in APPLICATION_TYPES],
        services=[e for e in listed if (e.type or entity_type_of(e.id)) == "SERVICE"],
        users=users,
        evidence_ids=ids,
    )
