"""The walk below the symptom: which anomalous dependency explains it, and how sure the report is."""

from __future__ import annotations

from borealis.rca.analyzer import analyze
from borealis.rca.evidence import NotChecked
from borealis.rca.report import Report, Verdict
from tests.support.rca_walks import CPU, ERRORS, REQUESTS, RT, Graph


def run(graph: Graph, impacted: str, **kwargs) -> Report:
    book = graph.book(impacted, **kwargs)
    return analyze(book.items, book.not_checked)


def chain() -> tuple[Graph, str, str, str]:
    """checkout-api → payment-svc → payments-db, beside a healthy catalog and its cache."""
    graph = Graph()
    cache = graph.service("catalog-cache")
    catalog = graph.service("catalog", calls=(cache,))
    database = graph.service("payments-db")
    payment = graph.service("payment-svc", calls=(database,))
    checkout = graph.service("checkout-api", calls=(payment, catalog))
    return graph, checkout, payment, database


def test_the_cause_two_calls_below_the_symptom_leads_with_its_path():
    graph, checkout, payment, database = chain()
    graph.trouble(database, RT, 410_000, onset_minutes=-6)
    graph.trouble(payment, RT, 420_000, onset_minutes=-5)
    graph.trouble(checkout, RT, 300_000, onset_minutes=-4)
    report = run(graph, checkout)
    assert report.verdict is Verdict.LIKELY
    assert report.root_cause.entity.id == database
    assert [hop.entity.id for hop in report.walk.path] == [checkout, payment, database]
    assert [hop.role for hop in report.walk.path] == ["symptom", "path", "cause"]
    cause = report.walk.path[-1]
    assert cause.figure == "payments-db: response time 40 ms → 410 ms from 09:54 UTC"
    assert cause.baseline_low < cause.baseline < cause.baseline_high < cause.peak
    assert len(cause.timestamps) == len(cause.values) == 140
    assert "checkout-api" in report.root_cause.explanation
    assert "→" in report.root_cause.explanation
    states = {node.entity.id: node.state for node in report.walk.nodes}
    assert states[database] == "cause"
    assert states[payment] == "anomalous"
    assert {states[c] for c in states if c not in (database, payment, checkout)} == {"healthy"}
    assert report.candidates[0].entity.id == database
    assert checkout not in [c.entity.id for c in report.candidates[:1]]


def test_the_problems_own_opening_event_is_not_evidence_against_the_symptom():
    graph, checkout, payment, _database = chain()
    graph.trouble(payment, ERRORS, 12.0)
    graph.trouble(checkout, ERRORS, 6.0)
    report = run(graph, checkout)
    symptom = next(c for c in report.candidates if c.entity.id == checkout)
    assert all("symptoms" not in reason.text for reason in symptom.reasons)
    assert report.root_cause.entity.id == payment


def test_a_callee_far_weaker_than_its_caller_does_not_explain_it():
    graph, checkout, payment, database = chain()
    graph.trouble(payment, RT, 900_000)
    graph.trouble(checkout, RT, 950_000)
    # The database's latency rose too, but by 30 ms: a fraction of what the payment service added.
    graph.trouble(database, RT, 70_000)
    report = run(graph, checkout)
    assert report.root_cause.entity.id == payment


def test_a_callee_whose_trouble_began_later_does_not_explain_its_caller():
    graph, checkout, payment, database = chain()
    graph.trouble(payment, RT, 500_000, onset_minutes=-8)
    graph.trouble(checkout, RT, 520_000, onset_minutes=-7)
    graph.trouble(database, RT, 500_000, onset_minutes=5)
    report = run(graph, checkout)
    assert report.candidates[0].entity.id == payment


def test_a_traffic_fall_below_a_slow_caller_is_its_consequence_and_a_collapse_a_cause():
    graph, checkout, payment, database = chain()
    graph.trouble(payment, RT, 600_000)
    graph.trouble(checkout, RT, 640_000)
    graph.trouble(database, REQUESTS, 250)  # fewer requests reach it because its caller slowed down
    assert run(graph, checkout).root_cause.entity.id == payment

    graph, checkout, payment, database = chain()
    graph.trouble(database, REQUESTS, 3)  # it stopped taking requests: its callers fail
    graph.trouble(payment, ERRORS, 40.0)
    graph.trouble(checkout, ERRORS, 25.0)
    report = run(graph, checkout)
    assert report.root_cause.entity.id == database
    assert "down" in report.walk.path[-1].figure or "→ 3" in report.walk.path[-1].figure


def test_a_saturated_host_explains_the_services_that_run_on_it():
    graph = Graph()
    host = graph.host("db-host-1")
    database = graph.service("orders-db", host=host)
    orders = graph.service("orders", calls=(database,))
    front = graph.service("frontend", calls=(orders,))
    graph.trouble(host, CPU, 97)
    for ident, level in ((database, 300_000), (orders, 350_000), (front, 380_000)):
        graph.trouble(ident, RT, level)
    report = run(graph, front)
    assert report.root_cause.entity.id == host
    assert [hop.entity.id for hop in report.walk.path] == [front, orders, database, host]


