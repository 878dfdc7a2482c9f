"""What an RCA run reads from the database before it goes to the network: the incident's problems as the
analysis reads them, and what enrichment already cached about their entities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from borealis.dynatrace import entities
from borealis.dynatrace.models import Connection
from borealis.problems.models import Problem
from borealis.rca.evidence import EntityRef, entity_type_of
from borealis.rca.plan import ProblemFacts


@dataclass
class Inputs:
    """What a run reads from the database before it goes to the network."""

    rca_id: int
    incident_id: int
    title: str
    problems: list[ProblemFacts]
    connection: Connection | None
    # Entity documents the enrichment cache holds for the problems' entities and their neighbours.
    cached_entities: dict[str, dict[str, Any]] = field(default_factory=dict)


def facts_of(problem: Problem) -> ProblemFacts:
    """The stored problem as the analysis reads it."""
    impacted = tuple(
        EntityRef(
            id=item["entityId"],
            name=item.get("name"),
            type=item.get("type") or entity_type_of(item["entityId"]),
        )
        for item in problem.impacted_entities or []
        if isinstance(item, dict) and item.get("entityId")
    )
    root = None
    if problem.root_cause_entity_id:
        root = EntityRef(
            id=problem.root_cause_entity_id,
            name=problem.root_cause_entity_name,
            type=problem.root_cause_entity_type or entity_type_of(problem.root_cause_entity_id),
        )
    details = problem.details if problem.details_format in ("v2", "api") else None
    return ProblemFacts(
        pid=problem.api_problem_id or problem.pid,
        title=problem.title or problem.display_id or problem.pid,
        display_id=problem.display_id,
        state=problem.state,
        severity=problem.severity,
        impact=problem.impact,
        start=problem.start_time,
        end=problem.end_time,
        impacted=impacted,
        root_cause=root,
        url=problem.problem_url,
        details=details if isinstance(details, dict) else None,
    )


def cached_entities(
    *, db_session: Session, connection: Connection | None, problems: Sequence[ProblemFacts]
) -> dict[str, dict[str, Any]]:
    """What enrichment cached about the problems' entities and, one step on, their neighbours."""
    if connection is None:
        return {}
    wanted = {ref.id for facts in problems for ref in facts.impacted}
    wanted |= {facts.root_cause.id for facts in problems if facts.root_cause}
    found = entities.cached_entities(db_session=db_session, connection_id=connection.id, entity_ids=wanted)
    neighbours = {
        target.get("id")
        for document in found.values()
        for direction in ("fromRelationships", "toRelationships")
        for targets in (document.get(direction) or {}).values()
        for target in (targets if isinstance(targets, list) else [])[:20]
        if isinstance(target, dict) and target.get("id")
    } - set(found)
    if neighbours:
        found.update(
            entities.cached_entities(
                db_session=db_session, connection_id=connection.id, entity_ids=sorted(neighbours)[:200]
            )
        )
    return found
