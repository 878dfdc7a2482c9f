"""Replaying a correlation scenario through the real ingest path, and scoring the grouping it produced.

Two ways in: ``replay_http`` posts every delivery to a running server's webhook (what Dynatrace does),
``replay_direct`` runs each delivery in its own ingest transaction (what several replicas do, and what
the benchmark times). Both send a scenario wave by wave: one by one in the listed order, or with N
concurrent senders in a shuffled order, finishing a wave before starting the next.

The grouping is scored pairwise: a pair of problems is "together" when they share an incident;
precision is the share of predicted pairs that are true, recall the share of true pairs predicted.
"""

from __future__ import annotations

import json
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import httpx
import sqlalchemy as sa

from borealis.db import Database
from borealis.dynatrace.entities import store_entities
from borealis.incidents.models import Incident, IncidentProblem
from borealis.problems.models import Problem
from tests.scenarios.model import CorrelationScenario, Grouping
from tests.support.webhooks import followed_up, ingest_raw

RETRIES = 3


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted_pairs: int


def pairs(grouping: Iterable[Iterable[str]]) -> set[frozenset[str]]:
    """Every unordered pair of problems that share a group."""
    return {frozenset(pair) for members in grouping for pair in combinations(sorted(members), 2)}


def pairwise(predicted: Iterable[Iterable[str]], truth: Iterable[Iterable[str]]) -> Score:
    """Pairwise precision, recall and F1 of a grouping; no pairs on a side counts as perfect on it."""
    got, want = pairs(predicted), pairs(truth)
    hits = len(got & want)
    precision = hits / len(got) if got else 1.0
    recall = hits / len(want) if want else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(precision, recall, f1, len(want), len(got))


def describe(predicted: Grouping, truth: Grouping) -> str:
    """The groups that differ, for an assertion message."""
    wrong = sorted(sorted(group) for group in predicted - truth)
    missing = sorted(sorted(group) for group in truth - predicted)
    return f"predicted but not true: {wrong}; true but not predicted: {missing}"


# -- topology ---------------------------------------------------------------------------------------


def load_topology(database: Database, connection_id: str, scenario: CorrelationScenario) -> int:
    """Put the scenario's entities into the connection's entity cache, as enrichment would; returns how
    many (none for a scenario seen without ``entities.read``)."""
    if not scenario.topology or not scenario.entities:
        return 0
    with database.session(write=True) as session:
        stored = store_entities(db_session=session, connection_id=connection_id, documents=scenario.entities)
        session.commit()
    return stored


# -- sending ----------------------------------------------------------------------------------------


def waves_in_order(scenario: CorrelationScenario, *, shuffled: bool, seed: int) -> Iterator[list[dict]]:
    """Each wave's deliveries: as listed, or shuffled (``seed`` makes the shuffle repeatable)."""
    chance = random.Random(seed)
    for wave in scenario.waves:
        bodies = list(wave)
        if shuffled:
            chance.shuffle(bodies)
        yield bodies


def _send_waves(
    scenario: CorrelationScenario, send: Callable[[dict[str, Any]], str], *, senders: int, seed: int
) -> list[str]:
    outcomes: list[str] = []
    if senders <= 1:
        for wave in waves_in_order(scenario, shuffled=False, seed=seed):
            outcomes += [send(body) for body in wave]
        return outcomes
    with ThreadPoolExecutor(max_workers=senders) as pool:
        for wave in waves_in_order(scenario, shuffled=True, seed=seed):
            outcomes += list(pool.map(send, wave))
    return outcomes


@contextmanager
def _per_thread_clients(base_url: str) -> Iterator[Callable[[], httpx.Client]]:
    local = threading.local()
    made: list[httpx.Client] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, timeout=120)
            with lock:
                made.append(local.client)
        return local.client

    try:
        yield client
    finally:
        for item in made:
            item.close()


def replay_http(
    base_url: str, webhook_url: str, scenario: CorrelationScenario, *, senders: int = 1, seed: int = 0
) -> list[str]:
    """Post every delivery to the webhook; returns the outcomes (``created``, ``duplicate``, ...).

    Any answer but 200 fails: every delivery of the corpus is one Dynatrace could send."""
    with _per_thread_clients(base_url) as client:

        def send(body: dict[str, Any]) -> str:
            response = client().post(webhook_url, json=body)
            assert response.status_code == 200, response.text
            return response.json()["outcome"]

        return _send_waves(scenario, send, senders=senders, seed=seed)


def replay_direct(
    database: Database, connection_id: str, scenario: CorrelationScenario, *, senders: int = 1, seed: int = 0
) -> list[str]:
    """Ingest every delivery in its own transaction (as separate replicas would); returns the outcomes."""

    def send(body: dict[str, Any]) -> str:
        raw = json.dumps(body).encode()
        # As the webhook writer does: a transaction that failed on the database (a lock timeout, a
        # deadlock between writers) is run again.
        for tries_left in reversed(range(RETRIES)):
            try:
                return ingest_raw(database, connection_id, raw).outcome
            except sa.exc.OperationalError:
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    return _send_waves(scenario, send, senders=senders, seed=seed)


# -- reading the outcome ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The user's incidents after a replay: problems (display ids) per incident and each one's status."""

    incidents: dict[int, frozenset[str]]
    statuses: dict[int, str]

    @property
    def grouping(self) -> Grouping:
        return frozenset(self.incidents.values())

    def status_of(self) -> dict[str, str]:
        """Problem -> the status of the incident it is in."""
        return {
            display: self.statuses[incident_id]
            for incident_id, members in self.incidents.items()
            for display in members
        }

    def problem_count(self) -> int:
        return sum(len(members) for members in self.incidents.values())


def outcome(database: Database, workspace_id: str) -> Outcome:
    """Read every problem's incident straight from the database, once the follow-ups are done."""
    followed_up(database)
    with database.session() as session:
        rows = session.execute(
            sa.select(IncidentProblem.incident_id, Problem.display_id, Problem.pid, Incident.status)
            .join(Problem, Problem.id == IncidentProblem.problem_id)
            .join(Incident, Incident.id == IncidentProblem.incident_id)
            .where(Problem.workspace_id == workspace_id)
        ).all()
    members: dict[int, set[str]] = defaultdict(set)
    statuses: dict[int, str] = {}
    for incident_id, display_id, pid, status in rows:
        members[incident_id].add(display_id or pid)
        statuses[incident_id] = status
    return Outcome({key: frozenset(value) for key, value in members.items()}, statuses)


def unplaced(database: Database, workspace_id: str) -> Sequence[str]:
    """Problems of the user that belong to no incident (there must be none)."""
    with database.session() as session:
        return list(
            session.scalars(
                sa.select(Problem.display_id)
                .outerjoin(IncidentProblem, IncidentProblem.problem_id == Problem.id)
                .where(Problem.workspace_id == workspace_id, IncidentProblem.problem_id.is_(None))
            )
        )
