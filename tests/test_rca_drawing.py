"""The walk's drawings: graph layout by depth, bounded size, sparkline geometry, escaped names."""

from __future__ import annotations

from datetime import UTC, datetime

from borealis.rca.evidence import EntityRef
from borealis.rca.report import GraphEdge, GraphNode, PathHop, Walk
from borealis.web import drawing
from borealis.web.templating import ENVIRONMENT

T0 = 1_767_000_000_000  # a minute boundary, UTC milliseconds
MINUTE = 60_000


def ref(key: str, name: str | None = None, kind: str = "SERVICE") -> EntityRef:
    return EntityRef(id=f"{kind}-{key:0>16}", name=name or key, type=kind)


FRONTEND = ref("A1", "frontend")
CHECKOUT = ref("A2", "checkout")
DATABASE = ref("A3", "orders-db", "PROCESS_GROUP_INSTANCE")


def hop(entity: EntityRef, role: str, **fields) -> PathHop:
    return PathHop(entity=entity, role=role, figure=f"{entity.name} is slow", **fields)


def three_hops(**walk_fields) -> Walk:
    return Walk(
        path=[hop(FRONTEND, "symptom"), hop(CHECKOUT, "path"), hop(DATABASE, "cause")],
        nodes=[
            GraphNode(entity=FRONTEND, state="anomalous", impacted=True, depth=0),
            GraphNode(entity=CHECKOUT, state="anomalous", depth=1),
            GraphNode(entity=DATABASE, state="cause", depth=2),
        ],
        edges=[
            GraphEdge(source=FRONTEND.id, target=CHECKOUT.id),
            GraphEdge(source=CHECKOUT.id, target=DATABASE.id),
        ],
        **walk_fields,
    )


def by_id(graph: drawing.Graph) -> dict[str, drawing.NodeBox]:
    return {node.id: node for node in graph.nodes}


# --- the graph --------------------------------------------------------------------------------------


def test_nodes_are_laid_out_by_depth_from_the_symptom_down_to_the_cause():
    walk = three_hops()
    walk.nodes += [
        GraphNode(entity=ref("B1", "payments"), state="healthy", depth=1),
        GraphNode(entity=ref("B2", "cache", "HOST"), state="not_checked", depth=2),
    ]
    graph = drawing.graph(walk)
    nodes = by_id(graph)
    assert nodes[FRONTEND.id].y < nodes[CHECKOUT.id].y < nodes[DATABASE.id].y
    # One row per depth here: siblings share their depth's row.
    assert nodes[ref("B1").id].y == nodes[CHECKOUT.id].y
    assert nodes[ref("B2", kind="HOST").id].y == nodes[DATABASE.id].y
    assert [nodes[e.id].role for e in (FRONTEND, CHECKOUT, DATABASE)] == ["symptom", "path", "cause"]
    assert nodes[DATABASE.id].state == "cause"
    # Every box inside the drawing, none overlapping another.
    for node in graph.nodes:
        assert node.x >= 0
        assert node.x + node.width <= graph.width
        assert node.y >= 0
        assert node.y + node.height <= graph.height
    boxes = sorted((node.y, node.x) for node in graph.nodes)
    assert len(set(boxes)) == len(boxes)
    assert graph.states == ["cause", "anomalous", "healthy", "not_checked"]


def test_path_edges_join_box_edges_and_are_told_apart():
    graph = drawing.graph(three_hops())
    nodes = by_id(graph)
    assert len(graph.edges) == 2
    assert all(edge.on_path for edge in graph.edges)
    first = next(edge for edge in graph.edges if edge.source == FRONTEND.id)
    source, target = nodes[FRONTEND.id], nodes[CHECKOUT.id]
    # From the bottom of the dependent to the top of what it depends on.
    assert first.y1 == source.y + source.height
    assert first.y2 == target.y


