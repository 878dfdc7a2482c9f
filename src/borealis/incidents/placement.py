"""Placement: which incident a problem joins, and why.

A new problem joins the best related open incident (with the reason a human can check) or opens a new
one, and folds in any other open incident it relates to, which makes the grouping the connected
components of the "related" graph whatever the arrival order. A state change goes on the timeline and
resolves or reopens the incident. Callers own the transaction; every call takes the workspace's correlation
lock first.

Each call works with one ``CorrelationBatch``; an ingest batch's also holds a copy of the candidate
index its new problems look up and the timeline rows it writes together at the end.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.incidents.batch import CorrelationBatch, ProblemChange, ProblemPicture, load_problem
from borealis.incidents.changes import (
    Changes,
    absorb,
    attach,
    maybe_reopen,
    maybe_resolve,
    merge_into,
)
from borealis.incidents.correlation import IncidentMatch, ProblemFacts, related_incidents
from borealis.incidents.index import keys_for
from borealis.incidents.models import OPEN, Incident, IncidentProblem
from borealis.incidents.topology import Topology
from borealis.problems.models import ENDED_STATES


@dataclass(frozen=True)
class Placement:
    """Where a problem stands after re-correlation: its incident, whether the problem was just placed
    in it (joined, or folded in with its incident), and whether the incident was just opened for it.
    The enrichment job uses this to ask for a new analysis of an incident that gained problems."""

    incident: Incident
    attached: bool = False
    opened: bool = False


def on_problem_changed(*, db_session: Session, problem_id: int, topology: Topology | None = None) -> Incident:
    """Keep the problem's incident up to date after the lifecycle step; returns that incident.

    A problem seen for the first time joins a related open incident (with the reason) or opens a new
    one; a state change goes on the timeline and resolves or reopens the incident. Idempotent: the
    incident remembers the state it last saw, so calling twice records nothing twice. No network
    call: the topology comes from the enrichment cache when there is one.
    """
    problem = load_problem(db_session=db_session, problem_id=problem_id)
    return _on_changed(CorrelationBatch(Changes.of(db_session), topology), problem)


def on_problems_changed(
    *, db_session: Session, changes: Sequence[ProblemChange], topology: Topology | None = None
) -> dict[int, Incident]:
    """``on_problem_changed`` for the problems one ingest batch wrote, in order, reading each workspace's
    settings and topology once; returns the incident of each problem it had to look at.

    A problem whose columns that correlation reads did not change is left alone (its incident already
    reflects them), unless it has no incident yet. The columns come from the changes, not the database.
    """
    work = CorrelationBatch(Changes.of(db_session, hold_events=True), topology)
    wanted = [change for change in changes if change.matters()]
    unchanged = [change.problem_id for change in changes if not change.matters()]
    if unchanged:
        attached = set(
            db_session.scalars(
                sa.select(IncidentProblem.problem_id).where(IncidentProblem.problem_id.in_(unchanged))
            )
        )
        orphans = {problem_id for problem_id in unchanged if problem_id not in attached}
        if orphans:
            wanted = [change for change in changes if change.matters() or change.problem_id in orphans]
    if not wanted:
        return {}
    ids = [change.problem_id for change in wanted]
    work.attachments = dict.fromkeys(ids)
    for attachment in db_session.scalars(_ATTACHMENTS, {"ids": ids}):
        work.attachments[attachment.problem_id] = attachment
    pictures = [ProblemPicture.of(change.row) for change in wanted]
    # Only problems without an incident look for related ones (a fold later asks for itself).
    new = [picture for picture in pictures if work.attachments[picture.id] is None]
    # New attachments, events and incident changes are written together at the end; the steps that
    # read them back (merges, recounts, resolving) flush first.
    with db_session.no_autoflush:
        if new:
            work.prefetch_topology(new)
            work.prefetch_candidates(new)
        incidents = {}
        for _at, _order, picture, state, previous_keys in _replay(work, pictures, wanted):
            incidents[picture.id] = _on_changed(work, replace(picture, state=state), previous_keys)
        work.changes.write_held_events()
    db_session.flush()
    return incidents


def _replay(
    work: CorrelationBatch, pictures: Sequence[ProblemPicture], changes: Sequence[ProblemChange]
) -> list[tuple[int, tuple[int, int], ProblemPicture, str, frozenset[str] | None]]:
    """The steps that correlate these changes as if each delivery had come alone, in the order they
    arrived: each problem first in the state its incident saw (a new one in the state it came in), then
    every state it took since. A problem that opened and ended within one burst still gathers the
    related ones that came while it was open, and none that came after."""
    steps = []
    for position, (picture, change) in enumerate(zip(pictures, changes, strict=True)):
        states = list(change.states) or [(picture.state, 0)]
        if change.final and states[-1][0] != picture.state:
            states.append((picture.state, states[-1][1]))
        first_keys = None if change.created else change.previous_keys
        keys = frozenset(keys_for(work.facts_of(picture)))
        for step, (state, at) in enumerate(states):
            steps.append((at, (position, step), picture, state, first_keys if step == 0 else keys))
    steps.sort(key=lambda item: (item[0], item[1]))
    return steps


_ATTACHMENTS = sa.select(IncidentProblem).where(
    IncidentProblem.problem_id.in_(sa.bindparam("ids", expanding=True))
)


def _on_changed(
    work: CorrelationBatch, problem: ProblemPicture, previous_keys: Collection[str] | None = None
) -> Incident:
    """The ingest hook for one problem. With ``previous_keys`` (the problem's index keys before this
    change), the candidate index is rewritten only when the keys changed: every other step that moves,
    resolves or reopens an incident keeps the index of its problems right itself."""
    db_session = work.db_session
    work.lock(problem.workspace_id)
    attachment = work.attachment(problem.id)
    if attachment is None:
        return _attach_new(work, problem).incident
    incident = attachment.incident
    if incident is None:
        # Attached earlier in this unit of work, not flushed yet.
        incident = work.load_incidents([attachment.incident_id])[attachment.incident_id]
    facts = work.facts_of(problem)
    keys = keys_for(facts)
    moved = False
    if (facts.entities and _opened_without_facts(incident, attachment)) or (
        previous_keys is not None and not set(keys) <= set(previous_keys) and _folds_itself(incident)
    ):
        # It carries something to correlate by that it did not before (its first entities, or an
        # update that widened it): related open incidents may now be the same one.
        placement = _fold_into_related(work, problem=problem, attachment=attachment, incident=incident)
        incident, moved = placement.incident, placement.attached
    previous_state = attachment.problem_state
    if previous_state != problem.state:
        attachment.problem_state = problem.state
        work.changes.record(
            incident,
            "problem_state_changed",
            f"{facts.display_id} is {problem.state} (was {previous_state})",
            problem_id=problem.id,
            details={"state": problem.state, "previousState": previous_state},
        )
        incident.open_problem_count += _is_open_state(problem.state) - _is_open_state(previous_state)
        if problem.state in ENDED_STATES:
            maybe_resolve(
                work.changes, incident, why=f"all its problems have ended ({facts.display_id} last)"
            )
        elif previous_state in ENDED_STATES:
            maybe_reopen(work.changes, incident, why=f"{facts.display_id} reopened")
    absorb(incident, problem, facts)
    if incident.status == OPEN and (previous_keys is None or moved or keys != previous_keys):
        work.changes.index.add_problem(problem.workspace_id, problem.id, incident.id, keys)
    if previous_keys is None:
        db_session.flush()
    return incident


def _is_open_state(state: str | None) -> int:
    return 0 if state in ENDED_STATES else 1


def recorrelate(*, db_session: Session, problem_id: int, topology: Topology | None = None) -> Placement:
    """Correlate a problem again once enrichment knows more (the entity topology); returns where it
    stands (``attached`` when its incident was folded into another).

    The problem's open incident and the open incidents it now relates to are folded into the best
    related one, as if the topology had been known at ingest; incidents a person arranged are left as
    they are. Without an attachment yet, this is the ingest hook.
    """
    problem = load_problem(db_session=db_session, problem_id=problem_id)
    work = CorrelationBatch(Changes.of(db_session), topology)
    work.lock(problem.workspace_id)
    attachment = db_session.get(IncidentProblem, problem.id)
    if attachment is None:
        return _attach_new(work, problem)
    incident = attachment.incident
    if not _folds_itself(incident):
        return Placement(incident)
    return _fold_into_related(work, problem=problem, attachment=attachment, incident=incident)


def _folds_itself(incident: Incident) -> bool:
    """Whether correlation may still fold this incident into another: open, and not arranged by a
    person (nor merged away already)."""
    return incident.status == OPEN and not incident.manual and incident.merged_into_id is None


def _opened_without_facts(incident: Incident, attachment: IncidentProblem) -> bool:
    """Whether the problem sits alone in the incident it opened while its deliveries carried nothing to
    correlate by (a MERGED that overtook its OPEN, a template without entities): it is correlated
    once they do, even if that incident has resolved in the meantime."""
    return (
        attachment.strategy == "new"
        and incident.problem_count == 1
        and not incident.affected_entities
        and not incident.manual
        and incident.merged_into_id is None
    )


def _fold_into_related(
    work: CorrelationBatch,
    *,
    problem: ProblemPicture,
    attachment: IncidentProblem,
    incident: Incident,
) -> Placement:
    """Fold the problem's incident and the open incidents it relates to into the best related one."""
    db_session = work.db_session
    facts = work.facts_of(problem)
    found = _related(work, problem.workspace_id, facts)
    related = [(item, other) for item, other in found if other.id != incident.id and not other.manual]
    if not related:
        return Placement(incident)
    (best, target), rest = related[0], related[1:]
    if attachment.strategy == "new":
        attachment.strategy = best.match.strategy
        attachment.score = best.match.score
        attachment.reason = best.match.reason
        attachment.related_problem_id = int(best.match.other.problem_id)
        db_session.flush()
    merge_into(
        work.changes,
        target=target,
        source=incident,
        actor="system",
        why=f"{facts.display_id} {best.match.reason}",
    )
    for item, other in rest:
        merge_into(
            work.changes,
            target=target,
            source=other,
            actor="system",
            why=f"{facts.display_id} {item.match.reason}",
        )
    db_session.flush()
    return Placement(target, attached=True)


