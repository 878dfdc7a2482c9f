"""The walk as the report draws it: the path from the symptom to the cause with each hop's figures, and
the graph around it."""

from __future__ import annotations

from borealis.rca.evidence import EvidenceKind, from_millis
from borealis.rca.plan import metric_label
from borealis.rca.ranking import Ranked
from borealis.rca.report import GraphEdge, GraphNode, PathHop, Verdict, Walk
from borealis.rca.signals import Analysis

# The graph the report draws: the path, the anomalous subgraph and what hangs directly below, so many.
MAX_DRAWN_NODES = 40


def walk_of(analysis: Analysis, verdict: Verdict, top: Ranked | None) -> Walk:
    checked = sum(1 for item in analysis.evidence if item.kind is EvidenceKind.ENTITY)
    walk = analysis.walk
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
        hops.append(_hop(analysis, key, role))
    shown = list(dict.fromkeys([*path, *walk.impacted, *walk.leaves, *sorted(walk.subgraph)]))
    for key in list(shown):
        shown.extend(b for b in sorted(analysis.comp_depends.get(key, ())) if b not in shown)
    shown = shown[:MAX_DRAWN_NODES]
    depth = dict(walk.depth)
    for key in shown:
        for below in analysis.comp_depends.get(key, ()):
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
                entity=analysis.entity_of(key),
                state=state,
                impacted=key in walk.impacted,
                depth=depth.get(key, 0),
            )
        )
    drawn = set(shown)
    edges = [
        GraphEdge(source=analysis.entity_of(a).id, target=analysis.entity_of(b).id)
        for a in shown
        for b in sorted(analysis.comp_depends.get(a, ()))
        if b in drawn
    ]
    return Walk(path=hops, nodes=nodes, edges=edges, entities_checked=checked)


def _hop(analysis: Analysis, key: str, role: str) -> PathHop:
    walk = analysis.walk
    assert walk is not None
    node = walk.nodes.get(key)
    anomaly = node.strongest() if node else None
    entity = analysis.entity_of(key)
    if anomaly is None:
        series = next(
            (
                item
                for item in analysis.evidence
                if item.kind is EvidenceKind.METRIC
                and item.entity
                and analysis.components.find(item.entity.id) == key
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
        series = analysis.by_id[anomaly.evidence_id]
        figure = analysis.figure(anomaly)
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


def path_text(analysis: Analysis, top: Ranked) -> str:
    """``checkout-api → payment-svc → payments-db`` with each hop's figure."""
    walk = analysis.walk
    if walk is None or not walk.applies or top.key not in walk.subgraph:
        return ""
    keys = walk.path_to(top.key)
    if len(keys) < 2:
        return ""
    parts = []
    for key in keys:
        node = walk.nodes.get(key)
        anomaly = node.strongest() if node else None
        name = analysis.entity_of(key).name or key
        parts.append(f"{name} ({analysis.figure(anomaly)})" if anomaly else name)
    return " → ".join(parts)
