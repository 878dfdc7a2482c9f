"""The correlation scenario corpus through the live server's webhook: every scenario groups like the
truth (pairwise F1 >= 0.95), concurrent senders end in the same grouping as one by one, every problem
is in exactly one incident, and each incident ends open or resolved as its problems say."""

from __future__ import annotations

import pytest

from borealis.dynatrace.payload import parse_webhook
from borealis.incidents.topology import use_topology_source
from tests.scenarios import CorrelationScenario, corpus
from tests.support.replay import describe, load_topology, outcome, pairwise, replay_http, unplaced
from tests.support.webhooks import encode, wire_connection

SCENARIOS = corpus()
SENDERS = 8


@pytest.fixture(autouse=True)
def _entity_cache_topology():
    """Correlation reads the entity cache, as in the app (another test may have swapped the source)."""
    use_topology_source(None)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_groups_like_the_truth_one_by_one_and_all_at_once(
    scenario: CorrelationScenario, app, database, make_account, live_server
):
    calm = make_account("calm@example.com")
    stormy = make_account("stormy@example.com")
    hooks = []
    for account in (calm, stormy):
        wired = wire_connection(database, app.state.secret_box, account.workspace_id)
        load_topology(database, wired.connection_id, scenario)
        hooks.append(wired)

    replay_http(live_server.url, hooks[0].url, scenario)
    replay_http(live_server.url, hooks[1].url, scenario, senders=SENDERS, seed=7)

    one_by_one = outcome(database, calm.workspace_id)
    all_at_once = outcome(database, stormy.workspace_id)
    score = pairwise(one_by_one.grouping, scenario.truth)
    assert score.f1 >= 0.95, f"F1 {score.f1:.3f}: {describe(one_by_one.grouping, scenario.truth)}"
    assert all_at_once.grouping == one_by_one.grouping, describe(all_at_once.grouping, one_by_one.grouping)
    for result, account in ((one_by_one, calm), (all_at_once, stormy)):
        assert result.problem_count() == len(scenario.problems)
        assert unplaced(database, account.workspace_id) == []
        expected = {
            display: "resolved" if group.resolved else "open"
            for group in scenario.groups
            for display in group.problems
        }
        assert result.status_of() == expected


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_delivery_of_the_corpus_reads_cleanly(scenario: CorrelationScenario):
    for body in scenario.deliveries:
        notification = parse_webhook(encode(body))
        assert notification.warnings == [], notification.warnings
        assert notification.unreplaced == []
        assert not notification.is_test


# -- the score itself -------------------------------------------------------------------------------


def test_pairwise_score_of_the_truth_is_perfect():
    truth = [{"a", "b", "c"}, {"d"}]
    score = pairwise(truth, truth)
    assert (score.precision, score.recall, score.f1) == (1.0, 1.0, 1.0)
    assert score.true_pairs == 3


def test_pairwise_score_counts_a_split_group_as_lost_recall():
    score = pairwise([{"a", "b"}, {"c"}, {"d"}], [{"a", "b", "c"}, {"d"}])
    assert score.precision == 1.0
    assert score.recall == pytest.approx(1 / 3)
    assert score.f1 == pytest.approx(0.5)


def test_pairwise_score_counts_a_false_merge_as_lost_precision():
    score = pairwise([{"a", "b", "c", "d"}], [{"a", "b", "c"}, {"d"}])
    assert score.recall == 1.0
    assert score.precision == pytest.approx(3 / 6)


def test_pairwise_score_of_singletons_only():
    assert pairwise([{"a"}, {"b"}], [{"a"}, {"b"}]).f1 == 1.0
    assert pairwise([{"a", "b"}], [{"a"}, {"b"}]).f1 == 0.0