def _attach_new(work: CorrelationBatch, problem: ProblemPicture) -> Placement:
    """Place a problem that has no incident yet: into the best related open incident, folding in the
    others it relates to, or into a new one."""
    db_session = work.db_session
    settings = work.settings_of(problem.workspace_id)
    facts = work.facts_of(problem)
    found = _related(work, problem.workspace_id, facts)
    still_open = _is_open_state(problem.state)
    if not found:
        # The incident is inserted with its whole picture: one statement, no update after it.
        incident = Incident(
            workspace_id=problem.workspace_id,
            title=problem.title or facts.display_id,
            status=OPEN,
            priority=problem.priority,
            started_at=facts.start_time or utcnow(),
            affected_entities=[],
            search_text="",
            problem_count=1,
            open_problem_count=still_open,
            manual=False,
        )
        absorb(incident, problem, facts)
        db_session.add(incident)
        db_session.flush()
        reason = f"no related open incident within {settings.window_minutes} min"
        work.attachments[problem.id] = attach(
            db_session,
            problem.id,
            incident.id,
            strategy="new",
            score=None,
            reason=reason,
            related=None,
            state=problem.state,
        )
        work.changes.record(
            incident, "opened", f"opened by {facts.display_id}: {reason}", problem_id=problem.id
        )
        target = incident
    else:
        best, target = found[0]
        work.attachments[problem.id] = attach(
            db_session,
            problem.id,
            target.id,
            strategy=best.match.strategy,
            score=best.match.score,
            reason=best.match.reason,
            related=int(best.match.other.problem_id),
            state=problem.state,
        )
        work.changes.record(
            target,
            "problem_joined",
            f"{facts.display_id} joined: {best.match.reason}",
            problem_id=problem.id,
            details={"strategy": best.match.strategy, "score": best.match.score},
        )
        merged = False
        for other, source in found[1:]:
            if source.manual or target.manual or source.merged_into_id is not None:
                continue
            merge_into(
                work.changes,
                target=target,
                source=source,
                actor="system",
                why=f"{facts.display_id} {other.match.reason}",
            )
            merged = True
        if not merged:
            # (A merge recounts the target, this problem included.)
            target.problem_count += 1
            target.open_problem_count += still_open
        absorb(target, problem, facts)
    if problem.state in ENDED_STATES:
        maybe_resolve(work.changes, target, why=f"all its problems have ended ({facts.display_id} last)")
    if target.status == OPEN:
        work.changes.index.add_problem(
            problem.workspace_id, problem.id, target.id, keys_for(facts), fresh=True
        )
    return Placement(target, attached=True, opened=not found)


# -- related open incidents ------------------------------------------------------------------------


def _related(
    work: CorrelationBatch, workspace_id: str, facts: ProblemFacts
) -> list[tuple[IncidentMatch, Incident]]:
    """The open incidents ``facts`` relates to, best first, each with its best match."""
    settings = work.settings_of(workspace_id)
    reached = work.reached(workspace_id, facts)
    candidates = work.changes.index.candidates(
        workspace_id=workspace_id,
        facts=facts,
        settings=settings,
        reached=reached,
        known=work.facts,
    )
    found = related_incidents(facts, candidates, settings=settings, reached=reached)
    # The index holds open incidents only; checking again costs nothing and loads them in one query.
    loaded = work.load_incidents([item.incident_id for item in found])
    return [(item, loaded[item.incident_id]) for item in found if _is_open(loaded.get(item.incident_id))]


def _is_open(incident: Incident | None) -> bool:
    return incident is not None and incident.status == OPEN and incident.merged_into_id is None
