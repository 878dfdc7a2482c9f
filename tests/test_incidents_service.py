"""Incident service behaviour below the API: topology at ingest and after enrichment, the candidate index."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from borealis.incidents import service, topology
from borealis.incidents.index import CandidateIndex, facts_from
from borealis.incidents.models import Incident, IncidentKey, IncidentProblem
from borealis.incidents.placement import on_problem_changed, recorrelate
from borealis.incidents.topology import StaticTopology, use_topology_source
from borealis.problems.models import Problem
from tests.support.builders import problem_body
from tests.support.webhooks import encode, ingest_raw, wire_connection

# The app tier's problem names no database entity: only the entity graph links the two.
DATABASE = {
    "display": "P-1",
    "title": "Database slow",
    "root_cause": "SERVICE-DB",
    "entities": ("SERVICE-DB",),
}
ORDERS = {"display": "P-2", "title": "Orders failing", "minute": 3, "entities": ("SERVICE-ORDERS",)}
GRAPH = StaticTopology([("SERVICE-ORDERS", "SERVICE-DB")])


@pytest.fixture
def wired(app, database, account):
    return wire_connection(database, app.state.secret_box, account.workspace_id)


@pytest.fixture
def no_topology_source():
    """Restore the installed topology source (the enrichment cache) after a test replaces it."""
    previous = list(topology._sources)
    yield
    use_topology_source(previous[0] if previous else None)


def ingest(database, wired, pid: str, **fields: Any) -> int:
    return ingest_raw(database, wired.connection_id, encode(problem_body(pid, **fields))).alert_id


def incident_of(database, alert_id: int) -> int:
    with database.session() as session:
        return session.get(IncidentProblem, alert_id).incident_id


def test_without_topology_a_cascade_through_the_graph_stays_apart(database, wired):
    first = ingest(database, wired, "1", **DATABASE)
    second = ingest(database, wired, "2", **ORDERS)
    assert incident_of(database, first) != incident_of(database, second)


def test_topology_from_the_installed_source_is_used_at_ingest(database, wired, no_topology_source):
    use_topology_source(lambda _session, _user_id: GRAPH)
    first = ingest(database, wired, "1", **DATABASE)
    second = ingest(database, wired, "2", **ORDERS)
    assert incident_of(database, first) == incident_of(database, second)
    with database.session() as session:
        attachment = session.get(IncidentProblem, second)
        assert attachment.strategy == "topology"
        assert attachment.reason == "SERVICE-ORDERS is 1 hop from SERVICE-DB of P-1; started 3 min apart"


def test_recorrelate_folds_incidents_together_once_topology_arrives(database, wired):
    first = ingest(database, wired, "1", **DATABASE)
    second = ingest(database, wired, "2", **ORDERS)
    apart = incident_of(database, second)
    with database.session(write=True) as session:
        placement = recorrelate(db_session=session, problem_id=second, topology=GRAPH)
        incident = placement.incident
        assert placement.attached
        session.commit()
        assert incident.id == incident_of(database, first)
    assert incident_of(database, second) == incident_of(database, first)
    with database.session() as session:
        attachment = session.get(IncidentProblem, second)
        assert attachment.strategy == "topology"
        assert session.get(Incident, apart).merged_into_id == incident.id
        again = recorrelate(db_session=session, problem_id=second, topology=GRAPH)
        assert again.incident.id == incident.id  # nothing left to fold
        assert not again.attached


def test_recorrelate_leaves_incidents_a_person_arranged(database, wired, account):
    first = ingest(database, wired, "1", **DATABASE)
    second = ingest(database, wired, "2", **ORDERS)
    account.client.post(f"/incidents/{incident_of(database, second)}/resolve")
    account.client.post(f"/incidents/{incident_of(database, second)}/reopen")
    with database.session(write=True) as session:
        recorrelate(db_session=session, problem_id=second, topology=GRAPH)
        session.commit()
    assert incident_of(database, first) != incident_of(database, second)


def test_the_candidate_index_holds_open_incidents_only(database, wired):
    fields = {
        "display": "P-1",
        "root_cause": "HOST-1",
        "entities": ("SERVICE-A",),
        "tags": "env:prod",
        "zones": ("Shop",),
    }
    alert = ingest(database, wired, "1", **fields)
    with database.session() as session:
        keys = set(session.scalars(sa.select(IncidentKey.key).where(IncidentKey.problem_id == alert)))
    assert keys == {"e:HOST-1", "e:SERVICE-A", "t:env:prod", "z:Shop", "n:degradation response time"}
    ingest(database, wired, "1", state="RESOLVED", observed_minute=4, **fields)
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(IncidentKey)) == 0
    ingest(database, wired, "1", observed_minute=8, **fields)
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(IncidentKey)) == 5


def test_held_index_rows_are_written_before_the_index_is_read_from_the_database(database, wired):
    first = ingest(database, wired, "1", display="P-1", root_cause="HOST-1")
    second = ingest(database, wired, "2", display="P-2", minute=1, root_cause="HOST-1")
    incident_id = incident_of(database, first)

    def rows_of(session, problem_id):
        statement = sa.select(sa.func.count()).where(IncidentKey.problem_id == problem_id)
        return session.scalar(statement.select_from(IncidentKey))

    with database.session(write=True) as session:
        keys = {"e:HOST-1", "n:degradation response time"}
        index = CandidateIndex(session, hold=True)
        index.remove_problem(first)
        index.add_problem(wired.workspace_id, first, incident_id, keys, fresh=True)
        assert rows_of(session, first) == 0  # held: a batch writes them in one statement
        settings = service.get_settings(db_session=session, workspace_id=wired.workspace_id)
        facts = facts_from(session.get(Problem, second))
        # No copy of the index: the lookup goes to the database, which has them first.
        hits = index.hits(workspace_id=wired.workspace_id, facts=facts, settings=settings, reached={})
        assert hits[first][0] == incident_id
        assert rows_of(session, first) == len(keys)
        index.remove_problem(second)
        index.add_problem(wired.workspace_id, second, incident_id, keys, fresh=True)
        assert rows_of(session, second) == 0
        index.write_held(stop=True)  # the batch's end
        assert rows_of(session, second) == len(keys)
        index.remove_problem(second)
        index.add_problem(wired.workspace_id, second, incident_id, keys, fresh=True)
        assert rows_of(session, second) == len(keys)  # after the end, written at once


def test_candidates_are_bounded_per_incident(database, wired, monkeypatch):
    monkeypatch.setattr("borealis.incidents.index.MAX_CANDIDATES_PER_INCIDENT", 3)
    for index in range(8):
        ingest(database, wired, str(index), display=f"P-{index}", minute=index, root_cause="HOST-1")
    with database.session() as session:
        facts = facts_from(session.get(Problem, 1))
        settings = service.get_settings(db_session=session, workspace_id=wired.workspace_id)
        candidates = CandidateIndex(session).candidates(
            workspace_id=wired.workspace_id, facts=facts, settings=settings, reached={}
        )
    assert len(candidates) == 3
    assert len({candidate.incident_id for candidate in candidates}) == 1


def test_ingesting_again_is_idempotent_for_the_incident(database, wired):
    alert = ingest(database, wired, "1", display="P-1", entities=("SERVICE-A",))
    with database.session(write=True) as session:
        on_problem_changed(db_session=session, problem_id=alert)
        on_problem_changed(db_session=session, problem_id=alert)
        session.commit()
        incident = session.get(Incident, incident_of(database, alert))
        assert [event.kind for event in service.timeline(db_session=session, incident=incident)] == ["opened"]
        assert incident.problem_count == 1


def test_a_merged_that_overtook_its_open_joins_the_related_incident_once_the_open_arrives(database, wired):
    first = ingest(database, wired, "1", **DATABASE)
    raw = encode({"ProblemID": "P-2", "PID": "2", "State": "MERGED", "ImpactedEntities": [], "Tags": ""})
    merged = ingest_raw(database, wired.connection_id, raw).alert_id
    alone = incident_of(database, merged)
    assert alone != incident_of(database, first)

    late_open = ingest(
        database, wired, "2", display="P-2", root_cause="SERVICE-DB", entities=("SERVICE-API",)
    )
    assert late_open == merged
    assert incident_of(database, merged) == incident_of(database, first)
    with database.session() as session:
        attachment = session.get(IncidentProblem, merged)
        assert attachment.problem_state == "MERGED"
        assert attachment.strategy == "root_cause"
        assert session.get(Incident, alone).merged_into_id == incident_of(database, first)
        incident = session.get(Incident, incident_of(database, first))
        assert (incident.status, incident.problem_count, incident.open_problem_count) == ("open", 2, 1)


def test_an_update_that_widens_a_problem_joins_the_incident_it_now_shares_entities_with(database, wired):
    first = ingest(database, wired, "1", **DATABASE)
    second = ingest(database, wired, "2", **ORDERS)
    apart = incident_of(database, second)
    assert apart != incident_of(database, first)

    widened = {**ORDERS, "entities": ("SERVICE-ORDERS", "SERVICE-DB"), "observed_minute": 6}
    assert ingest(database, wired, "2", **widened) == second
    assert incident_of(database, second) == incident_of(database, first)
    with database.session() as session:
        assert session.get(Incident, apart).merged_into_id == incident_of(database, first)
        incident = session.get(Incident, incident_of(database, first))
        assert (incident.status, incident.problem_count) == ("open", 2)
        kinds = [event.kind for event in service.timeline(db_session=session, incident=incident)]
        assert "merged" in kinds, kinds


def test_an_update_that_widens_a_problem_leaves_an_incident_a_person_arranged(database, wired, account):
    first = ingest(database, wired, "1", **DATABASE)
    second = ingest(database, wired, "2", **ORDERS)
    account.client.post(f"/incidents/{incident_of(database, second)}/resolve")
    account.client.post(f"/incidents/{incident_of(database, second)}/reopen")
    widened = {**ORDERS, "entities": ("SERVICE-ORDERS", "SERVICE-DB"), "observed_minute": 6}
    ingest(database, wired, "2", **widened)
    assert incident_of(database, first) != incident_of(database, second)


def test_an_update_that_changes_nothing_correlation_reads_moves_nothing(database, wired):
    first = ingest(database, wired, "1", **DATABASE)
    second = ingest(database, wired, "2", **ORDERS)
    apart = incident_of(database, second)
    ingest(database, wired, "2", **{**ORDERS, "observed_minute": 6, "severity": "ERROR"})
    assert incident_of(database, second) == apart != incident_of(database, first)
