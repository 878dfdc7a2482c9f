"""Enrichment of problems from the API, through the live server, the real job worker and the fake
Dynatrace: details and entities stored, missing scopes and API errors recorded, the entity cache feeding
correlation."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from borealis.app import make_secret_box
from borealis.dynatrace import entities
from borealis.dynatrace import service as dynatrace_service
from borealis.dynatrace.capped import api_client
from borealis.dynatrace.entities import CachedEntities
from borealis.dynatrace.models import CachedEntity, EntityRelation
from borealis.incidents.topology import use_topology_source
from borealis.simulation import ALL_SCOPES
from tests.support.sync import (
    closed,
    connect,
    deliver,
    entity,
    history,
    jobs,
    problems,
    settled,
    webhook_for,
)
from tests.support.waiting import wait_until

EVIDENCE = {
    "totalCount": 1,
    "details": [
        {
            "evidenceType": "EVENT",
            "displayName": "Response time degradation",
            "entity": {"entityId": {"id": "SERVICE-DB", "type": "SERVICE"}, "name": "orders-db"},
            "rootCauseRelevant": True,
            "startTime": 0,
        }
    ],
}
IMPACT = {"impacts": [{"impactType": "SERVICE", "estimatedAffectedUsers": 120}]}
COMMENTS = {"totalCount": 1, "comments": [{"id": "1", "content": "looking", "createdAtTimestamp": 0}]}


def connect_and_backfill(account, fake, database, scopes=ALL_SCOPES) -> None:
    """Connect, and let the backfill finish so it cannot race the enrichment under test."""
    connect(account, fake, scopes=scopes)
    wait_until(lambda: settled(database, "dynatrace.backfill"), what="the backfill")


def enriched(database) -> list:
    return wait_until(lambda: settled(database, "problem.enrich"), what="enrichment to finish")


def enrichment(account, alert_id: int) -> dict[str, Any]:
    response = account.client.get(f"/dynatrace/alerts/{alert_id}/enrichment")
    assert response.status_code == 200, response.text
    return response.json()


def a_problem(fake, **fields: Any) -> dict[str, Any]:
    problem = fake.add_problem(**fields)
    start = problem["startTime"]
    problem.setdefault(
        "evidenceDetails", EVIDENCE | {"details": [EVIDENCE["details"][0] | {"startTime": start}]}
    )
    problem.setdefault("impactAnalysis", IMPACT)
    problem.setdefault("recentComments", COMMENTS)
    return problem


def topology(fake) -> None:
    """orders (a service) calls orders-db; orders-db runs on a host."""
    fake.add_entity(
        "SERVICE-ORDERS",
        "orders",
        fromRelationships={"calls": [{"id": "SERVICE-DB", "type": "SERVICE"}]},
    )
    fake.add_entity(
        "SERVICE-DB",
        "orders-db",
        fromRelationships={"runsOnHost": [{"id": "HOST-DB", "type": "HOST"}]},
        toRelationships={"calls": [{"id": "SERVICE-ORDERS", "type": "SERVICE"}]},
    )


def test_new_problem_gets_its_details_and_entities(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    topology(fake_dynatrace)
    problem = a_problem(
        fake_dynatrace,
        title="Orders slow",
        impactedEntities=[entity("SERVICE-ORDERS", "orders")],
        rootCauseEntity=entity("SERVICE-DB", "orders-db"),
    )
    alert_id = deliver(account, webhook_for(problem))["alertId"]

    [job] = enriched(database)
    assert job.state == "done", job.last_error
    body = enrichment(account, alert_id)
    assert body["status"] == "complete"
    assert body["notFetched"] == []
    assert body["details"]["evidenceDetails"]["details"][0]["displayName"] == "Response time degradation"
    assert body["details"]["impactAnalysis"] == IMPACT
    assert body["details"]["recentComments"]["comments"][0]["content"] == "looking"
    assert [item["entityId"] for item in body["entities"]] == ["SERVICE-DB", "SERVICE-ORDERS"]

    [details_call] = fake_dynatrace.requests_to(f"/api/v2/problems/{problem['problemId']}")
    assert details_call.params["fields"] == "evidenceDetails,impactAnalysis,recentComments"
    entity_call = fake_dynatrace.requests_to("/api/v2/entities/SERVICE-DB")[0]
    assert "+fromRelationships" in entity_call.params["fields"]
    with database.session() as session:
        edges = set(
            session.execute(
                sa.select(EntityRelation.from_entity_id, EntityRelation.relation, EntityRelation.to_entity_id)
            )
        )
    assert edges == {
        ("SERVICE-ORDERS", "calls", "SERVICE-DB"),
        ("SERVICE-DB", "runsOnHost", "HOST-DB"),
    }


def test_a_burst_of_deliveries_makes_one_fetch(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    problem = a_problem(fake_dynatrace, title="Flapping", impactedEntities=[entity("HOST-1", "web-1")])
    outcomes = []
    for step in range(4):
        body = webhook_for(problem)
        # Each delivery carries newer evidence, so each one updates the problem.
        body["ProblemDetailsJSONv2"] = problem | {
            "evidenceDetails": {
                "totalCount": 1,
                "details": [{"startTime": problem["startTime"] + step * 1000}],
            }
        }
        outcomes.append(deliver(account, body)["outcome"])
    assert outcomes == ["created", "updated", "updated", "updated"]

    [job] = enriched(database)
    assert job.state == "done"
    assert len(fake_dynatrace.requests_to(f"/api/v2/problems/{problem['problemId']}")) == 1


def test_missing_entities_scope_is_recorded_not_fatal(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect_and_backfill(
        account, fake_dynatrace, database, scopes=[scope for scope in ALL_SCOPES if scope != "entities.read"]
    )
    topology(fake_dynatrace)
    problem = a_problem(
        fake_dynatrace,
        impactedEntities=[entity("SERVICE-ORDERS", "orders")],
        rootCauseEntity=entity("SERVICE-DB", "orders-db"),
    )
    alert_id = deliver(account, webhook_for(problem))["alertId"]

    [job] = enriched(database)
    assert job.state == "done"
    body = enrichment(account, alert_id)
    assert body["status"] == "partial"
    assert body["details"]["problemId"] == problem["problemId"]
    [missing] = body["notFetched"]
    assert missing["scope"] == "entities.read"
    assert missing["what"] == "2 entities and their relationships"
    assert "entities.read" in missing["reason"]
    assert not [r for r in fake_dynatrace.requests if r.path.startswith("/api/v2/entities")]


def test_without_any_read_scope_nothing_is_fetched_and_the_reasons_are_kept(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database, scopes=["events.read"])
    problem = a_problem(fake_dynatrace, impactedEntities=[entity("HOST-1", "web-1")])
    alert_id = deliver(account, webhook_for(problem))["alertId"]

    [job] = enriched(database)
    assert job.state == "done"
    body = enrichment(account, alert_id)
    assert body["status"] == "none"
    assert [item["scope"] for item in body["notFetched"]] == ["problems.read", "entities.read"]


def test_api_errors_are_recorded_and_retried(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    problem = a_problem(
        fake_dynatrace,
        impactedEntities=[entity("SERVICE-GONE", "gone")],
        rootCauseEntity=entity("SERVICE-DB", "orders-db"),
    )
    topology(fake_dynatrace)
    fake_dynatrace.fail(f"/api/v2/problems/{problem['problemId']}", 503, times=1)
    alert_id = deliver(account, webhook_for(problem))["alertId"]

    def retrying():
        found = jobs(database, "problem.enrich")
        return found if found and found[0].last_error else None

    [job] = wait_until(retrying, what="the first attempt to fail")
    assert job.state in ("queued", "running")
    assert "503" in job.last_error
    first = enrichment(account, alert_id)
    assert first["status"] == "partial"
    assert "503" in first["notFetched"][0]["reason"]

    [job] = wait_until(lambda: settled(database, "problem.enrich"), timeout=120, what="the retry")
    assert (job.state, job.attempts) == ("done", 2)
    body = enrichment(account, alert_id)
    assert body["details"]["problemId"] == problem["problemId"]
    [gone] = body["notFetched"]
    assert gone["what"] == "entity SERVICE-GONE"
    assert "does not know" in gone["reason"]
    assert [item["entityId"] for item in body["entities"]] == ["SERVICE-DB"]


def test_an_error_only_the_user_can_fix_is_recorded_without_a_retry(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    problem = a_problem(fake_dynatrace, rootCauseEntity=entity("SERVICE-DB", "orders-db"))
    topology(fake_dynatrace)
    fake_dynatrace.fail(f"/api/v2/problems/{problem['problemId']}", html=True)
    alert_id = deliver(account, webhook_for(problem))["alertId"]

    [job] = enriched(database)
    assert (job.state, job.attempts) == ("done", 1)
    body = enrichment(account, alert_id)
    [details] = body["notFetched"]
    assert details["what"].startswith("problem details")
    assert "not a Dynatrace environment API" in details["reason"]


def test_details_correct_the_record_as_an_api_notification(
    account, fake_dynatrace, database, background_worker
):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    problem = a_problem(
        fake_dynatrace,
        title="Checkout errors",
        impactedEntities=[entity("SERVICE-ORDERS", "orders")],
        rootCauseEntity=entity("SERVICE-DB", "orders-db"),
    )
    body = webhook_for(problem)
    del body["ProblemDetailsJSONv2"]  # an older template: no details, so no root cause
    alert_id = deliver(account, body)["alertId"]
    assert problems(database)[0].root_cause_entity_id is None

    [job] = enriched(database)
    assert job.result["corrected"] == 1
    [stored] = problems(database)
    assert stored.root_cause_entity_id == "SERVICE-DB"
    assert history(database, alert_id) == [("webhook", "OPEN"), ("api", "OPEN")]
    assert len(jobs(database, "problem.enrich")) == 1, "its own correction asks for no second enrichment"


def test_cached_topology_joins_incidents_of_related_services(
    account, fake_dynatrace, database, background_worker
):
    use_topology_source(None)  # the entity cache; another test may have swapped the source
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    topology(fake_dynatrace)
    front = a_problem(
        fake_dynatrace, title="Orders slow", impactedEntities=[entity("SERVICE-ORDERS", "orders")]
    )
    back = a_problem(
        fake_dynatrace,
        title="Database connection pool exhausted",
        impactedEntities=[entity("SERVICE-DB", "orders-db")],
        severityLevel="RESOURCE_CONTENTION",
    )
    first = deliver(account, webhook_for(front))["alertId"]
    second = deliver(account, webhook_for(back))["alertId"]

    def incident_of(alert_id: int) -> int:
        return account.client.get(f"/dynatrace/alerts/{alert_id}").json()["incidentId"]

    assert incident_of(first) != incident_of(second), "nothing relates them before the topology is known"
    enriched(database)
    assert incident_of(first) == incident_of(second)
    incident = account.client.get(f"/incidents/{incident_of(first)}").json()
    assert "topology" in str(incident).lower()


def test_entities_are_fetched_once_while_cached(account, fake_dynatrace, database, background_worker):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    topology(fake_dynatrace)
    for title in ("First", "Second"):
        problem = a_problem(fake_dynatrace, title=title, impactedEntities=[entity("SERVICE-DB", "orders-db")])
        deliver(account, webhook_for(problem))
        enriched(database)

    assert len(fake_dynatrace.requests_to("/api/v2/entities/SERVICE-DB")) == 1
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CachedEntity)) == 1


def test_a_problem_that_arrives_ended_asks_for_no_enrichment(account, fake_dynatrace, database):
    connect(account, fake_dynatrace)
    problem = a_problem(fake_dynatrace, impactedEntities=[entity("HOST-1", "web-1")])
    closed(problem)
    deliver(account, webhook_for(problem, "RESOLVED"))
    assert jobs(database, "problem.enrich") == []


def test_enrichment_of_an_unknown_alert_is_404(account):
    response = account.client.get("/dynatrace/alerts/999999/enrichment")
    assert response.status_code == 404
    assert "GET /dynatrace/alerts" in response.json()["error"]["message"]


def test_cached_entities_answer_later_readers_without_a_call(
    account, fake_dynatrace, database, background_worker, settings
):
    background_worker()
    connect_and_backfill(account, fake_dynatrace, database)
    topology(fake_dynatrace)
    problem = a_problem(fake_dynatrace, impactedEntities=[entity("SERVICE-DB", "orders-db")])
    deliver(account, webhook_for(problem))
    enriched(database)
    calls = len(fake_dynatrace.requests_to("/api/v2/entities/SERVICE-DB"))

    with database.session() as session:
        connection = dynatrace_service.get(db_session=session, workspace_id=account.workspace_id)
        cached = entities.cached_entities(
            db_session=session, connection_id=connection.id, entity_ids=["SERVICE-DB", "SERVICE-ORDERS"]
        )
        client = api_client(connection=connection, settings=settings, secret_box=make_secret_box(settings))
    with client:
        source = CachedEntities(client, cached)
        assert source.get_entity("SERVICE-DB")["displayName"] == "orders-db"
        assert len(fake_dynatrace.requests_to("/api/v2/entities/SERVICE-DB")) == calls
        assert source.get_entity("SERVICE-ORDERS")["displayName"] == "orders"  # not cached: asked
        assert len(fake_dynatrace.requests_to("/api/v2/entities/SERVICE-ORDERS")) == 1
