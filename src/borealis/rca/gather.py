"""Evidence gathering: runs the plan against Dynatrace, within the token's scopes and a bounded budget.

Three rounds: the problems' details; the suspected entities with their relationships (then the
dependencies they share); events, error logs and key metrics of the strongest suspects. A missing scope,
a 429 that outlasted the client's retries, or an error becomes a ``notChecked`` entry; after a 429 the
remaining calls are not attempted (they would be refused too). The narrative's tool calls go through the
same ``Investigation``, so they obey the same scopes and budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

from borealis.dynatrace.errors import (
    DynatraceError,
    EnvironmentNotFound,
    RateLimited,
    ResourceNotFound,
    ScopeMissing,
    Timeout,
    TlsFailure,
    TokenDisabled,
    TokenRejected,
    Unreachable,
)
from borealis.rca.analyzer import suspects as rank_suspects
from borealis.rca.evidence import (
    CHANGE_EVENT_TYPES,
    Action,
    EntityRef,
    Evidence,
    EvidenceBook,
    EvidenceKind,
    Links,
    NotChecked,
    NotCheckedCode,
    ProblemFacts,
    Step,
    Window,
    entity_metrics,
    entity_selector,
    entity_steps,
    entity_type_of,
    error_log_query,
    log_attribute,
    problem_steps,
    signal_steps,
    to_millis,
)

logger = logging.getLogger("borealis.rca")

PROBLEM_FIELDS = ("evidenceDetails", "impactAnalysis", "recentComments")
# Failures that mean no further call can succeed either.
HALTING = (Timeout, Unreachable, TlsFailure, TokenRejected, TokenDisabled, EnvironmentNotFound)
ENTITY_FIELDS = ("fromRelationships", "toRelationships", "tags")


class EvidenceSource(Protocol):
    """The Dynatrace API calls evidence gathering needs (``DynatraceClient`` provides them)."""

    environment_url: str

    def get_problem(self, problem_id: str, fields: Sequence[str] | str | None = ...) -> dict[str, Any]: ...

    def get_entity(self, entity_id: str, fields: Sequence[str] | str | None = ...) -> dict[str, Any]: ...

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
    max_entities: int = 12
    max_suspects: int = 5
    max_events_per_call: int = 50
    max_log_records: int = 100
    max_calls: int = 60
    lookback: timedelta = timedelta(minutes=30)


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


def _query(path: str, **params: Any) -> str:
    """The source query of an evidence item, as a reader would re-run it."""
    clean = {key: value for key, value in params.items() if value is not None}
    query = urlencode(clean, safe='(),":')
    return f"GET {path}" + (f"?{query}" if query else "")


class Investigation:
    """Gathers evidence into one ``EvidenceBook``; every call is checked against scopes and budget."""

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
        # Set when Dynatrace cannot answer at all (rate limit, unreachable, token refused): the calls
        # left would fail the same way, so they are not attempted.
        self.halted: tuple[str, NotCheckedCode] | None = None

    # --- running steps ----------------------------------------------------------------------------

    def _gap(self, what: str, reason: str, code: NotCheckedCode, scope: str | None = None) -> None:
        self.book.gap(what, reason, code, scope)
        self._step_gaps.append(NotChecked(what=what, reason=reason, code=code, scope=scope))

    def _allowed(self, step: Step) -> bool:
        what = step.describe()
        if self.scopes is not None and step.scope not in self.scopes:
            self._gap(what, f"the token lacks the {step.scope} scope", "missing_scope", step.scope)
            return False
        if self.halted is not None:
            reason, code = self.halted
            self._gap(what, f"not attempted: {reason}", code)
            return False
        if self.calls >= self.budget.max_calls:
            self._gap(
                what, f"not attempted: the budget of {self.budget.max_calls} API calls was spent", "budget"
            )
            return False
        return True

    def _call(self, step: Step, call: Callable[[], Any]) -> Any | None:
        """Run one API call; a failure becomes a notChecked entry and None."""
        if not self._allowed(step):
            return None
        self.calls += 1
        what = step.describe()
        try:
            return call()
        except ScopeMissing as exc:
            self._gap(what, f"the token lacks the {exc.scope} scope", "missing_scope", exc.scope)
        except RateLimited as exc:
            self.halted = ("Dynatrace was rate limiting this token (429)", "rate_limited")
            self._gap(what, f"Dynatrace kept answering 429 (rate limit): {exc.message}", "rate_limited")
        except ResourceNotFound as exc:
            self._gap(what, f"Dynatrace does not know it: {exc.message}", "not_found")
        except HALTING as exc:
            self.halted = (f"Dynatrace could not be used ({type(exc).__name__})", "error")
            self._gap(what, exc.message, "error")
        except DynatraceError as exc:
            self._gap(what, f"{type(exc).__name__}: {exc.message}", "error")
        return None

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
        entity_id = step.targets[0]
        if self.book.has(f"entity:{entity_id}"):
            return
        cached = self.cached_entities.get(entity_id)
        if cached is not None:
            source = f"entity cache (filled by enrichment from GET /api/v2/entities/{entity_id})"
            self.book.add_entity(cached, source=source)
            return
        body = self._call(step, lambda: self.source.get_entity(entity_id, fields=ENTITY_FIELDS))
        if isinstance(body, dict):
            source = _query(f"/api/v2/entities/{entity_id}", fields=",".join("+" + f for f in ENTITY_FIELDS))
            self.book.add_entity(body, source=source)

    def _events(self, step: Step) -> None:
        selector = entity_selector(step.targets)
        start, end = step.start or self.window.start, step.end or self.window.end
        events = self._call(
            step,
            lambda: self.source.list_events(
                start, end, entity_selector=selector, limit=self.budget.max_events_per_call * 4
            ),
        )
        if not isinstance(events, list):
            return
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
            : self.budget.max_events_per_call
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
        metrics = entity_metrics(step.targets[0])
        if not metrics:
            return
        selector = ",".join(metric_id for metric_id, _ in metrics)
        labels = dict(metrics)
        scope = entity_selector(step.targets)
        start, end = step.start or self.window.start, step.end or self.window.end
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
        for result in body.get("result") or []:
            if not isinstance(result, dict):
                continue
            metric_id = str(result.get("metricId") or "")
            for series in result.get("data") or []:
                if not isinstance(series, dict):
                    continue
                entity_id = _series_entity(series, step.targets)
                if entity_id is None or not series.get("values"):
                    continue
                self.book.add_metric(
                    metric_id=metric_id,
                    label=labels.get(metric_id, metric_id),
                    entity=self._ref(entity_id),
                    timestamps=series.get("timestamps") or [],
                    values=series.get("values") or [],
                    window=self.window,
                    source=source,
                )

    def _ref(self, entity_id: str) -> EntityRef:
        for item in self.book.items:
            if item.entity and item.entity.id == entity_id and item.entity.name:
                return item.entity
        return EntityRef(id=entity_id, type=entity_type_of(entity_id))

    # --- the whole plan ---------------------------------------------------------------------------

    def gather(self, problems: Sequence[ProblemFacts]) -> EvidenceBook:
        """Run all three rounds for the incident's problems."""
        problems = list(problems)[: self.budget.max_problems]
        for facts, step in zip(problems, problem_steps(problems), strict=True):
            if not self.run(step):
                # The API could not tell us more: the stored record (webhook data) still counts.
                self.book.add_problem(
                    facts_as_problem(facts),
                    source="webhook notification (stored problem record)",
                    url=facts.url,
                )
        first = rank_suspects(self.book.items)
        for step in entity_steps(first[: self.budget.max_entities]):
            self.run(step)
        ranked = rank_suspects(self.book.items)
        fetched = {e.entity.id for e in self.book.items if e.kind is EvidenceKind.ENTITY and e.entity}
        room = max(0, self.budget.max_entities - len(fetched))
        for step in entity_steps([e for e in ranked if e not in fetched][: min(room, 3)]):
            self.run(step)
        ranked = rank_suspects(self.book.items)
        for step in signal_steps(ranked[: self.budget.max_suspects], self.window):
            self.run(step)
        return self.book


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
    window = Window.around(problems, now=now, lookback=budget.lookback)
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
