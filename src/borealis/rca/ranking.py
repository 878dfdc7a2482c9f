"""Ranking the components that show trouble: the candidates for the root cause, strongest first.

The ranking weighs Dynatrace's own root-cause entity and its ``rootCauseRelevant`` evidence; the kind of
evidence (a change shortly before the start heavily, anomalies less, the impacted entity's own symptoms
least); topology (the dependency common to the impacted entities); timing; and, when the impacted entities'
metrics could be judged, the walk below the symptom, whose leaves lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from borealis.rca.evidence import EntityRef, Evidence, NotChecked, entity_type_of, from_millis
from borealis.rca.report import Candidate, Claim
from borealis.rca.signals import Analysis, Signals, unique
from borealis.rca.weights import WEIGHTS

MAX_CANDIDATES = 5


@dataclass
class Ranked:
    key: str
    entity: EntityRef
    signals: Signals
    score: float
    reasons: list[Claim]


def rank(analysis: Analysis, signals: dict[str, Signals]) -> list[Ranked]:
    w = analysis.w
    earliest = min((s.first_wrong for s in signals.values() if s.first_wrong), default=None)
    firsts = [
        k for k, s in signals.items() if earliest and s.first_wrong == earliest and not analysis.walking
    ]
    ranked: list[Ranked] = []
    for key, s in signals.items():
        blind = analysis.walking and analysis.walk is not None and key in analysis.walk.blind_ends
        if not s.own_trouble and not blind:
            continue
        entity = analysis.representative(key, s)
        reasons: list[Claim] = []
        score = _walk_score(analysis, key, reasons) if analysis.walking else 0.0
        if s.dynatrace_root:
            score += w.dynatrace_root_cause + w.dynatrace_root_cause_repeat * min(
                len(s.dynatrace_root) - 1, 2
            )
            problems = ", ".join(analysis.problem_name(i) for i in s.dynatrace_root)
            reasons.append(
                Claim(text=f"Dynatrace names it the root cause of {problems}", evidence_ids=s.dynatrace_root)
            )
        if s.relevant_findings:
            score += min(
                w.relevant_finding + w.relevant_finding_more * (len(s.relevant_findings) - 1),
                w.relevant_finding_cap,
            )
            reasons.append(
                Claim(
                    text=f"{len(s.relevant_findings)} piece(s) of root-cause-relevant Dynatrace evidence on it: "
                    + "; ".join(unique(analysis.short(i) for i in s.relevant_findings)[:3]),
                    evidence_ids=s.relevant_findings,
                )
            )
        if s.changes:
            node = analysis.walk.nodes.get(key) if analysis.walking and analysis.walk else None
            if node is not None and node.judged and not node.anomalous:
                score += w.change_before_start * w.healthy_change_factor
                text = analysis.change_text(s.changes) + ", but its metrics stayed within their baseline"
            elif (
                node is not None
                and analysis.walk
                and key in analysis.walk.subgraph
                and not analysis.walk.is_leaf(key)
            ):
                score += w.change_before_start * w.explained_change_factor
                text = analysis.change_text(s.changes) + ", but what it depends on explains its trouble"
            else:
                score += w.change_before_start
                text = analysis.change_text(s.changes)
            reasons.append(Claim(text=text, evidence_ids=s.changes))
        if s.restarts:
            score += w.restart
            reasons.append(Claim(text=f"{len(s.restarts)} restart(s) in the window", evidence_ids=s.restarts))
        if s.anomaly_events:
            score += min(
                w.anomaly_event + w.anomaly_event_more * (len(s.anomaly_events) - 1), w.anomaly_event_cap
            )
            reasons.append(
                Claim(
                    text="events showing trouble: "
                    + "; ".join(unique(analysis.short(i) for i in s.anomaly_events)[:3]),
                    evidence_ids=s.anomaly_events,
                )
            )
        if s.error_logs:
            score += w.error_logs
            reasons.append(Claim(text="error log records in the window", evidence_ids=s.error_logs))
        if s.metric_anomalies and not analysis.walking:
            score += w.metric_anomaly
            reasons.append(
                Claim(
                    text="key metrics rose after the start: "
                    + "; ".join(analysis.short(i) for i in s.metric_anomalies[:2]),
                    evidence_ids=s.metric_anomalies,
                )
            )
        if s.symptom_findings and not s.relevant_findings and not s.impacted_in:
            score += w.symptom
            reasons.append(
                Claim(
                    text="shows the problem's symptoms (not marked root-cause relevant)",
                    evidence_ids=s.symptom_findings,
                )
            )
        if s.common_dependency or s.partial_dependency:
            share = (
                "every impacted entity depends" if s.common_dependency else "most impacted entities depend"
            )
            score += w.common_dependency if s.common_dependency else w.common_dependency / 2
            reasons.append(
                Claim(
                    text=f"{share} on it (calls it, runs on it or is part of it)",
                    evidence_ids=s.topology_ids,
                )
            )
            if s.upstream_most:
                score += w.upstream_most
                reasons.append(
                    Claim(
                        text="it is the furthest upstream of the troubled shared dependencies",
                        evidence_ids=s.topology_ids,
                    )
                )
        if key in firsts and len(firsts) == 1 and s.first_wrong is not None:
            score += w.first_to_go_wrong
            reasons.append(
                Claim(
                    text=f"it went wrong first, at {s.first_wrong:%H:%M:%S} UTC",
                    evidence_ids=s.first_wrong_ids,
                )
            )
        if analysis.walking and analysis.walk and _external_behind_monitored(analysis, key):
            score *= w.external_factor
            reasons.append(
                Claim(
                    text="an external service, often only the caller's view of a failing call, while a "
                    "monitored service is also in trouble at the bottom of the path: weighed down",
                    evidence_ids=s.metric_anomalies[:3],
                )
            )
        if analysis.is_noise(key, s):
            score *= w.unrelated_infrastructure_factor
            reasons.append(
                Claim(
                    text="infrastructure that no impacted entity is known to depend on: weighed down as noise",
                    evidence_ids=s.corroboration,
                )
            )
        ranked.append(Ranked(key=key, entity=entity, signals=s, score=round(score, 2), reasons=reasons))
    # Dynatrace's own root cause keeps its precedence in the walk: disagreement is said, not ranked away.
    ranked.sort(
        key=lambda r: (
            not (analysis.walking and r.signals.dynatrace_root),
            -r.score,
            _app_first(analysis, r),
            r.entity.id,
        )
    )
    return ranked


def _walk_score(analysis: Analysis, key: str, reasons: list[Claim]) -> float:
    """What the walk says of one component: a leaf of the anomalous subgraph (nothing below explains
    its trouble) leads, by the size of its trouble, how early it began, and how deep it lies."""
    walk, w = analysis.walk, analysis.w
    assert walk is not None
    node = walk.nodes.get(key)
    if node is not None and key in walk.blind_ends:
        above = walk.parent.get(key)
        name = analysis.entity_of(above).name if above else "the symptom"
        reasons.append(
            Claim(
                text=f"the walk went blind here: its series that could explain {name}'s trouble are "
                "missing, and nothing below it is anomalous",
                evidence_ids=[],
            )
        )
        return w.walk_blind + w.walk_depth * min(walk.depth.get(key, 0), 4)
    if node is not None and node.explanatory and key not in walk.subgraph and key in walk.downstream:
        # Below the symptom, but the entities in between look healthy: a weaker link, unless a change
        # on it came just before (its change event is weighed with the rest of its evidence).
        strongest = node.strongest()
        reasons.append(
            Claim(
                text=f"{analysis.figure(strongest) if strongest else 'anomalous'}, below the symptom, though "
                "what lies between shows no trouble",
                evidence_ids=[a.evidence_id for a in node.anomalies],
            )
        )
        return w.walk_reachable + w.walk_reachable_magnitude * node.magnitude
    if node is None or key not in walk.subgraph or not node.anomalous:
        return 0.0
    ids = [a.evidence_id for a in node.anomalies]
    strongest = node.strongest()
    figure = analysis.figure(strongest) if strongest else "anomalous"
    score = w.walk_magnitude * node.magnitude
    if walk.is_leaf(key):
        score += w.walk_leaf
        what = (
            "nothing it depends on shows trouble that explains it"
            if key not in walk.impacted
            else "none of its dependencies shows trouble that explains it"
        )
        reasons.append(Claim(text=f"{figure}, and {what}", evidence_ids=ids))
    elif key not in walk.impacted:
        score += w.walk_hop
        reasons.append(Claim(text=f"{figure}, on the way down from the symptom", evidence_ids=ids))
    else:
        reasons.append(
            Claim(text=f"{figure}: the symptom, explained by what it depends on", evidence_ids=ids)
        )
        return 0.0
    depth = walk.depth.get(key, 0)
    score += w.walk_depth * min(depth, 4)
    paths = len(walk.reached_by.get(key, ())) - 1
    if paths > 0:
        score += w.walk_more_paths * paths
        reasons.append(Claim(text=f"{paths + 1} impacted entities lead down to it", evidence_ids=ids[:2]))
    onsets = sorted(
        (walk.nodes[k].onset, k) for k in walk.leaves if walk.nodes[k].onset is not None and k != key
    )
    if node.onset is not None and walk.is_leaf(key) and onsets and node.onset + 2 * 60_000 <= onsets[0][0]:
        score += w.walk_first_onset
        reasons.append(
            Claim(
                text=f"its trouble began first, at {from_millis(node.onset):%H:%M} UTC",
                evidence_ids=ids[:2],
            )
        )
    return score


def _external_behind_monitored(analysis: Analysis, key: str) -> bool:
    walk = analysis.walk
    assert walk is not None
    node = walk.nodes.get(key)
    if node is None or not node.external or not walk.is_leaf(key):
        return False
    return any(not walk.nodes[k].external for k in walk.leaves if k != key)


def _app_first(analysis: Analysis, ranked: Ranked) -> int:
    """Between equal scores, the application-side cause comes before infrastructure."""
    return 1 if analysis.is_infrastructure(ranked.signals) else 0


def rival(analysis: Analysis, ranked: list[Ranked]) -> Ranked | None:
    """The candidate that competes with the leader. In the walk, what the leader's trouble explains
    (the hops above it, up to the symptom) is not a competing cause but its consequence."""
    if not ranked:
        return None
    walk = analysis.walk if analysis.walking else None
    for other in ranked[1:]:
        if walk is None or ranked[0].key not in walk.below(other.key):
            return other
    return None


def all_reason_ids(ranked: Ranked) -> list[str]:
    return unique(i for reason in ranked.reasons for i in reason.evidence_ids)


def candidates(analysis: Analysis, ranked: list[Ranked], top: Ranked | None) -> list[Candidate]:
    """The first five of the ranking. When fewer stand out and the leader is a leaf of the walk, the
    services it calls fill the list, last: a slow or lossy network path to one of them shows only in
    the caller's figures, never in the callee's own."""
    chosen = [Candidate(entity=r.entity, score=r.score, reasons=r.reasons) for r in ranked[:MAX_CANDIDATES]]
    walk = analysis.walk if analysis.walking else None
    if top is None or walk is None or not walk.is_leaf(top.key) or len(chosen) >= MAX_CANDIDATES:
        return chosen
    listed = {r.key for r in ranked}
    name = top.entity.name or top.entity.id
    for below in sorted(analysis.comp_depends.get(top.key, ())):
        entity = analysis.entity_of(below)
        if below in listed or entity_type_of(entity.id) != "SERVICE" or len(chosen) >= MAX_CANDIDATES:
            continue
        reason = Claim(
            text=f"called by {name}, whose trouble nothing below explains: its own figures stayed within "
            "their baseline, so only a fault on the way to it (network, connection pool) would fit",
            evidence_ids=all_reason_ids(top)[:2],
        )
        chosen.append(Candidate(entity=entity, score=0.0, reasons=[reason]))
    return chosen


def suspects(
    evidence: Sequence[Evidence],
    not_checked: Sequence[NotChecked] = (),
    *,
    lookback: timedelta = timedelta(minutes=30),
) -> list[str]:
    """Entity ids worth a closer look, most suspicious first: the gathering plan's ranking of what to
    query next (ranked candidates and their members, then the remaining impacted entities)."""
    analysis = Analysis(evidence, not_checked, lookback=lookback, weights=WEIGHTS)
    signals = analysis.collect()
    seen_in_evidence = {item.entity.id for item in evidence if item.entity}
    order: list[str] = []
    for ranked in rank(analysis, signals):
        order.append(ranked.entity.id)
        order.extend(sorted(m for m in ranked.signals.members if m in seen_in_evidence))
    for problem in analysis.problems:
        order.extend(ref.id for ref in analysis.impacted_refs(problem))
    return unique(order)
