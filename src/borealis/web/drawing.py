"""Geometry of the RCA walk drawings: the dependency graph around the path, and one sparkline per hop.

Pure (no markup, no database): the template only places what this computes, so the layout is tested
without a browser, and Jinja's autoescaping stays the one way entity names (Dynatrace data, anything at
all) reach the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import TypeGuard

from borealis.rca.evidence import EntityRef
from borealis.rca.report import GraphEdge, GraphNode, NodeState, PathHop, Walk

# Nodes side by side in one row: three still read on a phone once the drawing is scaled to fit it.
COLUMNS = 3
NODE_WIDTH = 150
NODE_HEIGHT = 44
GAP_X = 16
GAP_Y = 36
MARGIN = 8
# The node's name line: font size (as in borealis.css) and the room inside a box, less inside a pill's
# rounded ends or the cause's double outline; a longer name is cut, the <title> keeps the whole label.
NAME_SIZE = 13
NAME_ROOM = NODE_WIDTH - 10
NARROW_ROOM = NODE_WIDTH - 16
# A walk may reach ~100 entities: beyond the path, the anomalous ones and these many others, a count.
MAX_ANOMALOUS = 25
MAX_OTHERS = 25

SPARK_WIDTH = 240
SPARK_HEIGHT = 56
SPARK_PAD = 4
MIN_BAND = 3

STATE_LABELS: dict[str, str] = {
    "cause": "cause",
    "anomalous": "anomalous",
    "healthy": "healthy",
    "not_checked": "not checked",
}
# Row order inside one depth: the trouble first, what was not looked at last.
_STATE_RANK = {"cause": 0, "anomalous": 1, "healthy": 2, "not_checked": 3}


@dataclass(frozen=True)
class NodeBox:
    """One drawn entity: its box's top-left corner, and the text it shows."""

    id: str
    # The name as drawn (shortened), the whole name, and the name with the id.
    name: str
    full_name: str
    label: str
    type: str | None
    state: NodeState
    impacted: bool
    depth: int
    # "symptom", "path" or "cause" for the hops of the path; None for the nodes around it.
    role: str | None
    x: float
    y: float
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT

    @property
    def on_path(self) -> bool:
        return self.role is not None

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def role_and_state(self) -> str:
        """How the node's second line reads: the symptom says so, the cause says only that."""
        words = [STATE_LABELS[self.state]]
        if self.role == "symptom":
            words.insert(0, "symptom")
        elif self.impacted:
            words.append("impacted")
        return ", ".join(words)

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    @property
    def title(self) -> str:
        """The tooltip: everything the truncated name leaves out."""
        parts = [self.label]
        if self.type:
            parts.append(self.type)
        parts.append(self.state_label)
        if self.role:
            parts.append(_ROLE_WORDS[self.role])
        if self.impacted:
            parts.append("impacted")
        return " · ".join(parts)


@dataclass(frozen=True)
class EdgeLine:
    """``source`` depends on ``target``: a line from box edge to box edge, the arrow at the target."""

    source: str
    target: str
    x1: float
    y1: float
    x2: float
    y2: float
    on_path: bool


@dataclass(frozen=True)
class Graph:
    width: float
    height: float
    nodes: list[NodeBox]
    edges: list[EdgeLine]
    # Entities of the walk left out of the drawing, by state.
    hidden: dict[str, int] = field(default_factory=dict)

    @property
    def hidden_total(self) -> int:
        return sum(self.hidden.values())

    @property
    def hidden_text(self) -> str:
        """What the drawing leaves out, in a sentence; empty when it leaves nothing out."""
        total = self.hidden_total
        if not total:
            return ""
        parts = [f"{count} {STATE_LABELS[state]}" for state, count in self.hidden.items() if count]
        noun = "entity is" if total == 1 else "entities are"
        return f"{total} more {noun} not drawn: {', '.join(parts)}."

    @property
    def states(self) -> list[str]:
        """The states drawn, in legend order."""
        present = {node.state for node in self.nodes}
        return [state for state in _STATE_RANK if state in present]

    @property
    def summary(self) -> str:
        """The drawing in words, for those who cannot see it."""
        path = [node for node in self.nodes if node.on_path]
        path.sort(key=lambda node: _ROLE_RANK.get(node.role or "", 1))
        words = f"Dependency graph of {len(self.nodes)} entities"
        if path:
            words += "; the path: " + " → ".join(f"{node.full_name} ({node.role_and_state})" for node in path)
        return f"{words}. {self.hidden_text}".strip()


