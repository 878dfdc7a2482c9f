"""The generated RCA cases are deterministic, consistent like a real Dynatrace topology, and carry a cause
that the symptom can be traced to."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections import deque
from functools import cache

import httpx
import pytest

from borealis.simulation import (
    FAILURE_RATE,
    FAULTS,
    HOST_CPU,
    REQUESTS,
    RESPONSE_TIME,
    TRAFFIC,
    TRAPS,
    Case,
    generate,
    load,
)
from tests.support.case_digest import digest
from tests.support.shared import REPOSITORY

COMBINATIONS = [(fault, traffic) for fault in FAULTS for traffic in TRAFFIC]
DEPENDS = ("calls", "runsOnHost", "runsOnProcessGroupInstance", "runsOn", "isProcessOf")
ENTITY_ID = re.compile(r"^(SERVICE|PROCESS_GROUP|PROCESS_GROUP_INSTANCE|HOST)-[0-9A-F]{16}$")


@cache
def case_of(seed: int, fault: str | None = None, traffic: str | None = None) -> Case:
    return generate(seed, fault=fault, traffic=traffic)


def _mean(values):
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _index(case: Case, moment_ms: int) -> int:
    """The point of the minute that starts at ``moment_ms`` (points are stamped at the end of their minute)."""
    return next(i for i, stamp in enumerate(case.timestamps) if stamp > moment_ms)


def test_a_seed_always_gives_the_same_case_in_any_process():
    assert digest(generate(7)) == digest(generate(7))
    assert digest(generate(7)) != digest(generate(8))
    script = "from borealis.simulation import generate; from tests.support.case_digest import digest; "
    script += "print(digest(generate(7)))"
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPOSITORY)}
        run = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPOSITORY,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(run.stdout.strip())
    assert outputs == {digest(generate(7))}


def test_pinning_a_knob_keeps_the_rest_of_the_environment():
    drawn = case_of(11)
    pinned = generate(11, traffic="high" if drawn.traffic != "high" else "low")
    assert [e["entityId"] for e in pinned.entities] == [e["entityId"] for e in drawn.entities]
    assert pinned.traffic != drawn.traffic
    assert generate(11, traps=[]).traps == {}
    with pytest.raises(ValueError):
        generate(11, fault="meteor")


@pytest.mark.parametrize(("fault", "traffic"), COMBINATIONS)
def test_every_relationship_is_written_on_both_ends(fault, traffic):
    for seed in (3, 4):
        case = case_of(seed, fault, traffic)
        documents = {entity["entityId"]: entity for entity in case.entities}
        for entity in case.entities:
            assert ENTITY_ID.match(entity["entityId"]), entity["entityId"]
            assert entity["type"] == entity["entityId"].rsplit("-", 1)[0]
            for direction, opposite in (
                ("fromRelationships", "toRelationships"),
                ("toRelationships", "fromRelationships"),
            ):
                for relation, targets in entity[direction].items():
                    for target in targets:
                        other = documents[target["id"]]
                        assert target["type"] == other["type"]
                        back = [item["id"] for item in other[opposite].get(relation, [])]
                        assert entity["entityId"] in back, (entity["entityId"], relation, target["id"])


def test_the_topology_looks_like_a_microservice_estate():
    for seed in range(20, 30):
        case = case_of(seed)
        kinds = [entity["type"] for entity in case.entities]
        assert 20 <= kinds.count("SERVICE") == case.services <= 100
        assert 3 <= kinds.count("HOST") <= 10
        services = [entity for entity in case.entities if entity["type"] == "SERVICE"]
        types = {entity["properties"].get("serviceType") for entity in services}
        assert "DATABASE_SERVICE" in types
        assert any(
            entity["properties"].get("isExternalService")
            or entity["properties"].get("serviceType") in ("EXTERNAL", "OPAQUE")
            for entity in services
        )
        front = case.entity(case.symptom)
        assert 2 <= len(front["fromRelationships"]["calls"]) <= 5
        assert "calls" not in front["toRelationships"]
        hosts_of = [
            {h["id"] for h in entity["fromRelationships"].get("runsOnHost", [])} for entity in services
        ]
        busiest = max(sum(1 for hosts in hosts_of if host in hosts) for host in set().union(*hosts_of))
        assert busiest >= 2  # services share hosts
        assert len({entity["displayName"] for entity in services}) == len(services)


@pytest.mark.parametrize(("fault", "traffic"), COMBINATIONS)
def test_the_truth_is_reachable_from_the_symptom(fault, traffic):
    for seed in (3, 4):
        case = case_of(seed, fault, traffic)
        documents = {entity["entityId"]: entity for entity in case.entities}
        seen, queue = {case.symptom}, deque([case.symptom])
        while queue:
            current = queue.popleft()
            for relation in DEPENDS:
                for target in documents[current]["fromRelationships"].get(relation, []):
                    if target["id"] not in seen:
                        seen.add(target["id"])
                        queue.append(target["id"])
        assert case.truth in seen
        assert case.truth in case.accepted
        if fault == "host_saturation":
            assert case.truth.startswith("HOST-")
        else:
            assert case.truth.startswith("SERVICE-")


@pytest.mark.parametrize(("fault", "traffic"), COMBINATIONS)
def test_the_symptom_is_visibly_abnormal_after_the_start(fault, traffic):
    for seed in (3, 4):
        case = case_of(seed, fault, traffic)
        onset = _index(case, int(case.onset.timestamp() * 1000))
        opened = _index(case, case.problem["startTime"])
        assert 2 <= opened - onset <= 9
        assert 10 <= (case.now.timestamp() * 1000 - case.problem["startTime"]) / 60_000 <= 41
        rt = case.metrics[(RESPONSE_TIME, case.symptom)]
        errors = case.metrics[(FAILURE_RATE, case.symptom)]
        rt_before, rt_after = _mean(rt[onset - 90 : onset - 30]), _mean(rt[opened:])
        errors_before, errors_after = _mean(errors[onset - 90 : onset - 30]), _mean(errors[opened:])
        assert rt_after >= 1.5 * rt_before or errors_after - errors_before >= 1.5, (rt_before, rt_after)


def test_metrics_are_one_minute_points_over_three_hours_in_dynatrace_units():
    case = case_of(5)
    stamps = case.timestamps
    assert len(stamps) == 181
    assert all(later - earlier == 60_000 for earlier, later in itertools.pairwise(stamps))
    assert stamps[-1] <= case.now.timestamp() * 1000 < stamps[-1] + 60_000
    for (metric, entity_id), values in case.metrics.items():
        assert len(values) == len(stamps)
        assert metric.startswith("builtin:")
    front_rt = _mean(case.metrics[(RESPONSE_TIME, case.symptom)][:60])
    assert 2_000 <= front_rt <= 5_000_000  # microseconds
    for entity in case.entities:
        if entity["type"] == "HOST":
            assert all(0 <= v <= 100 for v in case.metrics[(HOST_CPU, entity["entityId"])] if v is not None)


def test_requests_flow_down_the_calls():
    case = case_of(9, "latency", "high")
    documents = {entity["entityId"]: entity for entity in case.entities}
    for entity in case.entities:
        callers = entity["toRelationships"].get("calls", []) if entity["type"] == "SERVICE" else []
        if not callers:
            continue
        own = _mean(case.metrics[(REQUESTS, entity["entityId"])][:60])
        callers_load = sum(_mean(case.metrics[(REQUESTS, c["id"])][:60]) for c in callers)
        assert own > 0
        # A callee never takes more than its callers send, at the calls-per-request the model allows.
        assert own <= 3.2 * callers_load, documents[entity["entityId"]]["displayName"]


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_leaves_its_own_marks(fault):
    for seed in (30, 31, 32):
        case = case_of(seed, fault)
        onset_ms = int(case.onset.timestamp() * 1000)
        onset = _index(case, onset_ms)
        truth_rt = case.metrics.get((RESPONSE_TIME, case.truth))
        if fault == "host_saturation":
            cpu = case.metrics.get((HOST_CPU, case.truth))
            if cpu is not None:  # the missing-series trap may have taken it
                assert _mean(cpu[onset + 3 :]) >= 85
                assert _mean(cpu[: onset - 30]) < 80
        elif fault == "traffic_collapse":
            requests = case.metrics[(REQUESTS, case.truth)]
            assert _mean(requests[onset + 3 :]) <= 0.25 * _mean(requests[: onset - 30])
        elif fault == "bad_deployment":
            deployments = [
                e
                for e in case.events
                if e["eventType"] in ("CUSTOM_DEPLOYMENT", "PROCESS_VERSION_CHANGE")
                and e["entityId"]["entityId"]["id"] in case.accepted
            ]
            assert deployments
            assert all(60_000 <= onset_ms - e["startTime"] <= 11 * 60_000 for e in deployments)
        elif fault == "latency" and truth_rt is not None:
            assert _mean(truth_rt[onset + 3 :]) >= 1.8 * _mean(truth_rt[: onset - 30])


def test_davis_names_the_cause_in_a_minority_of_cases_and_only_the_true_one():
    named = 0
    at_front = 0
    for seed in range(100, 160):
        case = case_of(seed)
        problem = case.problem
        assert problem["status"] == "OPEN"
        assert problem["endTime"] == -1
        assert [e["entityId"]["id"] for e in problem["impactedEntities"]] == [case.symptom]
        details = problem["evidenceDetails"]["details"]
        assert details[0]["entity"]["entityId"]["id"] == case.symptom
        assert details[0]["evidenceType"] == "EVENT"
        relevant = [d["entity"]["entityId"]["id"] for d in details if d["rootCauseRelevant"]]
        if problem["rootCauseEntity"] is None:
            assert relevant == []
        else:
            named += 1
            assert problem["rootCauseEntity"]["entityId"]["id"] == case.truth
            assert relevant
            assert set(relevant) <= case.accepted
        at_front += case.truth == case.symptom
    assert 3 <= named <= 18
    assert 2 <= at_front <= 15


def test_traps_are_applied_and_recorded():
    case = generate(40, fault="latency", traps=TRAPS)
    assert set(case.traps) <= set(TRAPS)
    assert {"unrelated_deployment", "noisy_metric"} <= set(case.traps)
    deployed = case.traps["unrelated_deployment"]
    assert deployed != case.truth
    assert any(
        e["eventType"] in ("CUSTOM_DEPLOYMENT", "PROCESS_VERSION_CHANGE")
        and e["entityId"]["entityId"]["id"] not in case.accepted
        for e in case.events
    )
    if "missing_series" in case.traps:
        entity_id, metric = case.traps["missing_series"].split()
        assert (metric, entity_id) not in case.metrics
        assert entity_id != case.symptom
    if "unrelated_anomaly" in case.traps:
        assert case.traps["unrelated_anomaly"] not in (case.truth, case.symptom)


def _api(fake, token, path, **params):
    response = httpx.get(
        f"{fake.url}{path}", params=params, headers={"Authorization": f"Api-Token {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_loaded_case_answers_the_entity_metric_and_event_apis(fake_dynatrace):
    case = generate(12, fault="bad_deployment", traffic="diurnal")
    load(case, fake_dynatrace)
    token = fake_dynatrace.add_token()
    listed = _api(fake_dynatrace, token, "/api/v2/entities", entitySelector="type(SERVICE)", pageSize=500)
    assert listed["totalCount"] == case.services
    callees = _api(
        fake_dynatrace,
        token,
        "/api/v2/entities",
        entitySelector=f'type(SERVICE),toRelationships.calls(entityId("{case.symptom}"))',
    )
    expected = {t["id"] for t in case.entity(case.symptom)["fromRelationships"]["calls"]}
    assert {e["entityId"] for e in callees["entities"]} == expected
    window = {"from": str(case.timestamps[0] - 60_000), "to": str(case.timestamps[-1])}
    metrics = _api(
        fake_dynatrace,
        token,
        "/api/v2/metrics/query",
        metricSelector=f"{RESPONSE_TIME},{FAILURE_RATE}",
        entitySelector=f'entityId("{case.symptom}")',
        resolution="1m",
        **window,
    )
    (series,) = metrics["result"][0]["data"]
    assert series["timestamps"] == case.timestamps
    assert series["values"] == case.metrics[(RESPONSE_TIME, case.symptom)]
    events = _api(fake_dynatrace, token, "/api/v2/events", **window)["events"]
    assert len(events) == len(case.events)
    problem = _api(
        fake_dynatrace, token, f"/api/v2/problems/{case.problem['problemId']}", fields="evidenceDetails"
    )
    assert problem["evidenceDetails"] == case.problem["evidenceDetails"]
    entity = _api(fake_dynatrace, token, f"/api/v2/entities/{case.truth}")
    assert entity["fromRelationships"] == case.entity(case.truth)["fromRelationships"]
