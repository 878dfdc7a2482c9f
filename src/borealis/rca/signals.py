"""What the evidence says about each component of an incident, and the shared reading of it.

``Analysis`` holds one incident's evidence: which entities belong together (an entity with its instances or
group), what depends on what, the signals of trouble per component, and the walk below the symptom. Ranking,
verdict and report read it; none of them changes it after ``collect``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from borealis.rca.book import format_value
from borealis.rca.evidence import (
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
from borealis.rca.topology import Components, dependencies, reached_from, reaches
from borealis.rca.weights import Weights


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
        return unique(
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


def unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _minutes(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


class Analysis:
    """One incident's evidence as the ranking reads it; ``collect`` fills in the signals and the walk."""

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

    def impacted_refs(self, problem: Evidence) -> list[EntityRef]:
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
                for ref in self.impacted_refs(item):
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
            self.components.find(ref.id) for problem in self.problems for ref in self.impacted_refs(problem)
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
                for ref in self.impacted_refs(item):
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
            [ref.id for problem in self.problems for ref in self.impacted_refs(problem)],
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
                signal.topology_ids = unique(
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

    # --- lookups ----------------------------------------------------------------------------------

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

    def entity_of(self, key: str) -> EntityRef:
        signal = self.signals.get(key)
        return self.representative(key, signal) if signal else self.names.get(key, EntityRef(id=key))

    def is_infrastructure(self, signal: Signals) -> bool:
        types = {entity_type_of(m) for m in signal.members}
        return bool(types) and types <= INFRASTRUCTURE_TYPES

    @property
    def walking(self) -> bool:
        return self.walk is not None and self.walk.applies

    def is_noise(self, key: str, s: Signals) -> bool:
        """Infrastructure in trouble that cannot explain the rest of the incident: nothing impacted (beyond
        itself) is known to depend on it, and no problem Dynatrace blames on it impacts anything else."""
        if not self.is_infrastructure(s) or s.depended_on_by_impacted:
            return False
        explains_others = any(
            self.components.find(ref.id) != key
            for evidence_id in s.dynatrace_root
            for ref in self.impacted_refs(self.by_id[evidence_id])
        )
        others = any(
            self.components.find(ref.id) != key
            for problem in self.problems
            for ref in self.impacted_refs(problem)
        )
        return others and not explains_others

    # --- wording ----------------------------------------------------------------------------------

    def problem_name(self, evidence_id: str) -> str:
        item = self.by_id[evidence_id]
        return str(item.data.get("displayId") or item.problem_id or evidence_id)

    def short(self, evidence_id: str) -> str:
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

    def relative(self, moment: datetime | None) -> str:
        if moment is None or self.start is None:
            return "in the window"
        if moment <= self.start:
            return f"{_minutes(self.start - moment)} before the start"
        return f"{_minutes(moment - self.start)} after the start"

    def change_text(self, ids: list[str]) -> str:
        parts = []
        for evidence_id in ids[:3]:
            item = self.by_id[evidence_id]
            parts.append(f"{item.event_type} '{item.data.get('title') or ''}' {self.relative(item.start)}")
        return "a change just before the incident: " + "; ".join(parts)

    def figure(self, anomaly: Anomaly) -> str:
        """One hop's figure: ``response time 38 ms → 410 ms from 10:42 UTC``."""
        data = self.by_id[anomaly.evidence_id].data
        unit = str(data.get("unit") or "")
        label = metric_label(anomaly.metric_id)
        before = format_value(float(data.get("baseline") or 0.0), unit)
        after = format_value(float(data.get("level") or 0.0), unit)
        return f"{label} {before} → {after} from {from_millis(anomaly.onset):%H:%M} UTC"

    def listed_names(self, keys: Sequence[str]) -> str:
        names = [self.representative(k, self.signals[k]).name or k if k in self.signals else k for k in keys]
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