_ROLE_RANK = {"symptom": 0, "path": 1, "cause": 2}
_ROLE_WORDS = {"symptom": "the symptom", "path": "on the path", "cause": "the cause the walk found"}


# Character widths in em, generous for the widest sans-serif fonts a browser may pick (DejaVu Sans):
# the server has no font metrics, and a name cut a little early beats one spilling out of its box.
_NARROW = set("ijl.,:;'|! ")
_SEMI = set('frtI-/\\()[]{}"`*')
_WIDE = set("mwMW%@&…")


def _em(char: str) -> float:
    if char in _NARROW:
        return 0.32
    if char in _SEMI:
        return 0.44
    if char in _WIDE:
        return 1.0
    if char.isupper():
        return 0.75
    if char.isdigit():
        return 0.64
    if ord(char) >= 0x2E80:
        # CJK and the like: full width.
        return 1.0
    return 0.63


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """An upper estimate of the text's width in pixels at ``size``."""
    return sum(_em(char) for char in text) * size * (1.12 if bold else 1.0)


def fit(text: str, room: float, size: float = NAME_SIZE, *, bold: bool = False) -> str:
    """``text`` on one line, cut with an ellipsis where it would overflow ``room`` pixels."""
    text = " ".join(text.split())
    if text_width(text, size, bold=bold) <= room:
        return text
    room -= text_width("…", size, bold=bold)
    cut = ""
    for char in text:
        if text_width(cut + char, size, bold=bold) > room:
            break
        cut += char
    return cut.rstrip(" -_./:") + "…"


def _name(entity: EntityRef) -> str:
    return entity.name or entity.id


def _chosen(walk: Walk) -> tuple[list[GraphNode], dict[str, str], dict[str, int]]:
    """The nodes to draw (path, cause and anomalous ones, then the most telling others), their roles on
    the path, and how many of each state are left out."""
    roles: dict[str, str] = {}
    for hop in walk.path:
        roles.setdefault(hop.entity.id, hop.role)
    nodes: dict[str, GraphNode] = {}
    for node in walk.nodes:
        nodes.setdefault(node.entity.id, node)
    # A hop the graph does not list is still drawn, where the path puts it.
    for index, hop in enumerate(walk.path):
        if hop.entity.id not in nodes:
            state: NodeState = "cause" if hop.role == "cause" else "anomalous"
            nodes[hop.entity.id] = GraphNode(entity=hop.entity, state=state, impacted=False, depth=index)
    order = {node_id: index for index, node_id in enumerate(nodes)}
    on_path = [nodes[node_id] for node_id in roles]
    troubled = [
        node
        for node in nodes.values()
        if node.entity.id not in roles and node.state in ("cause", "anomalous")
    ]
    # A cause off the path first, then the anomalous nodes nearest the symptom.
    troubled.sort(key=lambda node: (node.state != "cause", node.depth, order[node.entity.id]))
    troubled = troubled[:MAX_ANOMALOUS]
    drawn = {node.entity.id for node in on_path + troubled}
    neighbours = {
        other
        for edge in walk.edges
        for one, other in ((edge.source, edge.target), (edge.target, edge.source))
        if one in roles
    }
    others = [node for node in nodes.values() if node.entity.id not in drawn]
    # Neighbours of the path tell most, then impacted entities, then what was checked.
    others.sort(
        key=lambda node: (
            node.entity.id not in neighbours,
            not node.impacted,
            node.state == "not_checked",
            node.depth,
            order[node.entity.id],
        )
    )
    chosen = on_path + troubled + others[:MAX_OTHERS]
    shown = {node.entity.id for node in chosen}
    left_out = [node.state for node in nodes.values() if node.entity.id not in shown]
    hidden = {state: left_out.count(state) for state in _STATE_RANK if state in left_out}
    return chosen, roles, hidden


