"""``borealis demo``: a newcomer sees incidents whose RCA reports name the injected causes within a minute."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import httpx

from borealis.simulation import generate, shifted
from borealis.simulation.scenarios import scenarios
from borealis.simulation.series import MINUTE_MS
from tests.support.demo import running_demo
from tests.support.processes import BOREALIS
from tests.support.waiting import wait_until


def test_the_demo_shows_each_scenario_as_an_incident_whose_rca_names_the_injected_cause(tmp_path):
    expected = scenarios(datetime.now(UTC))
    with (
        running_demo(tmp_path) as demo,
        httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {demo.api_key}"}) as client,
    ):

        def reports() -> dict[str, dict] | None:
            incidents = client.get("/incidents", params={"limit": 100}).json()["incidents"]
            found = {}
            for scenario in expected:
                mine = [
                    incident
                    for incident in incidents
                    if any(item["entityId"] == scenario.case.symptom for item in incident["affectedEntities"])
                ]
                if len(mine) != 1:
                    return None
                rca = client.get(f"/incidents/{mine[0]['id']}").json().get("rca") or {}
                if rca.get("status") != "done":
                    return None
                found[scenario.name] = {**rca, "problems": mine[0]["problemCount"], "total": len(incidents)}
            return found

        found = wait_until(reports, timeout=60, what="an RCA report for each scenario's incident")
    for scenario in expected:
        report = found[scenario.name]
        assert report["rootCause"]["id"] in scenario.case.accepted, (scenario.name, report)
        assert report["verdict"] in ("CONFIRMED", "LIKELY")
        assert report["problems"] == len(scenario.problems)
    # The storm's problems (and their updates) are grouped: one incident per scenario.
    assert found["storm"]["total"] == len(expected)
    assert 20 <= expected[2].notifications <= 50
    problems = sum(len(scenario.problems) for scenario in expected)
    notifications = sum(scenario.notifications for scenario in expected)
    assert f"sent {problems} problems in {notifications} notifications" in "".join(demo.lines)


def test_the_demo_refuses_a_data_folder_it_did_not_make(tmp_path):
    (tmp_path / "borealis.db").write_text("someone's data")
    run = subprocess.run(
        [BOREALIS, "demo", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert "holds files the demo did not make" in run.stderr
    assert (tmp_path / "borealis.db").read_text() == "someone's data"


def test_the_scenarios_share_no_entity():
    ids = [{entity["entityId"] for entity in s.case.entities} for s in scenarios(datetime.now(UTC))]
    assert sum(len(found) for found in ids) == len(set().union(*ids))


def test_a_shifted_case_happens_now_and_is_otherwise_the_same():
    case = generate(4, traps=())
    now = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    moved = shifted(case, now)
    delta = moved.timestamps[-1] - case.timestamps[-1]
    assert delta % MINUTE_MS == 0
    assert now - timedelta(minutes=1) < datetime.fromtimestamp(moved.timestamps[-1] / 1000, UTC) <= now
    assert moved.metrics == case.metrics
    assert moved.problem["startTime"] == case.problem["startTime"] + delta
    assert moved.problem["problemId"].endswith(f"_{moved.problem['startTime']}V2")
    assert [e["startTime"] - delta for e in moved.events] == [e["startTime"] for e in case.events]
    assert moved.onset - case.onset == timedelta(milliseconds=delta)
