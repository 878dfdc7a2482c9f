"""Evidence gathering: runs the plan against Dynatrace, within the token's scopes and a bounded budget.

Four rounds: the problems' details; the walk (breadth first from the impacted entities along what they
depend on: the services they call, where they run), a level per batched entity call; the key metrics of
every entity the walk reached (baseline and incident window in one query per entity type) and their
events; then error logs of the strongest suspects. Every step runs through ``StepRunner`` (``steps.py``),
and so do the narrative's tool calls on the same ``Investigation``: one set of scopes and one budget.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from borealis.rca.book import EvidenceBook
from borealis.rca.evidence import EntityRef, Evidence, EvidenceKind, entity_ref, entity_type_of, to_millis
from borealis.rca.plan import (
    Action,
    ProblemFacts,
    Step,
    Window,
    entity_metrics,
    entity_selector,
    log_attribute,
    problem_steps,
)
from borealis.rca.ranking import suspects as rank_suspects
from borealis.rca.steps import Budget, EvidenceSource, StepRunner
from borealis.rca.topology import depends_on

logger = logging.getLogger("borealis.rca")

# Within one level of the walk, what is fetched first when the cap cuts: services (the call graph), then
# where they run; a process group last (its instances carry the metrics).
TYPE_PRIORITY = {"SERVICE": 0, "HOST": 1, "PROCESS_GROUP_INSTANCE": 2, "PROCESS_GROUP": 4}


def facts_as_problem(facts: ProblemFacts) -> dict[str, Any]:
    """The stored problem in the v2 API shape, so the analyzer reads one shape whatever the source."""
    problem: dict[str, Any] = dict(facts.details or {})
    if not isinstance(problem.get("evidenceDetails"), dict):
        problem.pop("evidenceDetails", None)
    problem["problemId"] = problem.get("problemId") or facts.pid
    defaults = {
        "displayId": facts.display_id,
        "title": facts.title,
        "status": facts.state,
        "severityLevel": facts.severity,
        "impactLevel": facts.impact,
        "startTime": to_millis(facts.start) if facts.start else None,
        "endTime": to_millis(facts.end) if facts.end else -1,
    }
    for key, value in defaults.items():
        if problem.get(key) in (None, "") and value is not None:
            problem[key] = value
    if not problem.get("impactedEntities") and facts.impacted:
        problem["impactedEntities"] = [_entity_json(ref) for ref in facts.impacted]
    if not problem.get("rootCauseEntity") and facts.root_cause:
        problem["rootCauseEntity"] = _entity_json(facts.root_cause)
    return problem


def _entity_json(ref: EntityRef) -> dict[str, Any]:
    return {
        "entityId": {"id": ref.id, "type": ref.type or entity_type_of(ref.id)},
        "name": ref.name or ref.id,
    }


class Investigation(StepRunner):
    """The whole plan for an incident's problems: their details, the walk below them, the metrics and
    events of what it reached, the error logs of the strongest suspects."""

    def gather(self, problems: Sequence[ProblemFacts]) -> EvidenceBook:
        """Run all four rounds for the incident's problems."""
        problems = list(problems)[: self.budget.max_problems]
        for facts, step in zip(problems, problem_steps(problems), strict=True):
            if not self.run(step):
                # The API could not tell us more: the stored record (webhook data) still counts.
                self.book.add_problem(
                    facts_as_problem(facts),
                    source="webhook notification (stored problem record)",
                    url=facts.url,
                )
        self.impacted = {ref.id for facts in problems for ref in facts.impacted} | _impacted_in_evidence(
            self.book.items
        )
        reached = self.walk(rank_suspects(self.book.items))
        for step in self.metric_steps(reached):
            self.run(step)
        for step in self.event_steps([*reached, *self.processes_of_troubled_services(reached)]):
            self.run(step)
        ranked = rank_suspects(self.book.items, self.book.not_checked)
        for entity_id in [e for e in ranked if log_attribute(e)][: self.budget.max_log_suspects]:
            self.run(Step(Action.LOGS, (entity_id,), self.window.start, self.window.end))
        return self.book

    def walk(self, roots: Sequence[str]) -> list[str]:
        """Breadth first from ``roots`` along what each entity depends on, to the budget's depth (in
        calls: where a service runs is part of it) and size. The entities API takes ids of one type per
        selector, so the call graph is walked first, a level per call, then where the reached services
        run, a type per call; what the caps cut off is recorded as not checked."""
        depth_of: dict[str, int] = {}
        pending: dict[str, int] = dict.fromkeys(roots, 0)
        while pending:
            batch = self._next_batch(pending)
            depths = {entity_id: pending.pop(entity_id) for entity_id in batch}
            room = self.budget.max_entities - len(depth_of)
            taken, cut = batch[:room], batch[room:]
            if cut:
                self._gap(
                    f"{len(cut)} more entities ({self._kinds(cut)})",
                    f"not examined: the walk stops at {self.budget.max_entities} entities"
                    " (BOREALIS_RCA_MAX_ENTITIES)",
                    "budget",
                    entity_ids=cut,
                )
            for chunk in self.chunks(taken):
                self.run(Step(Action.ENTITY, tuple(chunk)))
            too_deep: list[str] = []
            for entity_id in taken:
                depth_of[entity_id] = depth = depths[entity_id]
                document = self.book.entity_document(entity_id)
                for target, relation in depends_on(document) if document else ():
                    if target in depth_of or target in pending or target in too_deep:
                        continue
                    if entity_type_of(target) == "PROCESS_GROUP":
                        continue  # its instances carry the metrics and lead on to the host
                    below = depth + 1 if relation == "calls" else depth
                    if below > self.budget.max_depth:
                        too_deep.append(target)
                    else:
                        pending[target] = below
            if too_deep:
                self._gap(
                    f"{len(too_deep)} services more than {self.budget.max_depth} calls below the impacted ones",
                    "not examined: the walk stops at that depth (BOREALIS_RCA_MAX_DEPTH)",
                    "budget",
                    entity_ids=too_deep,
                )
        self.depth_of = depth_of
        return list(depth_of)

    def _next_batch(self, pending: dict[str, int]) -> list[str]:
        """The services nearest the impacted entities, or else every pending entity of the next type."""
        services = [e for e in pending if entity_type_of(e) == "SERVICE"]
        if services:
            nearest = min(pending[e] for e in services)
            return [e for e in services if pending[e] == nearest]
        first = min(
            pending, key=lambda e: (TYPE_PRIORITY.get(entity_type_of(e) or "", 3), entity_type_of(e) or "")
        )
        kind = entity_type_of(first)
        return [e for e in pending if entity_type_of(e) == kind]

    @staticmethod
    def _kinds(entity_ids: Sequence[str]) -> str:
        counts: dict[str, int] = {}
        for entity_id in entity_ids:
            kind = (entity_type_of(entity_id) or "entity").lower().replace("_", " ")
            counts[kind] = counts.get(kind, 0) + 1
        return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))

    def chunks(self, entity_ids: Sequence[str]) -> list[list[str]]:
        """The ids split so each ``entityId(...)`` selector stays within Dynatrace's length limit."""
        out: list[list[str]] = []
        current: list[str] = []
        for entity_id in entity_ids:
            if current and len(entity_selector([*current, entity_id])) > self.budget.max_selector_chars:
                out.append(current)
                current = []
            current.append(entity_id)
        if current:
            out.append(current)
        return out

    def metric_steps(self, entity_ids: Sequence[str]) -> list[Step]:
        """Key metrics of every entity the walk reached: ids of one type per call (the API's rule), as
        many as one selector holds."""
        return [
            Step(Action.METRICS, tuple(chunk), self.window.baseline_start, self.window.end)
            for ids in _by_type(entity_ids).values()
            if entity_metrics(ids[0])
            for chunk in self.chunks(ids)
        ]

    def event_steps(self, entity_ids: Sequence[str]) -> list[Step]:
        """Events of the given entities in the window, ids of one type per call."""
        return [
            Step(Action.EVENTS, tuple(chunk), self.window.start, self.window.end)
            for ids in _by_type(entity_ids).values()
            for chunk in self.chunks(ids)
        ]

    def processes_of_troubled_services(self, reached: Sequence[str]) -> list[str]:
        """The process instances the anomalous services run in, fetched or not: a new version is recorded
        on the process (PROCESS_VERSION_CHANGE), and the walk's size cap may have left them out."""
        troubled = {
            item.entity.id
            for item in self.book.items
            if item.kind is EvidenceKind.METRIC and item.entity and item.data.get("anomalous")
        }
        found: list[str] = []
        for service in reached:
            if service not in troubled or entity_type_of(service) != "SERVICE":
                continue
            document = self.book.entity_document(service) or {}
            targets = (document.get("fromRelationships") or {}).get("runsOnProcessGroupInstance") or []
            found.extend(ref.id for ref in map(entity_ref, targets) if ref and ref.id not in reached)
        return list(dict.fromkeys(found))