def _rows(chosen: Sequence[GraphNode], roles: dict[str, str]) -> list[list[GraphNode]]:
    """The drawing's rows, top to bottom: one depth after another, a wide depth wrapped over several
    rows, the path's node in the middle of its depth's first row so the path runs straight down."""
    by_depth: dict[int, list[GraphNode]] = {}
    for node in chosen:
        by_depth.setdefault(max(node.depth, 0), []).append(node)
    rows: list[list[GraphNode]] = []
    for depth in sorted(by_depth):
        group = sorted(
            by_depth[depth],
            key=lambda node: (node.entity.id not in roles, _STATE_RANK[node.state]),
        )
        while group:
            row, group = group[:COLUMNS], group[COLUMNS:]
            if row[0].entity.id in roles and len(row) > 1:
                middle = len(row) // 2
                row = [*row[1 : middle + 1], row[0], *row[middle + 1 :]]
            rows.append(row)
    return rows


def _clip(box: NodeBox, towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from the box's centre towards a point leaves the box."""
    cx, cy = box.center
    dx, dy = towards[0] - cx, towards[1] - cy
    if dx == 0 and dy == 0:
        return cx, cy
    scale = min(
        (box.width / 2) / abs(dx) if dx else math.inf,
        (box.height / 2) / abs(dy) if dy else math.inf,
    )
    return round(cx + dx * scale, 1), round(cy + dy * scale, 1)


def _edges(walk: Walk, boxes: dict[str, NodeBox]) -> list[EdgeLine]:
    path_ids = [hop.entity.id for hop in walk.path]
    path_pairs = {frozenset(pair) for pair in pairwise(path_ids) if pair[0] != pair[1]}
    wanted: list[GraphEdge] = list(walk.edges)
    # The path is drawn joined up even where the graph's edges miss a step.
    present = {frozenset((edge.source, edge.target)) for edge in walk.edges}
    for source, target in pairwise(path_ids):
        if source != target and frozenset((source, target)) not in present:
            wanted.append(GraphEdge(source=source, target=target))
    lines: list[EdgeLine] = []
    seen: set[tuple[str, str]] = set()
    for edge in wanted:
        key = (edge.source, edge.target)
        if key in seen or edge.source == edge.target:
            continue
        seen.add(key)
        source, target = boxes.get(edge.source), boxes.get(edge.target)
        if source is None or target is None:
            continue
        x1, y1 = _clip(source, target.center)
        x2, y2 = _clip(target, source.center)
        on_path = frozenset(key) in path_pairs
        lines.append(EdgeLine(edge.source, edge.target, x1, y1, x2, y2, on_path))
    # Path edges last, so they are drawn over the others.
    lines.sort(key=lambda line: line.on_path)
    return lines


def graph(walk: Walk) -> Graph:
    """The walk's graph laid out by depth: the symptom at the top, the cause below, at most
    ``MAX_ANOMALOUS`` anomalous and ``MAX_OTHERS`` other nodes besides the path."""
    chosen, roles, hidden = _chosen(walk)
    rows = _rows(chosen, roles)
    columns = max((len(row) for row in rows), default=1)
    width = 2 * MARGIN + columns * NODE_WIDTH + (columns - 1) * GAP_X
    boxes: dict[str, NodeBox] = {}
    for index, row in enumerate(rows):
        row_width = len(row) * NODE_WIDTH + (len(row) - 1) * GAP_X
        left = (width - row_width) / 2
        y = MARGIN + index * (NODE_HEIGHT + GAP_Y)
        for column, node in enumerate(row):
            entity = node.entity
            boxes[entity.id] = NodeBox(
                id=entity.id,
                # Path nodes are drawn bold (borealis.css), so they have less room.
                name=fit(
                    _name(entity),
                    NARROW_ROOM if node.state in ("healthy", "cause") else NAME_ROOM,
                    bold=entity.id in roles,
                ),
                full_name=_name(entity),
                label=entity.label,
                type=entity.type,
                state=node.state,
                impacted=node.impacted,
                depth=node.depth,
                role=roles.get(entity.id),
                x=round(left + column * (NODE_WIDTH + GAP_X), 1),
                y=y,
            )
    height = 2 * MARGIN + len(rows) * NODE_HEIGHT + max(len(rows) - 1, 0) * GAP_Y
    ordered = [boxes[node.entity.id] for row in rows for node in row]
    return Graph(width=width, height=height, nodes=ordered, edges=_edges(walk, boxes), hidden=hidden)


@dataclass(frozen=True)
class Sparkline:
    """One hop's series: a polyline per unbroken run (a null breaks the line), the normal band, the
    onset, in a ``width`` by ``height`` box."""

    hop: PathHop
    width: int
    height: int
    lines: list[str]
    # Points with a gap on both sides: no line to draw, so a dot.
    dots: list[tuple[float, float]]
    # Top and height of the baseline band (baseline_low..baseline_high), when the report gives one.
    band: tuple[float, float] | None
    baseline_y: float | None
    onset_x: float | None

    @property
    def name(self) -> str:
        return _name(self.hop.entity)

    @property
    def label(self) -> str:
        """What the sparkline shows, in words: whose series and the hop's figure."""
        return f"{self.name} ({self.hop.role}): {self.hop.figure}"

    @property
    def drawn(self) -> bool:
        return bool(self.lines or self.dots)


def _epoch_ms(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def sparkline(hop: PathHop, *, width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT) -> Sparkline:
    """The hop's series scaled into the box; the vertical range takes in the band, so the normal range
    and the excursion from it are both in view."""
    values = list(hop.values)
    times: list[float] = [float(t) for t in hop.timestamps[: len(values)]]
    if len(times) < len(values):
        # No timestamps: the points are evenly spaced.
        times = [float(index) for index in range(len(values))]
        values = values[: len(times)]
    points = [(t, v if _finite(v) else None) for t, v in zip(times, values, strict=True)]
    known = [v for _, v in points if v is not None]
    levels = known + [v for v in (hop.baseline, hop.baseline_low, hop.baseline_high) if _finite(v)]
    if not known:
        return Sparkline(hop, width, height, [], [], None, None, None)
    low, high = min(levels), max(levels)
    if high == low:
        spread = abs(high) * 0.1 or 1.0
        low, high = low - spread, high + spread
    start, end = times[0], times[-1]

    def x_of(t: float) -> float:
        if end == start:
            return width / 2
        return round(SPARK_PAD + (t - start) / (end - start) * (width - 2 * SPARK_PAD), 1)

    def y_of(v: float) -> float:
        return round(SPARK_PAD + (high - v) / (high - low) * (height - 2 * SPARK_PAD), 1)

    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is not None:
            runs[-1].append((x_of(t), y_of(v)))
        elif runs[-1]:
            runs.append([])
    lines = [" ".join(f"{x:g},{y:g}" for x, y in run) for run in runs if len(run) > 1]
    dots = [run[0] for run in runs if len(run) == 1]
    band = None
    if _finite(hop.baseline_low) and _finite(hop.baseline_high):
        top = y_of(max(hop.baseline_low, hop.baseline_high))
        bottom = y_of(min(hop.baseline_low, hop.baseline_high))
        # Next to a tenfold excursion the normal range is a hairline: drawn never thinner than this.
        if bottom - top < MIN_BAND:
            top = min(max((top + bottom - MIN_BAND) / 2, 0), height - MIN_BAND)
            bottom = top + MIN_BAND
        band = (round(top, 1), round(bottom - top, 1))
    baseline_y = y_of(hop.baseline) if _finite(hop.baseline) else None
    onset_x = None
    if hop.onset is not None and hop.timestamps:
        onset = _epoch_ms(hop.onset)
        if start <= onset <= end:
            onset_x = x_of(onset)
    return Sparkline(hop, width, height, lines, dots, band, baseline_y, onset_x)


@dataclass(frozen=True)
class WalkDrawing:
    """Everything the incident page draws of a report's walk."""

    graph: Graph
    sparklines: list[Sparkline]
    calls: int
    entities_checked: int


def draw(walk: Walk | None) -> WalkDrawing | None:
    """The walk's drawings, or None when the report has no path to draw (older reports have none)."""
    if walk is None or not walk.path:
        return None
    return WalkDrawing(
        graph=graph(walk),
        sparklines=[sparkline(hop) for hop in walk.path],
        calls=walk.calls,
        entities_checked=walk.entities_checked,
    )
