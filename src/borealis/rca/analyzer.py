"""The deterministic analyzer: ranks candidate causes from the evidence and writes the whole report.

Pure (no database, no network), so the same evidence always gives the same report. The ranking weighs:

- Dynatrace's own root-cause entity and its ``rootCauseRelevant`` evidence;
- the kind of evidence: a deployment or configuration change shortly before the start weighs heavily,
  anomalies (events, error logs, metrics) less, the impacted entity's own symptoms least;
- topology: the dependency common to the impacted entities (upstream-most when several qualify);
- timing: what went wrong first.

Infrastructure with trouble of its own that no impacted entity depends on is noise: it is ruled out rather
than blamed over the application cause. The verdict is CONFIRMED only when Dynatrace's root cause and the
evidence gathered here (events, error logs, metrics) agree; INCONCLUSIVE says what would settle it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from borealis.rca.book import format_value
from borealis.rca.evidence import (
    APPLICATION_TYPES,
    CHANGE_EVENT_TYPES,
    INFO_EVENT_TYPES,
    INFRASTRUCTURE_TYPES,
    RESTART_EVENT_TYPES,
    EntityRef,
    Evidence,
    EvidenceKind,
    NotChecked,
    entity_ref,
    entity_type_of,
    from_millis,
)
from borealis.rca.explain import Anomaly, WalkFacts
from borealis.rca.explain import walk as explain_walk
from borealis.rca.plan import metric_label
from borealis.rca.report import (
    Candidate,
    Claim,
    GraphEdge,
    GraphNode,
    Impact,
    PathHop,
    Report,
    RootCause,
    RuledOut,
    TimelineEntry,
    Verdict,
    Walk,
)
from borealis.rca.topology import Components, dependencies, reached_from, reaches


@dataclass(frozen=True)
class Weights:
    """How much each kind of signal counts; tuned on the scenario corpus, kept here to be read."""

    dynatrace_root_cause: float = 5.0
    dynatrace_root_cause_repeat: float = 1.0
    relevant_finding: float = 2.0
    relevant_finding_more: float = 0.5
    relevant_finding_cap: float = 3.0
    change_before_start: float = 4.0
    restart: float = 1.0
    anomaly_event: float = 1.0
    anomaly_event_more: float = 0.5
    anomaly_event_cap: float = 2.0
    error_logs: float = 1.0
    metric_anomaly: float = 1.0
    symptom: float = 0.5
    common_dependency: float = 2.0
    upstream_most: float = 1.0
    first_to_go_wrong: float = 1.0
    unrelated_infrastructure_factor: float = 0.5
    likely_minimum: float = 3.0
    clear_lead: float = 1.5
    # The walk (when the impacted entities' metrics were judged against their baselines).
    walk_leaf: float = 4.0
    walk_hop: float = 1.0
    walk_blind: float = 2.0
    walk_reachable: float = 1.0
    walk_reachable_magnitude: float = 0.5
    walk_magnitude: float = 1.0
    walk_first_onset: float = 1.0
    walk_more_paths: float = 0.5
    walk_depth: float = 0.25
    external_factor: float = 0.5
    # A change on something whose metrics stayed within their baseline explains little.
    healthy_change_factor: float = 0.25
    # ... and a change on something whose trouble a dependency explains, a little more.
    explained_change_factor: float = 0.5
    # A lead is clear when the top is this far ahead of the second, in points and as a ratio.
    clear_margin: float = 2.0
    clear_ratio: float = 1.25


WEIGHTS = Weights()
# The graph the report draws: the path, the anomalous subgraph and what hangs directly below, so many.
MAX_DRAWN_NODES = 40
MAX_CANDIDATES = 5


@dataclass
class Signals:
    """What the evidence says about one component (an entity and its instances/groups)."""

    members: set[str] = field(default_factory=set)
    dynatrace_root: list[str] = field(default_factory=list)
    relevant_findings: list[str] = field(default_factory=list)
    symptom_findings: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    late_changes: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    anomaly_events: list[str] = field(default_factory=list)
    error_logs: list[str] = field(default_factory=list)
    metric_anomalies: list[str] = field(default_factory=list)
    impacted_in: list[str] = field(default_factory=list)
    first_wrong: datetime | None = None
    first_wrong_ids: list[str] = field(default_factory=list)
    # Set by the topology pass.
    common_dependency: bool = False
    partial_dependency: bool = False
    upstream_most: bool = False
    depended_on_by_impacted: bool = False
    topology_ids: list[str] = field(default_factory=list)

    @property
    def corroboration(self) -> list[str]:
        """Evidence gathered here (not Dynatrace's verdict itself) that shows this component in trouble."""
        return _unique(
            self.changes + self.anomaly_events + self.error_logs + self.metric_anomalies + self.restarts
        )

    @property
    def own_trouble(self) -> bool:
        return bool(
            self.relevant_findings or self.symptom_findings or self.corroboration or self.dynatrace_root
        )

    @property
    def cause_signal(self) -> bool:
        """Anything beyond 'it is impacted': what a LIKELY verdict needs at least one of."""
        return bool(
            self.dynatrace_root
            or self.relevant_findings
            or self.changes
            or self.error_logs
            or self.metric_anomalies
            or self.anomaly_events
            or (self.common_dependency and self.own_trouble)
        )


@dataclass
class Ranked:
    key: str
    entity: EntityRef
    signals: Signals
    score: float
    reasons: list[Claim]


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _minutes(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


class _Analysis:
    def __init__(
        self,
        evidence: Sequence[Evidence],
        not_checked: Sequence[NotChecked],
        *,
        lookback: timedelta,
        weights: Weights,
    ) -> None:
        self.evidence = list(evidence)
        self.by_id = {item.id: item for item in self.evidence}
        self.not_checked = list(not_checked)
        self.lookback = lookback
        self.w = weights
        self.components = Components()
        self.names: dict[str, EntityRef] = {}
        self.problems = [item for item in self.evidence if item.kind is EvidenceKind.PROBLEM]
        starts = [p.start for p in self.problems if p.start]
        self.start: datetime | None = min(starts) if starts else None
        self.depends: dict[str, set[str]] = {}
        self.comp_depends: dict[str, set[str]] = {}
        self.roots: set[str] = set()
        self.walk: WalkFacts | None = None
        self.signals: dict[str, Signals] = {}

    # --- collection -------------------------------------------------------------------------------

    def _remember(self, ref: EntityRef | None) -> str | None:
        if ref is None:
            return None
        known = self.names.get(ref.id)
        if known is None or (not known.name and ref.name):
            self.names[ref.id] = EntityRef(id=ref.id, name=ref.name, type=ref.type or entity_type_of(ref.id))
        self.components.find(ref.id)
        return ref.id

    def _impacted(self, problem: Evidence) -> list[EntityRef]:
        refs = [entity_ref(raw) for raw in problem.data.get("impactedEntities") or []]
        return [ref for ref in refs if ref]

    def collect(self) -> dict[str, Signals]:
        for item in self.evidence:
            self._remember(item.entity)
            if item.kind is EvidenceKind.FINDING:
                grouping = item.data.get("groupingEntityRef")
                if grouping and item.entity:
                    group = EntityRef.model_validate(grouping)
                    self._remember(group)
                    self.components.union(item.entity.id, group.id)
            if item.kind is EvidenceKind.PROBLEM:
                for ref in self._impacted(item):
                    self._remember(ref)
        self.depends = dependencies(self.evidence, self.components)
        for source, targets in self.depends.items():
            self._remember(self.names.get(source) or EntityRef(id=source))
            for target in targets:
                self._remember(self.names.get(target) or EntityRef(id=target))

        signals: dict[str, Signals] = {}

        def of(entity_id: str) -> Signals:
            key = self.components.find(entity_id)
            return signals.setdefault(key, Signals())

        for key, members in self.components.members().items():
            signals.setdefault(key, Signals()).members = members

        impacted = {
            self.components.find(ref.id) for problem in self.problems for ref in self._impacted(problem)
        }
        runners: dict[str, list[str]] = {}
        for source, targets in self.depends.items():
            if entity_type_of(source) == "SERVICE":
                for target in targets:
                    if entity_type_of(target) in ("PROCESS_GROUP_INSTANCE", "PROCESS_GROUP"):
                        runners.setdefault(target, []).append(source)
        grace = timedelta(minutes=5)
        for item in self.evidence:
            if item.kind is EvidenceKind.PROBLEM:
                if item.entity:
                    of(item.entity.id).dynatrace_root.append(item.id)
                for ref in self._impacted(item):
                    of(ref.id).impacted_in.append(item.id)
                continue
            if item.entity is None:
                continue
            target = of(item.entity.id)
            trouble = False
            symptom = self.components.find(item.entity.id) in impacted
            if item.kind is EvidenceKind.FINDING:
                (target.relevant_findings if item.root_cause_relevant else target.symptom_findings).append(
                    item.id
                )
                # The problem's own events on what it impacts describe the symptom, not a cause.
                trouble = item.root_cause_relevant or not symptom
            elif item.kind is EvidenceKind.EVENT:
                event_type = (item.event_type or "").upper()
                if event_type in CHANGE_EVENT_TYPES:
                    if self.start and item.start and item.start > self.start + grace:
                        target.late_changes.append(item.id)
                    elif self.start is None or item.start is None or item.start >= self.start - self.lookback:
                        target.changes.append(item.id)
                        trouble = True
                        # A new version of a process is a change of the services that run in it.
                        for service in runners.get(item.entity.id, ()):
                            if item.id not in of(service).changes:
                                of(service).changes.append(item.id)
                elif event_type in RESTART_EVENT_TYPES:
                    # A restart after the start is a consequence (or the fix), not a cause.
                    if self.start is None or item.start is None or item.start <= self.start + grace:
                        target.restarts.append(item.id)
                        trouble = True
                elif event_type not in INFO_EVENT_TYPES and (item.root_cause_relevant or not symptom):
                    target.anomaly_events.append(item.id)
                    trouble = True
            elif item.kind is EvidenceKind.LOGS:
                if int(item.data.get("count") or 0) > 0:
                    target.error_logs.append(item.id)
                    trouble = True
            elif item.kind is EvidenceKind.METRIC and item.data.get("anomalous"):
                target.metric_anomalies.append(item.id)
                trouble = True
            if trouble and item.start is not None:
                if target.first_wrong is None or item.start < target.first_wrong:
                    target.first_wrong = item.start
                    target.first_wrong_ids = [item.id]
                elif item.start == target.first_wrong:
                    target.first_wrong_ids.append(item.id)
        self._topology_pass(signals)
        self.signals = signals
        self.walk = explain_walk(
            self.evidence,
            self.not_checked,
            self.components,
            self.comp_depends,
            [ref.id for problem in self.problems for ref in self._impacted(problem)],
        )
        return signals

    def _topology_pass(self, signals: dict[str, Signals]) -> None:
        """Mark the dependencies the impacted components share, and which one lies furthest upstream."""
        comp_depends: dict[str, set[str]] = {}
        for source, targets in self.depends.items():
            a = self.components.find(source)
            for target in targets:
                b = self.components.find(target)
                if a != b:
                    comp_depends.setdefault(a, set()).add(b)
        self.comp_depends = comp_depends
        impacted = sorted({key for key, s in signals.items() if s.impacted_in})
        reach: dict[str, set[str]] = {}
        for origin in impacted:
            for node in reached_from(comp_depends, origin):
                reach.setdefault(node, set()).add(origin)
        entity_ids = {
            item.entity.id for item in self.evidence if item.kind is EvidenceKind.ENTITY and item.entity
        }
        for node, origins in reach.items():
            signal = signals.setdefault(node, Signals(members={node}))
            if origins - {node}:
                signal.depended_on_by_impacted = True
            if len(impacted) >= 2 and origins == set(impacted):
                signal.common_dependency = True
            elif len(impacted) >= 3 and len(origins) >= 2 and len(origins) * 2 >= len(impacted):
                signal.partial_dependency = True
            if signal.common_dependency or signal.partial_dependency:
                signal.topology_ids = _unique(
                    item.id
                    for item in self.evidence
                    if item.kind is EvidenceKind.ENTITY
                    and item.entity
                    and self.components.find(item.entity.id) in origins | {node}
                    and item.entity.id in entity_ids
                )
        common = [key for key, s in signals.items() if s.common_dependency and s.own_trouble]
        for key in common:
            below = {n for n in common if n != key}
            # Upstream-most: no other troubled common dependency lies beneath it.
            if not any(reaches(comp_depends, key, other) for other in below):
                signals[key].upstream_most = True

    # --- ranking ----------------------------------------------------------------------------------

    def representative(self, key: str, signal: Signals) -> EntityRef:
        members = sorted(signal.members or {key})
        roots = [self.by_id[i].entity.id for i in signal.dynatrace_root if self.by_id[i].entity is not None]
        with_entity = [
            m
            for m in members
            if any(e.kind is EvidenceKind.ENTITY and e.entity and e.entity.id == m for e in self.evidence)
        ]
        counts = {m: sum(1 for e in self.evidence if e.entity and e.entity.id == m) for m in members}
        if roots:
            chosen = roots[0]
        elif with_entity:
            chosen = max(with_entity, key=lambda m: (counts[m], m))
        else:
            chosen = max(members, key=lambda m: (counts[m], m))
        return self.names.get(chosen) or EntityRef(id=chosen, type=entity_type_of(chosen))

    def _is_infrastructure(self, signal: Signals) -> bool:
        types = {entity_type_of(m) for m in signal.members}
        return bool(types) and types <= INFRASTRUCTURE_TYPES

    @property
    def walking(self) -> bool:
        return self.walk is not None and self.walk.applies

    def rank(self, signals: dict[str, Signals]) -> list[Ranked]:
        w = self.w
        earliest = min((s.first_wrong for s in signals.values() if s.first_wrong), default=None)
        firsts = [
            k for k, s in signals.items() if earliest and s.first_wrong == earliest and not self.walking
        ]
        ranked: list[Ranked] = []
        for key, s in signals.items():
            blind = self.walking and self.walk is not None and key in self.walk.blind_ends
            if not s.own_trouble and not blind:
                continue
            entity = self.representative(key, s)
            reasons: list[Claim] = []
            score = self._walk_score(key, reasons) if self.walking else 0.0
            if s.dynatrace_root:
                score += w.dynatrace_root_cause + w.dynatrace_root_cause_repeat * min(
                    len(s.dynatrace_root) - 1, 2
                )
                problems = ", ".join(self._problem_name(i) for i in s.dynatrace_root)
                reasons.append(
                    Claim(
                        text=f"Dynatrace names it the root cause of {problems}", evidence_ids=s.dynatrace_root
                    )
                )
            if s.relevant_findings:
                score += min(
                    w.relevant_finding + w.relevant_finding_more * (len(s.relevant_findings) - 1),
                    w.relevant_finding_cap,
                )
                reasons.append(
                    Claim(
                        text=f"{len(s.relevant_findings)} piece(s) of root-cause-relevant Dynatrace evidence on it: "
                        + "; ".join(_unique(self._short(i) for i in s.relevant_findings)[:3]),
                        evidence_ids=s.relevant_findings,
                    )
                )
            if s.changes:
                node = self.walk.nodes.get(key) if self.walking and self.walk else None
                if node is not None and node.judged and not node.anomalous:
                    score += w.change_before_start * w.healthy_change_factor
                    text = self._change_text(s.changes) + ", but its metrics stayed within their baseline"
                elif (
                    node is not None
                    and self.walk
                    and key in self.walk.subgraph
                    and not self.walk.is_leaf(key)
                ):
                    score += w.change_before_start * w.explained_change_factor
                    text = self._change_text(s.changes) + ", but what it depends on explains its trouble"
                else:
                    score += w.change_before_start
                    text = self._change_text(s.changes)
                reasons.append(Claim(text=text, evidence_ids=s.changes))
            if s.restarts:
                score += w.restart
                reasons.append(
                    Claim(text=f"{len(s.restarts)} restart(s) in the window", evidence_ids=s.restarts)
                )
            if s.anomaly_events:
                score += min(
                    w.anomaly_event + w.anomaly_event_more * (len(s.anomaly_events) - 1), w.anomaly_event_cap
                )
                reasons.append(
                    Claim(
                        text="events showing trouble: "
                        + "; ".join(_unique(self._short(i) for i in s.anomaly_events)[:3]),
                        evidence_ids=s.anomaly_events,
                    )
                )
            if s.error_logs:
                score += w.error_logs
                reasons.append(Claim(text="error log records in the window", evidence_ids=s.error_logs))
            if s.metric_anomalies and not self.walking:
                score += w.metric_anomaly
                reasons.append(
                    Claim(
                        text="key metrics rose after the start: "
                        + "; ".join(self._short(i) for i in s.metric_anomalies[:2]),
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
                    "every impacted entity depends"
                    if s.common_dependency
                    else "most impacted entities depend"
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
            if self.walking and self.walk and self._external_behind_monitored(key):
                score *= w.external_factor
                reasons.append(
                    Claim(
                        text="an external service, often only the caller's view of a failing call, while a "
                        "monitored service is also in trouble at the bottom of the path: weighed down",
                        evidence_ids=s.metric_anomalies[:3],
                    )
                )
            if self._is_noise(key, s):
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
                not (self.walking and r.signals.dynatrace_root),
                -r.score,
                self._app_first(r),
                r.entity.id,
            )
        )
        return ranked

    def _walk_score(self, key: str, reasons: list[Claim]) -> float:
        """What the walk says of one component: a leaf of the anomalous subgraph (nothing below explains
        its trouble) leads, by the size of its trouble, how early it began, and how deep it lies."""
        walk, w = self.walk, self.w
        assert walk is not None
        node = walk.nodes.get(key)
        if node is not None and key in walk.blind_ends:
            above = walk.parent.get(key)
            name = self._entity_of(above).name if above else "the symptom"
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
                    text=f"{self._figure(strongest) if strongest else 'anomalous'}, below the symptom, though "
                    "what lies between shows no trouble",
                    evidence_ids=[a.evidence_id for a in node.anomalies],
                )
            )
            return w.walk_reachable + w.walk_reachable_magnitude * node.magnitude
        if node is None or key not in walk.subgraph or not node.anomalous:
            return 0.0
        ids = [a.evidence_id for a in node.anomalies]
        strongest = node.strongest()
        figure = self._figure(strongest) if strongest else "anomalous"
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
        if (
            node.onset is not None
            and walk.is_leaf(key)
            and onsets
            and node.onset + 2 * 60_000 <= onsets[0][0]
        ):
            score += w.walk_first_onset
            reasons.append(
                Claim(
                    text=f"its trouble began first, at {from_millis(node.onset):%H:%M} UTC",
                    evidence_ids=ids[:2],
                )
            )
        return score

    def _figure(self, anomaly: Anomaly) -> str:
        """One hop's figure: ``response time 38 ms → 410 ms from 10:42 UTC``."""
        data = self.by_id[anomaly.evidence_id].data
        unit = str(data.get("unit") or "")
        label = metric_label(anomaly.metric_id)
        before = format_value(float(data.get("baseline") or 0.0), unit)
        after = format_value(float(data.get("level") or 0.0), unit)
        return f"{label} {before} → {after} from {from_millis(anomaly.onset):%H:%M} UTC"

    def _external_behind_monitored(self, key: str) -> bool:
        walk = self.walk
        assert walk is not None
        node = walk.nodes.get(key)
        if node is None or not node.external or not walk.is_leaf(key):
            return False
        return any(not walk.nodes[k].external for k in walk.leaves if k != key)

    def _is_noise(self, key: str, s: Signals) -> bool:
        """Infrastructure in trouble that cannot explain the rest of the incident: nothing impacted (beyond
        itself) is known to depend on it, and no problem Dynatrace blames on it impacts anything else."""
        if not self._is_infrastructure(s) or s.depended_on_by_impacted:
            return False
        explains_others = any(
            self.components.find(ref.id) != key
            for evidence_id in s.dynatrace_root
            for ref in self._impacted(self.by_id[evidence_id])
        )
        others = any(
            self.components.find(ref.id) != key
            for problem in self.problems
            for ref in self._impacted(problem)
        )
        return others and not explains_others

    def _app_first(self, ranked: Ranked) -> int:
        """Between equal scores, the application-side cause comes before infrastructure."""
        return 1 if self._is_infrastructure(ranked.signals) else 0

    # --- wording ----------------------------------------------------------------------------------

    def _problem_name(self, evidence_id: str) -> str:
        item = self.by_id[evidence_id]
        return str(item.data.get("displayId") or item.problem_id or evidence_id)

    def _short(self, evidence_id: str) -> str:
        item = self.by_id[evidence_id]
        if item.kind is EvidenceKind.FINDING:
            return str(item.data.get("displayName") or item.event_type or "finding")
        if item.kind is EvidenceKind.EVENT:
            return f"{item.event_type} '{item.data.get('title') or ''}'".strip()
        if item.kind is EvidenceKind.METRIC:
            return item.summary.split(" of ", 1)[0] + (
                f" x{float(item.data['peak']) / float(item.data['before']):.1f}"
                if item.data.get("before")
                else ""
            )
        return item.summary

    def _relative(self, moment: datetime | None) -> str:
        if moment is None or self.start is None:
            return "in the window"
        if moment <= self.start:
            return f"{_minutes(self.start - moment)} before the start"
        return f"{_minutes(moment - self.start)} after the start"

    def _change_text(self, ids: list[str]) -> str:
        parts = []
        for evidence_id in ids[:3]:
            item = self.by_id[evidence_id]
            parts.append(f"{item.event_type} '{item.data.get('title') or ''}' {self._relative(item.start)}")
        return "a change just before the incident: " + "; ".join(parts)

    # --- report -----------------------------------------------------------------------------------

    def report(self) -> Report:
        signals = self.collect()
        ranked = self.rank(signals)
        top = ranked[0] if ranked else None
        second = self._rival(ranked)
        roots = {k for k, s in signals.items() if s.dynatrace_root}
        self.roots = roots
        self.doubts: list[str] = []
        verdict = (
            self._walk_verdict(top, second, roots) if self.walking else self._verdict(top, second, roots)
        )

        root_cause = self._root_cause(verdict, top, second, roots, signals)
        ruled_out = self._ruled_out(ranked, top, verdict, signals)
        contributing = self._contributing(ranked, top, verdict, roots, signals)
        return Report(
            verdict=verdict,
            summary=self._summary(verdict, top, second),
            root_cause=root_cause,
            timeline=self._timeline(),
            impact=self._impact(),
            contributing_factors=contributing,
            ruled_out=ruled_out,
            not_checked=self.not_checked,
            next_steps=self._next_steps(verdict, top, second),
            candidates=self._candidates(ranked, top),
            walk=self._walk_report(verdict, top),
            evidence=self.evidence,
        )

    def _candidates(self, ranked: list[Ranked], top: Ranked | None) -> list[Candidate]:
        """The first five of the ranking. When fewer stand out and the leader is a leaf of the walk, the
        services it calls fill the list, last: a slow or lossy network path to one of them shows only in
        the caller's figures, never in the callee's own."""
        chosen = [
            Candidate(entity=r.entity, score=r.score, reasons=r.reasons) for r in ranked[:MAX_CANDIDATES]
        ]
        walk = self.walk if self.walking else None
        if top is None or walk is None or not walk.is_leaf(top.key) or len(chosen) >= MAX_CANDIDATES:
            return chosen
        listed = {r.key for r in ranked}
        name = top.entity.name or top.entity.id
        for below in sorted(self.comp_depends.get(top.key, ())):
            entity = self._entity_of(below)
            if below in listed or entity_type_of(entity.id) != "SERVICE" or len(chosen) >= MAX_CANDIDATES:
                continue
            reason = Claim(
                text=f"called by {name}, whose trouble nothing below explains: its own figures stayed within "
                "their baseline, so only a fault on the way to it (network, connection pool) would fit",
                evidence_ids=self._all_reason_ids(top)[:2],
            )
            chosen.append(Candidate(entity=entity, score=0.0, reasons=[reason]))
        return chosen

    # --- the walk as the report draws it ---------------------------------------------------------------

    def _walk_report(self, verdict: Verdict, top: Ranked | None) -> Walk:
        checked = sum(1 for item in self.evidence if item.kind is EvidenceKind.ENTITY)
        walk = self.walk
        if walk is None or not walk.applies:
            return Walk(entities_checked=checked)
        cause = top.key if top is not None and top.key in walk.subgraph else None
        path = walk.path_to(cause) if cause else walk.impacted[:1]
        hops = []
        for index, key in enumerate(path):
            if index == len(path) - 1 and cause is not None and verdict is not Verdict.INCONCLUSIVE:
                role = "cause"
            elif index == 0:
                role = "symptom"
            else:
                role = "path"
            hops.append(self._hop(key, role))
        shown = list(dict.fromkeys([*path, *walk.impacted, *walk.leaves, *sorted(walk.subgraph)]))
        for key in list(shown):
            shown.extend(b for b in sorted(self.comp_depends.get(key, ())) if b not in shown)
        shown = shown[:MAX_DRAWN_NODES]
        depth = dict(walk.depth)
        for key in shown:
            for below in self.comp_depends.get(key, ()):
                if below not in depth and key in depth:
                    depth[below] = depth[key] + 1
        nodes = []
        for key in shown:
            node = walk.nodes.get(key)
            if key == cause and verdict is not Verdict.INCONCLUSIVE:
                state = "cause"
            elif node is not None and node.anomalous:
                state = "anomalous"
            elif node is not None and node.unknown:
                state = "not_checked"
            else:
                state = "healthy"
            nodes.append(
                GraphNode(
                    entity=self._entity_of(key),
                    state=state,
                    impacted=key in walk.impacted,
                    depth=depth.get(key, 0),
                )
            )
        drawn = set(shown)
        edges = [
            GraphEdge(source=self._entity_of(a).id, target=self._entity_of(b).id)
            for a in shown
            for b in sorted(self.comp_depends.get(a, ()))
            if b in drawn
        ]
        return Walk(path=hops, nodes=nodes, edges=edges, entities_checked=checked)

    def _entity_of(self, key: str) -> EntityRef:
        signal = self.signals.get(key)
        return self.representative(key, signal) if signal else self.names.get(key, EntityRef(id=key))

    def _hop(self, key: str, role: str) -> PathHop:
        walk = self.walk
        assert walk is not None
        node = walk.nodes.get(key)
        anomaly = node.strongest() if node else None
        entity = self._entity_of(key)
        if anomaly is None:
            series = next(
                (
                    item
                    for item in self.evidence
                    if item.kind is EvidenceKind.METRIC
                    and item.entity
                    and self.components.find(item.entity.id) == key
                ),
                None,
            )
            figure = (
                "no data: walked past"
                if node is not None and node.unknown
                else "its key metrics stayed within their baseline"
            )
            ids = [series.id] if series else []
        else:
            series = self.by_id[anomaly.evidence_id]
            figure = self._figure(anomaly)
            ids = [a.evidence_id for a in node.anomalies] if node else [anomaly.evidence_id]
        data = series.data if series is not None else {}
        return PathHop(
            entity=entity,
            role=role,
            figure=f"{entity.name or entity.id}: {figure}",
            metric=metric_label(str(data["metricId"])) if data.get("metricId") else None,
            unit=data.get("unit"),
            baseline=data.get("baseline"),
            baseline_low=data.get("low"),
            baseline_high=data.get("high"),
            peak=data.get("peak"),
            onset=from_millis(data.get("onset")) if data.get("onset") else None,
            timestamps=[int(t) for t in data.get("timestamps") or []],
            values=[None if v is None else float(v) for v in data.get("values") or []],
            evidence_ids=ids,
        )

    def _rival(self, ranked: list[Ranked]) -> Ranked | None:
        """The candidate that competes with the leader. In the walk, what the leader's trouble explains
        (the hops above it, up to the symptom) is not a competing cause but its consequence."""
        if not ranked:
            return None
        walk = self.walk if self.walking else None
        for other in ranked[1:]:
            if walk is None or ranked[0].key not in walk.below(other.key):
                return other
        return None

    def _verdict(self, top: Ranked | None, second: Ranked | None, roots: set[str]) -> Verdict:
        """Without the walk (no metrics of the impacted entities): the evidence's own weight decides."""
        clear = top is not None and (second is None or top.score >= self.w.clear_lead * second.score)
        if top and top.key in roots and top.signals.corroboration and clear:
            return Verdict.CONFIRMED
        if top and clear and top.score >= self.w.likely_minimum and top.signals.cause_signal:
            return Verdict.LIKELY
        return Verdict.INCONCLUSIVE

    def _walk_verdict(self, top: Ranked | None, second: Ranked | None, roots: set[str]) -> Verdict:
        """CONFIRMED when Davis and the walk agree; LIKELY for a leaf of the walk clearly ahead with
        nothing unknown below or on the way to it; otherwise INCONCLUSIVE, with the doubts said."""
        walk, w = self.walk, self.w
        assert walk is not None
        if top is None:
            return Verdict.INCONCLUSIVE
        clear = second is None or (
            top.score - second.score >= w.clear_margin and top.score >= w.clear_ratio * second.score
        )
        leaf = walk.is_leaf(top.key)
        if top.key in roots and (leaf or top.key in walk.subgraph) and clear:
            return Verdict.CONFIRMED
        doubts = self.doubts
        name = top.entity.name or top.entity.id
        if not leaf:
            if top.key in roots:
                doubts.append(f"Dynatrace names {name}, but its metrics do not explain the symptom")
            else:
                doubts.append(
                    f"the walk found no anomalous dependency that explains the symptom below {name}"
                )
        if not clear and second is not None:
            doubts.append(
                f"{second.entity.name or second.entity.id} is close behind (score {second.score} against {top.score})"
            )
        unknown = walk.unknown_below.get(top.key, [])
        if unknown:
            doubts.append(f"what {name} depends on could not all be checked ({self._names(unknown)})")
        gaps = walk.gaps_on_path.get(top.key, [])
        if gaps:
            doubts.append(f"data was missing on the path to it ({self._names(gaps)})")
        if top.key in walk.impacted and not top.signals.changes:
            doubts.append(
                f"nothing below {name} is anomalous while its own figures are: the trouble is in "
                "it or in something Dynatrace does not see, and no change on it says which"
            )
        if not any(walk.nodes[k].anomalous for k in walk.impacted if k in walk.nodes):
            doubts.append(
                "the impacted entity's own metrics stayed within their baseline, so there is no symptom for "
                "the walk to explain"
            )
        if roots and top.key not in roots:
            named = ", ".join(self.representative(k, self.signals[k]).label for k in sorted(roots))
            doubts.append(f"Dynatrace names {named} instead")
        return Verdict.INCONCLUSIVE if doubts else Verdict.LIKELY

    def _names(self, keys: Sequence[str]) -> str:
        names = [self.representative(k, self.signals[k]).name or k if k in self.signals else k for k in keys]
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    def _all_reason_ids(self, ranked: Ranked) -> list[str]:
        return _unique(i for reason in ranked.reasons for i in reason.evidence_ids)

    def _root_cause(
        self,
        verdict: Verdict,
        top: Ranked | None,
        second: Ranked | None,
        roots: set[str],
        signals: dict[str, Signals],
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
            if self.doubts:
                text += " Why it is not settled: " + "; ".join(self.doubts) + "."
            text += " What would settle it: " + " ".join(self._settle(top, second, roots))
            ids = _unique(i for r in leading for i in self._all_reason_ids(r))
            return RootCause(entity=None, explanation=text.strip(), evidence_ids=ids)
        reasons = "; ".join(c.text for c in top.reasons)
        if verdict is Verdict.CONFIRMED:
            lead = f"{top.entity.label} is the root cause: Dynatrace names it and the evidence gathered here agrees."
        else:
            lead = f"{top.entity.label} is the likely root cause."
            if roots and top.key not in roots:
                named = ", ".join(self.representative(k, signals[k]).label for k in sorted(roots))
                lead += f" Dynatrace names {named} instead; the evidence here points elsewhere."
            elif top.key in roots:
                lead += " Dynatrace names it too, but nothing gathered here corroborates it yet."
        path = self._path_text(top)
        return RootCause(
            entity=top.entity,
            explanation=f"{lead} Why: {reasons}." + (f" Path: {path}." if path else ""),
            evidence_ids=self._all_reason_ids(top),
        )

    def _path_text(self, top: Ranked) -> str:
        """``checkout-api → payment-svc → payments-db`` with each hop's figure."""
        walk = self.walk
        if walk is None or not walk.applies or top.key not in walk.subgraph:
            return ""
        keys = walk.path_to(top.key)
        if len(keys) < 2:
            return ""
        parts = []
        for key in keys:
            node = walk.nodes.get(key)
            anomaly = node.strongest() if node else None
            name = self._entity_of(key).name or key
            parts.append(f"{name} ({self._figure(anomaly)})" if anomaly else name)
        return " → ".join(parts)

    def _settle(self, top: Ranked | None, second: Ranked | None, roots: set[str]) -> list[str]:
        steps = []
        walk = self.walk if self.walking else None
        if walk is not None and top is not None:
            name = top.entity.name or top.entity.id
            missing = [*walk.gaps_on_path.get(top.key, []), *walk.unknown_below.get(top.key, [])]
            if missing:
                steps.append(
                    f"look at the metrics of {self._names(missing)} in Dynatrace (they were not available "
                    "here) and re-run the analysis;"
                )
            if top.key in walk.impacted and walk.is_leaf(top.key) and not top.signals.changes:
                steps.append(
                    f"check {name} itself: a change Dynatrace was not told of (deployment, configuration, "
                    "feature flag), its error logs, and whether all its instances are affected;"
                )
        for gap in self.not_checked:
            if gap.code == "missing_scope" and gap.scope:
                steps.append(f"grant the token the {gap.scope} scope ({gap.what} was not checked);")
            elif gap.code in ("rate_limited", "error"):
                steps.append(f"re-run the analysis once {gap.what} can be read ({gap.reason});")
        steps = list(dict.fromkeys(steps))
        if not roots:
            steps.append(
                "Dynatrace named no root cause; its problem page may show one once the analysis completes;"
            )
        if top and second:
            steps.append(
                f"look for a change (deployment, configuration) on {top.entity.label} or {second.entity.label}"
                " just before the start, and check whether one depends on the other;"
            )
        elif top is None:
            steps.append("no entity showed trouble of its own; check the impacted entities' events and logs;")
        if steps:
            steps[-1] = steps[-1].rstrip(";") + "."
        return steps

    def _summary(self, verdict: Verdict, top: Ranked | None, second: Ranked | None) -> str:
        span = ""
        if self.problems:
            span = f"{len(self.problems)} problem(s)"
            if self.start:
                span += f" starting {self.start:%Y-%m-%d %H:%M} UTC"
        if verdict is Verdict.INCONCLUSIVE or top is None:
            names = " and ".join(r.entity.label for r in (top, second) if r is not None)
            detail = f" {names} remain candidates." if names else ""
            return f"Inconclusive for {span or 'this incident'}: no single cause stands out.{detail}"
        s = top.signals
        preferred = [
            c
            for c in top.reasons
            if c.evidence_ids and set(c.evidence_ids) & set(s.changes + s.dynatrace_root)
        ]
        heads = (preferred or top.reasons)[:2]
        ids = _unique(i for c in heads for i in c.evidence_ids)[:4] or self._all_reason_ids(top)[:4]
        head = "; ".join(c.text for c in heads) or "the evidence"
        word = "Confirmed" if verdict is Verdict.CONFIRMED else "Likely"
        return f"{word}: {top.entity.label} caused {span or 'this incident'}; {head} [{', '.join(ids)}]."

    def _ruled_out(
        self, ranked: list[Ranked], top: Ranked | None, verdict: Verdict, signals: dict[str, Signals]
    ) -> list[RuledOut]:
        out: list[RuledOut] = []
        for r in ranked:
            if top is not None and r.key == top.key and verdict is not Verdict.INCONCLUSIVE:
                continue
            s = r.signals
            if self._is_noise(r.key, s):
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
                        evidence_ids=self._all_reason_ids(r)[:4],
                    )
                )
        for key, s in signals.items():
            if s.late_changes:
                entity = self.representative(key, s)
                out.append(
                    RuledOut(
                        entity=entity,
                        reason="a change on it came after the incident had started, so it cannot have caused it: "
                        + "; ".join(self._relative(self.by_id[i].start) for i in s.late_changes[:2]),
                        evidence_ids=s.late_changes,
                    )
                )
        return out

    def _contributing(
        self,
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
            if self._is_noise(r.key, s):
                continue
            if s.corroboration or s.relevant_findings:
                claims.append(
                    Claim(
                        text=f"{r.entity.label} was also in trouble: "
                        + "; ".join(c.text for c in r.reasons[:2]),
                        evidence_ids=self._all_reason_ids(r)[:5],
                    )
                )
        for key in sorted(roots - {top.key}):
            s = signals[key]
            entity = self.representative(key, s)
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

    def _next_steps(self, verdict: Verdict, top: Ranked | None, second: Ranked | None) -> list[Claim]:
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
                    word in (self.by_id[i].event_type or "").upper()
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
                        evidence_ids=self._all_reason_ids(top)[:3],
                    )
                )
        else:
            for text in self._settle(top, second, self.roots):
                steps.append(Claim(text=text.rstrip(";.").capitalize()))
        for gap in self.not_checked:
            if gap.code == "missing_scope" and gap.scope:
                claim = Claim(
                    text=f"Grant the Dynatrace token the {gap.scope} scope so {gap.what} can be checked"
                )
                if claim not in steps and not any(gap.scope in c.text for c in steps):
                    steps.append(claim)
        return steps

    def _timeline(self) -> list[TimelineEntry]:
        entries: list[TimelineEntry] = []
        seen_events: dict[str, TimelineEntry] = {}
        for item in self.evidence:
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
                    TimelineEntry(
                        at=item.start, text=f"first error log record of {who}", evidence_ids=[item.id]
                    )
                )
            elif item.kind is EvidenceKind.METRIC and item.data.get("anomalous"):
                label = item.summary.split(" of ", 1)[0]
                entries.append(
                    TimelineEntry(at=item.start, text=f"{label} of {who} rose", evidence_ids=[item.id])
                )
        entries.sort(key=lambda e: (e.at, e.text))
        return entries[:40]

    def _impact(self) -> Impact:
        entities: dict[str, EntityRef] = {}
        users: int | None = None
        ids: list[str] = []
        for problem in self.problems:
            ids.append(problem.id)
            for ref in self._impacted(problem):
                entities.setdefault(ref.id, self.names.get(ref.id, ref))
            for impact in (problem.data.get("impactAnalysis") or {}).get("impacts") or []:
                ref = entity_ref(impact.get("impactedEntity")) if isinstance(impact, dict) else None
                if ref:
                    entities.setdefault(ref.id, self.names.get(ref.id, ref))
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


def analyze(
    evidence: Sequence[Evidence],
    not_checked: Sequence[NotChecked] = (),
    *,
    lookback: timedelta = timedelta(minutes=30),
    weights: Weights = WEIGHTS,
) -> Report:
    """The full report for the evidence of one incident; the same evidence always gives the same report."""
    return _Analysis(evidence, not_checked, lookback=lookback, weights=weights).report()


def suspects(
    evidence: Sequence[Evidence],
    not_checked: Sequence[NotChecked] = (),
    *,
    lookback: timedelta = timedelta(minutes=30),
) -> list[str]:
    """Entity ids worth a closer look, most suspicious first: the gathering plan's ranking of what to
    query next (ranked candidates and their members, then the remaining impacted entities)."""
    analysis = _Analysis(evidence, not_checked, lookback=lookback, weights=WEIGHTS)
    signals = analysis.collect()
    seen_in_evidence = {item.entity.id for item in evidence if item.entity}
    order: list[str] = []
    for ranked in analysis.rank(signals):
        order.append(ranked.entity.id)
        order.extend(sorted(m for m in ranked.signals.members if m in seen_in_evidence))
    for problem in analysis.problems:
        order.extend(ref.id for ref in analysis._impacted(problem))
    return _unique(order)
