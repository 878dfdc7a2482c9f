"""Running the plan's steps: one query each, checked against the token's scopes and the budget, its answer
turned into evidence. A missing scope, a cap, a 429 that outlasted the client's retries, or an error becomes
a ``notChecked`` entry naming the entities it left unexamined; after a 429 the remaining calls are not
attempted (they would be refused too). The narrative's tool calls run through the same runner (``fetch``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

from borealis.dynatrace.errors import (
    DynatraceError,
    RateLimited,
    ResourceNotFound,
    ScopeMissing,
    UpstreamError,
)
from borealis.rca.anomaly import RULES, judge
from borealis.rca.book import EvidenceBook, Links
from borealis.rca.evidence import (
    CHANGE_EVENT_TYPES,
    EntityRef,
    Evidence,
    EvidenceKind,
    NotChecked,
    NotCheckedCode,
    entity_type_of,
    to_millis,
)
from borealis.rca.plan import (
    Action,
    Step,
    Window,
    entity_metrics,
    entity_selector,
    error_log_query,
    log_attribute,
)

PROBLEM_FIELDS = ("evidenceDetails", "impactAnalysis", "recentComments")
ENTITY_FIELDS = ("fromRelationships", "toRelationships", "properties", "tags")
# Failures that concern one call alone (a scope, an object, one endpoint's error). Any other Dynatrace
# error, of either group, means no further call can succeed either: a rejected token, a wrong URL or TLS
# setup, a rate limit, a timeout, no connection.
ONE_CALL = (ScopeMissing, ResourceNotFound, UpstreamError)


class EvidenceSource(Protocol):
    """The Dynatrace API calls evidence gathering needs (``DynatraceClient`` provides them)."""

    environment_url: str

    def get_problem(self, problem_id: str, fields: Sequence[str] | str | None = ...) -> dict[str, Any]: ...

    def get_entity(self, entity_id: str, fields: Sequence[str] | str | None = ...) -> dict[str, Any]: ...

    def list_entities(
        self, entity_selector: str, fields: Sequence[str] | str | None = ..., *, page_size: int = ...
    ) -> list[dict[str, Any]]: ...

    def list_events(
        self,
        from_: datetime,
        to: datetime | None = ...,
        *,
        entity_selector: str | None = ...,
        event_selector: str | None = ...,
        limit: int = ...,
    ) -> list[dict[str, Any]]: ...

    def search_logs(
        self, query: str, from_: datetime, to: datetime | None = ..., *, limit: int = ..., sort: str = ...
    ) -> list[dict[str, Any]]: ...

    def query_metrics(
        self,
        metric_selector: str,
        from_: datetime,
        to: datetime | None = ...,
        *,
        entity_selector: str | None = ...,
        resolution: str | None = ...,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Budget:
    """Upper bounds on the work of one RCA, so a huge incident costs a bounded number of API calls."""

    max_problems: int = 20
    # The walk: how far from the impacted entities, and how many entities in all.
    max_depth: int = 4
    max_entities: int = 100
    # Error logs are read for this many of the strongest suspects (one query each).
    max_log_suspects: int = 2
    max_events: int = 300
    max_log_records: int = 100
    max_calls: int = 60
    # Dynatrace's limit on the length of one entity selector, and the page size asked of the entities API.
    max_selector_chars: int = 2000
    entity_page_size: int = 500
    lookback: timedelta = timedelta(minutes=30)
    baseline: timedelta = timedelta(hours=2)


def _halt_reason(error: DynatraceError) -> str:
    if isinstance(error, RateLimited):
        return "Dynatrace was rate limiting this token (429)"
    return f"Dynatrace could not be used ({type(error).__name__})"


def _query(path: str, **params: Any) -> str:
    """The source query of an evidence item, as a reader would re-run it."""
    clean = {key: value for key, value in params.items() if value is not None}
    query = urlencode(clean, safe='(),":')
    return f"GET {path}" + (f"?{query}" if query else "")


class StepRunner:
    """Runs single steps of the plan into one ``EvidenceBook``; every call is checked against scopes and
    budget, and counted."""

    def __init__(
        self,
        source: EvidenceSource,
        *,
        window: Window,
        scopes: Sequence[str] | None = None,
        budget: Budget = Budget(),
        cached_entities: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self.source = source
        # Entity documents enrichment already fetched: read from there, no call spent.
        self.cached_entities = dict(cached_entities or {})
        self.window = window
        self.scopes = set(scopes) if scopes else None
        self.budget = budget
        self.book = EvidenceBook(Links(source.environment_url))
        self.calls = 0
        self._step_gaps: list[NotChecked] = []
        self.impacted: set[str] = set()
        self.depth_of: dict[str, int] = {}
        # Set when Dynatrace cannot answer at all (rate limit, unreachable, token refused): the calls
        # left would fail the same way, so they are not attempted.
        self.halted: tuple[str, NotCheckedCode] | None = None

    # --- running steps ----------------------------------------------------------------------------

    def _gap(
        self,
        what: str,
        reason: str,
        code: NotCheckedCode,
        scope: str | None = None,
        entity_ids: Sequence[str] = (),
    ) -> None:
        entry = NotChecked(what=what, reason=reason, code=code, scope=scope, entity_ids=list(entity_ids))
        self._step_gaps.append(self.book.gap(entry))

    def _allowed(self, step: Step) -> bool:
        what = step.describe()
        unexamined = step.targets if step.action is not Action.PROBLEM else ()
        if self.scopes is not None and step.scope not in self.scopes:
            self._gap(
                what, f"the token lacks the {step.scope} scope", "missing_scope", step.scope, unexamined
            )
            return False
        if self.halted is not None:
            reason, code = self.halted
            self._gap(what, f"not attempted: {reason}", code, entity_ids=unexamined)
            return False
        if self.calls >= self.budget.max_calls:
            self._gap(
                what,
                f"not attempted: the budget of {self.budget.max_calls} API calls was spent",
                "budget",
                entity_ids=unexamined,
            )
            return False
        return True

    def _call(self, step: Step, call: Callable[[], Any]) -> Any | None:
        """Run one API call; a failure becomes a notChecked entry and None."""
        if not self._allowed(step):
            return None
        self.calls += 1
        what = step.describe()
        unexamined = step.targets if step.action is not Action.PROBLEM else ()
        try:
            return call()
        except DynatraceError as exc:
            gap = self.book.gap(NotChecked.for_error(what, exc, unexamined))
            self._step_gaps.append(gap)
            if not isinstance(exc, ONE_CALL):
                self.halted = (_halt_reason(exc), gap.code)
        return None

    def _pages(self, count: int, page_size: int) -> None:
        """A list that came in several pages cost a call per page."""
        self.calls += max(0, -(-count // page_size) - 1)

    def run(self, step: Step) -> list[Evidence]:
        """Execute one step of the plan; returns the evidence it added."""
        before = len(self.book.items)
        handler = {
            Action.PROBLEM: self._problem,
            Action.ENTITY: self._entity,
            Action.EVENTS: self._events,
            Action.LOGS: self._logs,
            Action.METRICS: self._metrics,
        }[step.action]
        handler(step)
        return self.book.items[before:]

    def fetch(self, action: Action, target: str) -> tuple[list[Evidence], list[NotChecked]]:
        """One more query on request (the narrative's tool calls): what it added and what it could not
        check (even when that gap was already known)."""
        timed = action not in (Action.PROBLEM, Action.ENTITY)
        step = Step(
            action, (target,), self.window.start if timed else None, self.window.end if timed else None
        )
        self._step_gaps = []
        added = self.run(step)
        return added, list(self._step_gaps)

    def _problem(self, step: Step) -> None:
        pid = step.targets[0]
        body = self._call(step, lambda: self.source.get_problem(pid, fields=PROBLEM_FIELDS))
        if isinstance(body, dict):
            source = _query(f"/api/v2/problems/{pid}", fields=",".join(PROBLEM_FIELDS))
            self.book.add_problem(body, source=source)

    def _entity(self, step: Step) -> None:
        """The entities of the step with their relationships and properties: the cached ones from the
        cache, the others in one list call (as many ids as one selector holds)."""
        wanted = [e for e in step.targets if not self.book.has(f"entity:{e}")]
        missing = []
        for entity_id in wanted:
            cached = self.cached_entities.get(entity_id)
            if cached is not None:
                source = f"entity cache (filled by enrichment from GET /api/v2/entities/{entity_id})"
                self.book.add_entity(cached, source=source)
            else:
                missing.append(entity_id)
        if not missing:
            return
        fetch = Step(Action.ENTITY, tuple(missing))
        selector = entity_selector(missing)
        size = self.budget.entity_page_size
        found = self._call(
            fetch, lambda: self.source.list_entities(selector, fields=ENTITY_FIELDS, page_size=size)
        )
        if not isinstance(found, list):
            return
        self._pages(len(found), size)
        source = _query(
            "/api/v2/entities",
            entitySelector=selector,
            fields=",".join("+" + f for f in ENTITY_FIELDS),
        )
        for entity in found:
            if isinstance(entity, dict):
                self.book.add_entity(entity, source=source)
        known = {e for e in missing if self.book.has(f"entity:{e}")}
        unknown = [e for e in missing if e not in known]
        if unknown:
            self._gap(
                fetch.describe(),
                f"Dynatrace does not know {', '.join(unknown[:3])}"
                + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""),
                "not_found",
                entity_ids=unknown,
            )

    def _events(self, step: Step) -> None:
        selector = entity_selector(step.targets)
        start, end = step.start or self.window.start, step.end or self.window.end
        limit = self.budget.max_events
        events = self._call(
            step, lambda: self.source.list_events(start, end, entity_selector=selector, limit=limit)
        )
        if not isinstance(events, list):
            return
        self._pages(len(events), limit)
        source = _query(
            "/api/v2/events", **{"from": to_millis(start), "to": to_millis(end), "entitySelector": selector}
        )

        # Changes first, then what Dynatrace marks relevant, then the rest by time: the cap keeps the best.
        def priority(event: dict[str, Any]) -> tuple[int, int]:
            kind = str(event.get("eventType") or "")
            props = {
                p.get("key"): p.get("value") for p in event.get("properties") or [] if isinstance(p, dict)
            }
            relevant = str(props.get("dt.event.is_rootcause_relevant", "")).lower() == "true"
            rank = 0 if kind in CHANGE_EVENT_TYPES else 1 if relevant else 2
            return rank, int(event.get("startTime") or 0)

        for event in sorted((e for e in events if isinstance(e, dict)), key=priority)[
            : self.budget.max_events
        ]:
            self.book.add_event(event, source=source)

    def _logs(self, step: Step) -> None:
        entity_id = step.targets[0]
        if not log_attribute(entity_id):
            return
        query = error_log_query(entity_id)
        start, end = step.start or self.window.start, step.end or self.window.end
        records = self._call(
            step,
            lambda: self.source.search_logs(
                query, start, end, limit=self.budget.max_log_records, sort="-timestamp"
            ),
        )
        if not isinstance(records, list):
            return
        source = _query(
            "/api/v2/logs/search",
            **{
                "from": to_millis(start),
                "to": to_millis(end),
                "query": query,
                "limit": self.budget.max_log_records,
                "sort": "-timestamp",
            },
        )
        self.book.add_logs(
            [r for r in records if isinstance(r, dict)],
            entity=self._ref(entity_id),
            query=query,
            window=self.window,
            source=source,
        )

    def _metrics(self, step: Step) -> None:
        """Key metrics of entities of one type over the baseline and the incident window, in one query.
        Anomalous series (and the impacted entities' own) become an item each; the healthy rest and the
        entities without data share one item."""
        metrics = entity_metrics(step.targets[0])
        if not metrics:
            return
        selector = ",".join(metrics)
        scope = entity_selector(step.targets)
        start, end = self.window.baseline_start, step.end or self.window.end
        resolution = self.window.metric_resolution()
        body = self._call(
            step,
            lambda: self.source.query_metrics(
                selector, start, end, entity_selector=scope, resolution=resolution
            ),
        )
        if not isinstance(body, dict):
            return
        source = _query(
            "/api/v2/metrics/query",
            **{
                "metricSelector": selector,
                "entitySelector": scope,
                "from": to_millis(start),
                "to": to_millis(end),
                "resolution": resolution,
            },
        )
        series_of: dict[tuple[str, str], dict[str, Any]] = {}
        for result in body.get("result") or []:
            if not isinstance(result, dict):
                continue
            metric_id = str(result.get("metricId") or "")
            for series in result.get("data") or []:
                if isinstance(series, dict):
                    entity_id = _series_entity(series, step.targets)
                    if entity_id is not None and series.get("values"):
                        series_of[(metric_id, entity_id)] = series
        healthy: dict[str, EntityRef] = {}
        without: dict[str, EntityRef] = {}
        missing: dict[str, list[str]] = {}
        for entity_id in step.targets:
            ref = self._ref(entity_id)
            seen = False
            for metric_id in metrics:
                series = series_of.get((metric_id, entity_id))
                if series is None:
                    missing.setdefault(entity_id, []).append(metric_id)
                    continue
                rule = RULES[metric_id]
                judgement = judge(
                    rule,
                    series.get("timestamps") or [],
                    series.get("values") or [],
                    baseline_end=self.window.baseline_end,
                    start=self.window.incident_start,
                )
                if judgement is None:
                    missing.setdefault(entity_id, []).append(metric_id)
                    continue
                seen = True
                if judgement.anomalous or entity_id in self.impacted:
                    self.book.add_metric(
                        metric_id=metric_id,
                        entity=ref,
                        timestamps=series.get("timestamps") or [],
                        values=series.get("values") or [],
                        window=self.window,
                        source=source,
                        judgement=judgement,
                    )
            (healthy if seen else without)[entity_id] = ref
        troubled = {
            item.entity.id
            for item in self.book.items
            if item.kind is EvidenceKind.METRIC and item.entity and item.data.get("anomalous")
        }
        calm = [ref for entity_id, ref in healthy.items() if entity_id not in troubled]
        if calm or without:
            self.book.add_checked_metrics(
                metric_ids=metrics,
                healthy=calm,
                without_data=list(without.values()),
                missing={e: m for e, m in missing.items() if e in healthy},
                window=self.window,
                source=source,
            )

    def _ref(self, entity_id: str) -> EntityRef:
        for item in self.book.items:
            if item.entity and item.entity.id == entity_id and item.entity.name:
                return item.entity
        return EntityRef(id=entity_id, type=entity_type_of(entity_id))


def _series_entity(series: dict[str, Any], targets: Sequence[str]) -> str | None:
    dimensions = series.get("dimensionMap")
    if isinstance(dimensions, dict):
        for key, value in dimensions.items():
            if str(key).startswith("dt.entity.") and value in targets:
                return str(value)
    for value in series.get("dimensions") or []:
        if value in targets:
            return str(value)
    return targets[0] if len(targets) == 1 else None
