"""The on-call figures against values computed by hand from a known set of incidents and reports."""

from __future__ import annotations

import pytest

from tests.support.insights import seed_figures


@pytest.fixture
def figures(database, account):
    seed_figures(database, account.workspace_id)
    return lambda days: account.client.get("/insights", params={"days": days}).json()


def test_seven_days_match_the_hand_computed_figures(figures):
    week = figures(7)
    assert week["incidents"] == 4
    per_day = [entry["incidents"] for entry in week["incidentsPerDay"]]
    assert len(per_day) == 7
    assert per_day[-4:-1] == [1, 1, 2]  # three, two and one day ago
    assert sum(per_day) == 4
    # TTA 60, 120, 300: median 120; nearest rank 90 % of 3 is the 3rd.
    assert week["timeToAcknowledge"] == {"count": 3, "median": 120.0, "p90": 300.0}
    # TTR 600, 1200: median 900; the 2nd of 2.
    assert week["timeToResolve"] == {"count": 2, "median": 900.0, "p90": 1200.0}
    assert week["topRootCauses"] == [
        {"entity": "HOST-1", "name": "db-host", "incidents": 2},
        {"entity": "SERVICE-2", "name": "checkout", "incidents": 1},
    ]
    assert week["verdicts"] == {"CONFIRMED": 2, "LIKELY": 1}
    confirmed, likely = week["precision"]
    assert (confirmed["verdict"], confirmed["marked"], confirmed["right"], confirmed["wrong"]) == (
        "CONFIRMED",
        2,
        1,
        1,
    )
    assert confirmed["precision"] == 0.5
    assert (likely["partlyRight"], likely["precision"]) == (1, 0.0)
    assert week["overallPrecision"]["precision"] == pytest.approx(1 / 3)


def test_thirty_days_take_in_the_older_incident(figures):
    month = figures(30)
    assert month["incidents"] == 5
    assert len(month["incidentsPerDay"]) == 30
    # TTA 30, 60, 120, 300: median 90; nearest rank 90 % of 4 is the 4th.
    assert month["timeToAcknowledge"] == {"count": 4, "median": 90.0, "p90": 300.0}
    assert month["topRootCauses"][0] == {"entity": "HOST-1", "name": "db-host", "incidents": 3}
    likely = next(item for item in month["precision"] if item["verdict"] == "LIKELY")
    assert (likely["reports"], likely["right"], likely["partlyRight"], likely["precision"]) == (2, 1, 1, 0.5)
    assert month["overallPrecision"]["precision"] == pytest.approx(2 / 4)


def test_an_empty_window_and_a_window_that_is_not_offered(account):
    empty = account.client.get("/insights", params={"days": 7}).json()
    assert empty["incidents"] == 0
    assert empty["timeToAcknowledge"] == {"count": 0, "median": None, "p90": None}
    assert empty["overallPrecision"]["precision"] is None
    assert account.client.get("/insights", params={"days": 14}).status_code == 422