def _by_type(entity_ids: Sequence[str]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for entity_id in dict.fromkeys(entity_ids):
        by_type.setdefault(entity_type_of(entity_id) or "?", []).append(entity_id)
    return by_type


def _impacted_in_evidence(items: Sequence[Evidence]) -> set[str]:
    found = set()
    for item in items:
        if item.kind is EvidenceKind.PROBLEM:
            for raw in item.data.get("impactedEntities") or []:
                ref = entity_ref(raw)
                if ref:
                    found.add(ref.id)
    return found


def investigate(
    source: EvidenceSource,
    problems: Sequence[ProblemFacts],
    *,
    now: datetime,
    scopes: Sequence[str] | None = None,
    budget: Budget = Budget(),
    cached_entities: Mapping[str, dict[str, Any]] | None = None,
) -> Investigation:
    """Gather the evidence of an incident's problems; the returned investigation can fetch more."""
    window = Window.around(problems, now=now, lookback=budget.lookback, baseline=budget.baseline)
    investigation = Investigation(
        source, window=window, scopes=scopes, budget=budget, cached_entities=cached_entities
    )
    investigation.gather(problems)
    logger.info(
        "gathered %d evidence items in %d calls, %d not checked",
        len(investigation.book.items),
        investigation.calls,
        len(investigation.book.not_checked),
    )
    return investigation
