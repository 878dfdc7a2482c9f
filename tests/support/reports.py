"""A finished RCA with a walk, stored as the RCA job stores one: what the incident page draws."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from borealis.db import Database, utcnow
from borealis.incidents.models import Incident
from borealis.rca import service as rca_service
from borealis.rca.evidence import EntityRef, Evidence, EvidenceKind
from borealis.rca.models import RcaRun, RcaStatus, RcaTrigger
from borealis.rca.report import (
    Candidate,
    Claim,
    GraphEdge,
    GraphNode,
    PathHop,
    Report,
    RootCause,
    Verdict,
    Walk,
)

FRONTEND = EntityRef(id="SERVICE-F000000000000001", name="frontend", type="SERVICE")
CHECKOUT = EntityRef(id="SERVICE-C000000000000002", name="checkout-service", type="SERVICE")
ORDERS_DB = EntityRef(
    id="PROCESS_GROUP_INSTANCE-D000000000000003", name="orders-db", type="PROCESS_GROUP_INSTANCE"
)
ONSET = datetime(2026, 12, 3, 10, 42, tzinfo=UTC)


def _series(normal: float, peak: float, *, gap_at: int | None = None) -> tuple[list[int], list[float | None]]:
    """Half an hour of normal values, then the climb from the onset on; one null where asked."""
    start = ONSET - timedelta(minutes=30)
    timestamps = [int((start + timedelta(minutes=minute)).timestamp() * 1000) for minute in range(48)]
    values: list[float | None] = [
        normal * (1 + 0.05 * ((minute * 7) % 5 - 2))
        if minute < 30
        else min(peak, normal + (peak - normal) * (minute - 29) / 6)
        for minute in range(48)
    ]
    if gap_at is not None:
        values[gap_at] = None
    return timestamps, values


def _hop(
    entity: EntityRef,
    role: str,
    figure: str,
    metric: str,
    unit: str,
    normal: float,
    peak: float,
    gap_at: int | None,
    evidence: list[str],
) -> PathHop:
    timestamps, values = _series(normal, peak, gap_at=gap_at)
    return PathHop(
        entity=entity,
        role=role,
        figure=figure,
        metric=metric,
        unit=unit,
        baseline=normal,
        baseline_low=normal * 0.85,
        baseline_high=normal * 1.15,
        peak=peak,
        onset=ONSET,
        timestamps=timestamps,
        values=values,
        evidence_ids=evidence,
    )


def walk_report() -> Report:
    """A report as the analyzer writes one with a walk: three hops from the symptom to the cause, a graph
    with nodes in every state, a ranking and two pieces of evidence."""
    path = [
        _hop(
            FRONTEND,
            "symptom",
            "response time 38 ms → 410 ms from 10:42",
            "builtin:service.response.time",
            "ms",
            38,
            410,
            12,
            ["E1"],
        ),
        _hop(
            CHECKOUT,
            "path",
            "failure rate 0.2 % → 14 % from 10:42",
            "builtin:service.errors.total.rate",
            "%",
            0.2,
            14,
            None,
            [],
        ),
        _hop(
            ORDERS_DB,
            "cause",
            "CPU usage 22 % → 97 % from 10:42",
            "builtin:tech.generic.cpu.usage",
            "%",
            22,
            97,
            40,
            ["E2"],
        ),
    ]

    def entity(key: str, name: str, kind: str = "SERVICE") -> EntityRef:
        return EntityRef(id=f"{kind}-{key:0>16}", name=name, type=kind)

    payments = entity("B1", "payments")
    inventory = entity("B2", "inventory")
    cache = entity("B3", "cache <script>alert(1)</script>")
    batch = entity("B4", "legacy-batch-reconciliation-nightly")
    host = entity("B5", "db-host-1", "HOST")
    nodes = [
        GraphNode(entity=FRONTEND, state="anomalous", impacted=True, depth=0),
        GraphNode(entity=CHECKOUT, state="anomalous", impacted=True, depth=1),
        GraphNode(entity=payments, state="healthy", depth=1),
        GraphNode(entity=inventory, state="anomalous", depth=1),
        GraphNode(entity=ORDERS_DB, state="cause", depth=2),
        GraphNode(entity=cache, state="healthy", depth=2),
        GraphNode(entity=batch, state="not_checked", depth=2),
        GraphNode(entity=host, state="healthy", depth=3),
    ]
    edges = [
        GraphEdge(source=FRONTEND.id, target=CHECKOUT.id),
        GraphEdge(source=FRONTEND.id, target=payments.id),
        GraphEdge(source=CHECKOUT.id, target=inventory.id),
        GraphEdge(source=CHECKOUT.id, target=ORDERS_DB.id),
        GraphEdge(source=CHECKOUT.id, target=cache.id),
        GraphEdge(source=payments.id, target=batch.id),
        GraphEdge(source=ORDERS_DB.id, target=host.id),
    ]
    evidence = [
        Evidence(
            id="E1",
            kind=EvidenceKind.METRIC,
            summary="frontend response time 38 ms → 410 ms",
            source="GET /api/v2/metrics/query",
            entity=FRONTEND,
            start=ONSET,
        ),
        Evidence(
            id="E2",
            kind=EvidenceKind.METRIC,
            summary="orders-db CPU 22 % → 97 %",
            source="GET /api/v2/metrics/query",
            entity=ORDERS_DB,
            start=ONSET,
        ),
    ]
    return Report(
        verdict=Verdict.LIKELY,
        summary="orders-db ran out of CPU at 10:42; checkout and then the frontend slowed down with it.",
        root_cause=RootCause(
            entity=ORDERS_DB, explanation="CPU saturation on orders-db.", evidence_ids=["E2"]
        ),
        candidates=[
            Candidate(
                entity=ORDERS_DB,
                score=0.82,
                reasons=[Claim(text="CPU 97 % from the onset", evidence_ids=["E2"])],
            ),
            Candidate(entity=CHECKOUT, score=0.41, reasons=[Claim(text="failures follow its database")]),
        ],
        walk=Walk(path=path, nodes=nodes, edges=edges, entities_checked=7, calls=23),
        evidence=evidence,
    )


def store_finished_rca(database: Database, incident_id: int, report: Report) -> None:
    """A finished run with ``report``, stored as the RCA job stores one (``finish``)."""
    now = utcnow()
    with database.session(write=True) as session:
        run = RcaRun(
            incident_id=incident_id,
            workspace_id=session.get(Incident, incident_id).workspace_id,
            status=RcaStatus.RUNNING.value,
            trigger=RcaTrigger.ON_DEMAND.value,
            run_after=now,
            started_at=now,
            attempts=1,
            created_at=now,
            updated_at=now,
        )
        session.add(run)
        session.flush()
        rca_service.finish(
            db_session=session, run=run, outcome=rca_service.Outcome(report=report, analyzer="deterministic")
        )
        session.commit()
