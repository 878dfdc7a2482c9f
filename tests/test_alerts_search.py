"""The alerts list under every filter, and the ``q`` word search behind it.

The list picks a different query plan depending on how many problems each filter matches (kept
counts, walks of the newest problems, candidates of the rarest word, reading from the oldest end).
Whatever the plan, the page, the total and the cursor must be exactly what a plain scan gives.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from borealis.dynatrace.payload import parse_webhook
from borealis.errors import InvalidInput
from borealis.problems import listing, search
from borealis.problems import service as problems_service
from borealis.problems.models import Problem, ProblemTerm, SearchWorkspace
from tests.support.webhooks import BASE_MS, encode, notification, wire_connection

START = datetime.fromtimestamp(BASE_MS / 1000, UTC)
WORDS = ["cpu", "saturation", "response", "time", "degradation", "failure", "rate", "disk", "full"]
ENTITIES = ["easytravel-frontend", "checkout-svc", "web-1", "web-12", "db.prod.example.com", "Journey"]
STATES = ["OPEN", "RESOLVED", "MERGED"]
SEVERITIES = ["AVAILABILITY", "ERROR", "PERFORMANCE"]
IMPACTS = ["SERVICE", "APPLICATION"]
QUERIES = [
    "cpu",
    "c",
    "sat",
    "resp time",
    "degradation failure",
    "web",
    "web-1",
    "web-12",
    "WEB-1 cpu",
    "front",
    "easytravel-front",
    "prod.example",
    "example",
    "journey",
    "p-1",
    "1",
    "host",
    "zzz",
    "cpu zzz",
]


# --- what a problem is found by --------------------------------------------------------------------


def test_each_word_and_each_part_after_punctuation_is_a_term():
    text = "Response time degradation (prod)\nP-22011\neasytravel-frontend\nhost.prod.example.com"
    assert search.terms(text) == [
        "response",
        "time",
        "degradation",
        "prod",
        "p-22011",
        "22011",
        "easytravel-frontend",
        "frontend",
        "host.prod.example.com",
        "prod.example.com",
        "example.com",
        "com",
    ]


def test_long_words_are_kept_by_their_beginning():
    word = "x" * 100
    assert search.terms(word) == ["x" * 64]
    assert search.query_words(word) == ["x" * 64]


def test_query_words_are_lower_cased_and_a_word_implied_by_a_longer_one_is_dropped():
    assert sorted(search.query_words("SVC svc-42 Checkout, checkout-svc")) == ["checkout-svc", "svc-42"]


def test_a_query_without_letters_or_digits_is_refused():
    with pytest.raises(InvalidInput, match="letter or digit"):
        listing.query_words(" -- % ")


# --- q through the API ----------------------------------------------------------------------------------


@pytest.fixture
def wired(account, app, database):
    return wire_connection(database, app.state.secret_box, account.workspace_id)


def _send(client, wired, *bodies):
    for body in bodies:
        assert client.post(wired.url, json=body).status_code == 200


def _found(account, q: str) -> list[str]:
    response = account.client.get("/dynatrace/alerts", params={"q": q})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["alerts"])
    return [alert["problemId"] for alert in page["alerts"]]


def test_q_matches_the_beginning_of_words_not_their_middle(account, client, wired):
    _send(client, wired, notification("-1", problem_id="P-1", title="Response time degradation"))
    assert _found(account, "resp") == ["P-1"]
    assert _found(account, "DEGRAD") == ["P-1"]
    assert _found(account, "ponse") == []
    assert _found(account, "response-time") == []


def test_q_finds_entity_names_ids_and_display_ids(account, client, wired):
    frontend = [{"type": "SERVICE", "name": "easytravel-frontend", "entity": "SERVICE-00000000000000A1"}]
    _send(
        client,
        wired,
        notification("-1", problem_id="P-22011", title="Failure rate increase", entities=frontend),
        notification(
            "-2",
            problem_id="P-22012",
            title="Slow checkout",
            entities=[],
            root_cause={"entityId": {"id": "PROCESS_GROUP-00000000000000B2"}, "name": "journey.prod.local"},
        ),
    )
    assert _found(account, "frontend") == ["P-22011"]
    assert _found(account, "easytravel-front") == ["P-22011"]
    assert _found(account, "service-00000000000000a1") == ["P-22011"]
    assert _found(account, "22011") == ["P-22011"]
    assert _found(account, "prod.local") == ["P-22012"]
    assert _found(account, "process_group-00000000000000b2") == ["P-22012"]
    assert _found(account, "2201") == ["P-22012", "P-22011"]


def test_q_needs_every_word(account, client, wired):
    web1 = [{"type": "HOST", "name": "web-1", "entity": "HOST-0000000000000001"}]
    db1 = [{"type": "HOST", "name": "db-1", "entity": "HOST-0000000000000002"}]
    _send(
        client,
        wired,
        notification("-1", problem_id="P-1", title="CPU saturation", entities=web1),
        notification("-2", problem_id="P-2", title="CPU saturation", entities=db1),
        notification("-3", problem_id="P-3", title="Disk full", entities=db1),
    )
    assert _found(account, "cpu") == ["P-2", "P-1"]
    assert _found(account, "cpu db") == ["P-2"]
    assert _found(account, "db-1 disk") == ["P-3"]
    assert _found(account, "cpu disk") == []


def test_q_never_matches_another_users_problems(account, make_account, app, database, client, wired):
    other = make_account("other@example.com")
    other_wired = wire_connection(database, app.state.secret_box, other.workspace_id)
    _send(client, wired, notification("-1", problem_id="P-MINE", title="Memory leak on billing"))
    _send(client, other_wired, notification("-1", problem_id="P-THEIRS", title="Memory leak on billing"))
    assert _found(account, "memory billing") == ["P-MINE"]
    assert _found(other, "memory billing") == ["P-THEIRS"]
    assert _found(account, "theirs") == []


def test_a_title_change_changes_what_q_finds(account, client, wired, database):
    _send(client, wired, notification("-1", problem_id="P-1", title="CPU saturation", observed_ms=BASE_MS))
    assert _found(account, "saturation") == ["P-1"]
    _send(
        client, wired, notification("-1", problem_id="P-1", title="Memory leak", observed_ms=BASE_MS + 60_000)
    )
    assert _found(account, "saturation") == []
    assert _found(account, "leak") == ["P-1"]
    # An older delivery does not bring the old title back.
    _send(
        client, wired, notification("-1", problem_id="P-1", title="CPU saturation", observed_ms=BASE_MS + 1)
    )
    assert _found(account, "saturation") == []
    _assert_terms_follow_search_text(database)


@pytest.mark.parametrize(
    ("q", "mentions"), [("%%", "letter or digit"), ("a1 b2 c3 d4 e5 f6 g7 h8 i9", "at most 8")]
)
def test_a_q_that_cannot_be_searched_as_given_is_4xx(account, q, mentions):
    response = account.client.get("/dynatrace/alerts", params={"q": q})
    assert response.status_code == 422
    assert mentions in response.json()["error"]["message"]


def test_the_last_page_has_no_next_cursor(account, client, wired):
    _send(client, wired, *(notification(f"-{n}", problem_id=f"P-{n}") for n in range(4)))
    first = account.client.get("/dynatrace/alerts?limit=2").json()
    assert first["nextCursor"]
    second = account.client.get(f"/dynatrace/alerts?limit=2&cursor={first['nextCursor']}").json()
    assert [a["problemId"] for a in second["alerts"]] == ["P-1", "P-0"]
    assert account.client.get("/dynatrace/alerts?limit=2&offset=2").json()["nextCursor"] is None


# --- every plan gives what a plain scan gives ------------------------------------------------------------


def _apply(database, connection_id: str, workspace_id: str, bodies: list[tuple[dict, datetime]]) -> None:
    deliveries = [
        problems_service.Delivery(
            connection_id=connection_id,
            workspace_id=workspace_id,
            notification=parse_webhook(encode(body)),
            source="webhook",
            raw_body="{}",
            received_at=at,
        )
        for body, at in bodies
    ]
    with database.session(write=True) as session:
        problems_service.apply_notifications(db_session=session, deliveries=deliveries)
        session.commit()


def _problem_body(rng: random.Random, n: int, observed_ms: int) -> dict:
    entities = [
        {"type": "SERVICE", "name": name, "entity": f"SERVICE-{index:016X}"}
        for index, name in enumerate(ENTITIES)
        if rng.random() < 0.3
    ]
    return notification(
        f"-{n}",
        problem_id=f"P-{n}",
        state=rng.choice(STATES),
        title=" ".join(rng.sample(WORDS, rng.randint(1, 3))),
        severity=rng.choice(SEVERITIES),
        impact=rng.choice(IMPACTS),
        entities=entities,
        observed_ms=observed_ms,
        ImpactedEntity="",
    )


@pytest.fixture
def population(make_account, app, database):
    """Sixty problems for one user (ties in activity time included, some retitled later) and a few
    for another user with the same words."""
    rng = random.Random(7)
    me, other = make_account("me@example.com"), make_account("other@example.com")
    mine = wire_connection(database, app.state.secret_box, me.workspace_id)
    theirs = wire_connection(database, app.state.secret_box, other.workspace_id)
    at = [START + timedelta(minutes=rng.randint(0, 40)) for _ in range(60)]
    _apply(
        database,
        mine.connection_id,
        me.workspace_id,
        [(_problem_body(rng, n, BASE_MS), at[n]) for n in range(60)],
    )
    retitled = [
        (_problem_body(rng, n, BASE_MS + 60_000), at[n] + timedelta(minutes=rng.randint(0, 30)))
        for n in rng.sample(range(60), 20)
    ]
    _apply(database, mine.connection_id, me.workspace_id, retitled)
    _apply(
        database,
        theirs.connection_id,
        other.workspace_id,
        [(_problem_body(rng, n, BASE_MS), START + timedelta(minutes=n)) for n in range(10)],
    )
    return me.workspace_id


def _expected(database, workspace_id: str, filters: listing.AlertFilters) -> list[int]:
    with database.session() as session:
        problems = session.scalars(sa.select(Problem).where(Problem.workspace_id == workspace_id)).all()
    words = search.query_words(filters.q) if filters.q else []
    kept = [
        problem
        for problem in problems
        if (filters.state is None or problem.state == filters.state)
        and (filters.severity is None or problem.severity == filters.severity)
        and (filters.impact is None or problem.impact == filters.impact)
        and (filters.since is None or problem.last_received_at >= filters.since)
        and (filters.until is None or problem.last_received_at <= filters.until)
        and all(any(term.startswith(word) for term in search.terms(problem.search_text)) for word in words)
    ]
    kept.sort(key=lambda problem: (problem.last_received_at, problem.id), reverse=True)
    return [problem.id for problem in kept]


def _random_filters(rng: random.Random, moments: list[datetime]) -> listing.AlertFilters:
    pick = lambda values: rng.choice(values) if rng.random() < 0.3 else None  # noqa: E731
    return listing.AlertFilters(
        state=pick(STATES),
        severity=pick(SEVERITIES),
        impact=pick(IMPACTS),
        q=rng.choice(QUERIES) if rng.random() < 0.6 else None,
        since=pick(moments),
        until=pick(moments),
    )


def _assert_terms_follow_search_text(database) -> None:
    with database.session() as session:
        stored: dict[int, set[str]] = {}
        for problem_id, term in session.execute(sa.select(ProblemTerm.problem_id, ProblemTerm.term)):
            stored.setdefault(problem_id, set()).add(term)
        expected = {
            problem.id: set(search.terms(problem.search_text))
            for problem in session.scalars(sa.select(Problem))
            if search.terms(problem.search_text)
        }
        owners = session.execute(
            sa.select(ProblemTerm.workspace_number, SearchWorkspace.number)
            .join(Problem, Problem.id == ProblemTerm.problem_id)
            .join(SearchWorkspace, SearchWorkspace.workspace_id == Problem.workspace_id, isouter=True)
        ).all()
    assert stored == expected
    assert all(term_owner == problem_owner for term_owner, problem_owner in owners)


@pytest.mark.parametrize("thresholds", ["default", "tiny"])
def test_every_plan_lists_what_a_plain_scan_lists(population, database, monkeypatch, thresholds):
    if thresholds == "tiny":
        # Small enough that sixty problems take every branch: capped sizes, bounded walks that
        # give up, candidates, reading from the oldest end.
        monkeypatch.setattr(listing, "_SIZE_CAP", 2)
        monkeypatch.setattr(listing, "_WALK_SLACK", 1)
        monkeypatch.setattr(listing, "_WALK_MARGIN", 0)
    workspace_id = population
    _assert_terms_follow_search_text(database)
    with database.session() as session:
        moments = sorted(session.scalars(sa.select(Problem.last_received_at)).all())
    rng = random.Random(thresholds)
    for _ in range(150):
        filters = _random_filters(rng, moments)
        expected = _expected(database, workspace_id, filters)
        limit = rng.randint(1, 7)
        offset = rng.choice([0, rng.randint(0, len(expected) + 2)])
        with database.session() as session:
            page = listing.list_alerts(
                db_session=session, workspace_id=workspace_id, filters=filters, limit=limit, offset=offset
            )
        context = f"{filters} limit={limit} offset={offset}"
        assert page.total == len(expected), context
        assert [row["id"] for row in page.rows] == expected[offset : offset + limit], context
        assert (page.next_after is not None) == (offset + limit < len(expected)), context

        seen: list[int] = []
        after = None
        for _ in range(len(expected) + 2):
            with database.session() as session:
                step = listing.list_alerts(
                    db_session=session, workspace_id=workspace_id, filters=filters, limit=limit, after=after
                )
            seen += [row["id"] for row in step.rows]
            after = step.next_after
            if after is None:
                break
        assert seen == expected, f"{context} by cursor"