def test_a_path_step_missing_from_the_edges_and_nodes_is_still_drawn():
    walk = three_hops()
    walk.edges = []
    walk.nodes = walk.nodes[:1]
    graph = drawing.graph(walk)
    assert {node.id for node in graph.nodes} == {FRONTEND.id, CHECKOUT.id, DATABASE.id}
    assert by_id(graph)[DATABASE.id].state == "cause"
    assert [(e.source, e.target) for e in graph.edges] == [
        (FRONTEND.id, CHECKOUT.id),
        (CHECKOUT.id, DATABASE.id),
    ]


def test_a_big_walk_is_bounded_and_says_how_many_more_were_checked():
    walk = three_hops()
    walk.nodes += [
        GraphNode(entity=ref(f"C{index}", f"healthy-{index}"), state="healthy", depth=1 + index % 3)
        for index in range(70)
    ]
    walk.nodes += [
        GraphNode(entity=ref(f"D{index}", f"unseen-{index}"), state="not_checked", depth=3)
        for index in range(10)
    ]
    walk.nodes += [
        GraphNode(entity=ref(f"E{index}", f"hot-{index}"), state="anomalous", depth=2) for index in range(30)
    ]
    # A neighbour of the path is among the others shown, however late it comes.
    walk.nodes.append(GraphNode(entity=ref("F1", "neighbour"), state="not_checked", depth=4))
    walk.edges.append(GraphEdge(source=DATABASE.id, target=ref("F1").id))
    graph = drawing.graph(walk)
    shown = {node.id for node in graph.nodes}
    assert len(graph.nodes) == 3 + drawing.MAX_ANOMALOUS + drawing.MAX_OTHERS
    assert {FRONTEND.id, CHECKOUT.id, DATABASE.id, ref("F1").id} <= shown
    assert graph.hidden_total == len(walk.nodes) - len(graph.nodes)
    assert graph.hidden == {"anomalous": 5, "healthy": 46, "not_checked": 10}
    assert graph.hidden_text == "61 more entities are not drawn: 5 anomalous, 46 healthy, 10 not checked."
    assert graph.summary == (
        f"Dependency graph of {len(graph.nodes)} entities; the path: frontend (symptom, anomalous) → "
        f"checkout (anomalous) → orders-db (cause). {graph.hidden_text}"
    )
    # Wide depths wrap: never more than COLUMNS boxes side by side.
    rows: dict[float, int] = {}
    for node in graph.nodes:
        rows[node.y] = rows.get(node.y, 0) + 1
    assert max(rows.values()) <= drawing.COLUMNS
    assert graph.width == 2 * drawing.MARGIN + 3 * drawing.NODE_WIDTH + 2 * drawing.GAP_X
    # Edges only between drawn nodes.
    assert all(edge.source in shown and edge.target in shown for edge in graph.edges)


def test_the_path_node_sits_in_the_middle_of_its_row():
    walk = three_hops()
    walk.nodes += [GraphNode(entity=ref(f"G{i}", f"sib-{i}"), state="healthy", depth=1) for i in range(2)]
    graph = drawing.graph(walk)
    row = sorted((n for n in graph.nodes if n.y == by_id(graph)[CHECKOUT.id].y), key=lambda n: n.x)
    assert [n.id for n in row].index(CHECKOUT.id) == 1


def test_long_names_are_shortened_and_the_title_keeps_the_whole_label():
    long = ref("H1", "checkout-service-eu-west-1-production-blue")
    walk = three_hops()
    walk.nodes.append(GraphNode(entity=long, state="healthy", depth=1))
    node = by_id(drawing.graph(walk))[long.id]
    assert drawing.text_width(node.name, drawing.NAME_SIZE) <= drawing.NARROW_ROOM
    assert node.name.endswith("…")
    assert long.label in node.title
    assert (
        by_id(drawing.graph(walk))[CHECKOUT.id].title
        == f"{CHECKOUT.label} · SERVICE · anomalous · on the path"
    )
    assert "healthy" in node.title
    # Wide characters take more room: fewer of them fit.
    hosts = drawing.fit("HOST-1B1B1B1B1B1B1B1B", drawing.NAME_ROOM)
    lower = drawing.fit("host-ababababababababab", drawing.NAME_ROOM)
    assert hosts.endswith("…")
    assert len(hosts) < len(lower)
    assert drawing.fit("orders-db", drawing.NAME_ROOM) == "orders-db"
    assert len(drawing.fit("orders-db-primary-a", 80, bold=True)) < len(
        drawing.fit("orders-db-primary-a", 80)
    )