def test_the_symptom_is_the_cause_only_when_nothing_below_explains_it():
    graph, checkout, _, _ = chain()
    graph.trouble(checkout, RT, 400_000)
    report = run(graph, checkout)
    assert report.candidates[0].entity.id == checkout
    # Its own figures are bad and nothing below is: with no change on it, not settled.
    assert report.verdict is Verdict.INCONCLUSIVE
    assert "nothing below checkout-api is anomalous" in report.root_cause.explanation

    graph.deployment(checkout)
    report = run(graph, checkout)
    assert report.verdict is Verdict.LIKELY
    assert report.root_cause.entity.id == checkout


def test_a_component_without_data_is_walked_through_and_makes_the_verdict_inconclusive():
    graph, checkout, payment, database = chain()
    graph.drop(payment, RT)
    graph.drop(payment, ERRORS)
    graph.drop(payment, REQUESTS)
    graph.trouble(database, RT, 500_000)
    graph.trouble(checkout, RT, 520_000)
    report = run(graph, checkout)
    assert report.candidates[0].entity.id == database
    assert report.verdict is Verdict.INCONCLUSIVE
    assert "data was missing on the path to it (payment-svc)" in report.root_cause.explanation


def test_an_unchecked_dependency_below_the_leader_keeps_it_from_likely():
    graph, checkout, payment, database = chain()
    graph.trouble(payment, RT, 500_000)
    graph.trouble(checkout, RT, 520_000)
    graph.drop(database, RT)
    graph.drop(database, ERRORS)
    graph.drop(database, REQUESTS)
    gap = NotChecked(
        what="1 services more than 4 calls below the impacted ones",
        reason="not examined: the walk stops at that depth",
        code="budget",
        entity_ids=[database],
    )
    report = run(graph, checkout, not_checked=(gap,))
    assert report.candidates[0].entity.id in (payment, database)
    assert report.verdict is Verdict.INCONCLUSIVE


def test_two_close_leaves_are_inconclusive_and_both_listed():
    graph = Graph()
    left = graph.service("inventory")
    right = graph.service("pricing")
    front = graph.service("shop", calls=(left, right))
    graph.trouble(left, RT, 400_000)
    graph.trouble(right, RT, 410_000)
    graph.trouble(front, RT, 600_000)
    report = run(graph, front)
    assert report.verdict is Verdict.INCONCLUSIVE
    assert {c.entity.id for c in report.candidates[:2]} == {left, right}
    assert report.root_cause.entity is None


def test_a_monitored_service_leads_over_the_external_one_beside_it():
    graph = Graph()
    gateway = graph.service("payments-gateway.example.com", external=True)
    ledger = graph.service("ledger")
    billing = graph.service("billing", calls=(gateway, ledger))
    graph.trouble(gateway, RT, 2_000_000)
    graph.trouble(ledger, RT, 900_000)
    graph.trouble(billing, RT, 2_500_000)
    report = run(graph, billing)
    assert report.candidates[0].entity.id == ledger


def test_davis_and_the_walk_agreeing_is_confirmed_and_disagreeing_is_said():
    graph, checkout, payment, database = chain()
    graph.trouble(database, RT, 410_000)
    graph.trouble(payment, RT, 420_000)
    graph.trouble(checkout, RT, 430_000)
    agree = run(graph, checkout, root=database)
    assert agree.verdict is Verdict.CONFIRMED
    assert agree.root_cause.entity.id == database
    disagree = run(graph, checkout, root=checkout)
    assert disagree.verdict is not Verdict.CONFIRMED
    assert "Dynatrace names" in disagree.root_cause.explanation


def test_an_unrelated_anomaly_off_the_path_is_not_a_candidate_for_the_walk():
    graph, checkout, payment, database = chain()
    elsewhere = graph.service("batch-reports")
    graph.trouble(elsewhere, RT, 5_000_000)
    graph.deployment(elsewhere)
    graph.trouble(database, RT, 410_000)
    graph.trouble(payment, RT, 420_000)
    graph.trouble(checkout, RT, 430_000)
    report = run(graph, checkout)
    assert report.root_cause.entity.id == database
    assert report.verdict is Verdict.LIKELY


def test_the_healthy_services_the_leader_calls_close_the_list_for_a_fault_on_the_way_to_them():
    graph, checkout, payment, database = chain()
    # The payment service is slow, its database's own figures are not: a slow network path to the
    # database would look exactly so.
    graph.trouble(payment, RT, 500_000)
    graph.trouble(checkout, RT, 520_000)
    report = run(graph, checkout)
    ranked = [c.entity.id for c in report.candidates]
    assert ranked[0] == payment
    assert database in ranked
    listed = next(c for c in report.candidates if c.entity.id == database)
    assert listed.score == 0
    assert "on the way to it" in listed.reasons[0].text