def test_without_a_path_nothing_is_drawn():
    assert drawing.draw(Walk()) is None
    assert drawing.draw(None) is None
    assert drawing.draw(Walk(nodes=three_hops().nodes)) is None


# --- sparklines -------------------------------------------------------------------------------------


def test_a_sparkline_breaks_at_nulls_and_places_band_and_onset():
    series = hop(
        DATABASE,
        "cause",
        timestamps=[T0 + i * MINUTE for i in range(7)],
        values=[10.0, 12.0, None, 11.0, 50.0, None, 90.0],
        baseline=11.0,
        baseline_low=8.0,
        baseline_high=14.0,
        onset=datetime.fromtimestamp((T0 + 4 * MINUTE) / 1000, tz=UTC),
    )
    # Inside a 4-unit padding: 100 wide for six minutes, 50 high for the values 8 (the band's floor) to 90.
    spark = drawing.sparkline(series, width=108, height=58)
    assert spark.lines == ["4,52.8 20.7,51.6", "54,52.2 70.7,28.4"]
    # The last point stands alone after a gap: a dot, at the top right.
    assert spark.dots == [(104, 4)]
    assert spark.band == (50.3, 3.7)
    assert spark.baseline_y == 52.2
    assert spark.onset_x == 70.7
    assert spark.label == f"orders-db (cause): {series.figure}"


def test_a_sparkline_without_data_or_band_draws_what_it_can():
    empty = drawing.sparkline(hop(DATABASE, "cause"))
    assert not empty.drawn
    assert empty.band is None
    assert empty.onset_x is None
    flat = drawing.sparkline(hop(DATABASE, "cause", timestamps=[T0, T0 + MINUTE], values=[5.0, 5.0]))
    assert flat.drawn
    assert flat.band is None
    ys = {point.split(",")[1] for point in flat.lines[0].split()}
    assert ys == {f"{flat.height / 2:g}"}
    # A normal range too narrow to see next to the excursion still shows, as a thin strip around it.
    thin = drawing.sparkline(
        hop(
            DATABASE,
            "cause",
            timestamps=[T0, T0 + MINUTE],
            values=[10.0, 1000.0],
            baseline_low=9.0,
            baseline_high=11.0,
        ),
        height=58,
    )
    assert thin.band == (52.5, drawing.MIN_BAND)
    # An onset outside the series is not drawn.
    late = drawing.sparkline(
        hop(
            DATABASE,
            "cause",
            timestamps=[T0, T0 + MINUTE],
            values=[1.0, 2.0],
            onset=datetime.fromtimestamp((T0 + 9 * MINUTE) / 1000, tz=UTC),
        )
    )
    assert late.onset_x is None


# --- escaping ---------------------------------------------------------------------------------------


def test_names_from_dynatrace_come_out_escaped():
    evil = EntityRef(id="SERVICE-00000000000000EE", name='<script>alert("x")</script>', type="SERVICE")
    walk = three_hops(calls=12, entities_checked=7)
    walk.path[2] = PathHop(
        entity=evil,
        role="cause",
        figure="<b>figure</b>",
        timestamps=[T0, T0 + MINUTE],
        values=[1.0, 2.0],
    )
    walk.nodes[2] = GraphNode(entity=evil, state="cause", depth=2)
    walk.edges[1] = GraphEdge(source=CHECKOUT.id, target=evil.id)
    section = ENVIRONMENT.get_template("_walk.html").module.walk_section  # type: ignore[attr-defined]
    html = str(section(drawing.draw(walk), lambda ids: ""))
    assert "<script" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;figure&lt;/b&gt;" in html
    assert "12 Dynatrace API calls, 7 entities checked" in html
    assert 'data-state="cause"' in html
