"""The fake Dynatrace behaves like the Environment API where our code depends on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest


def _get(fake, path, token, **params):
    return httpx.get(
        f"{fake.environment_url}{path}",
        params=params,
        headers={"Authorization": f"Api-Token {token}"},
        timeout=10,
    )


def test_lookup_returns_scopes_and_expiry_of_a_known_token(fake_dynatrace):
    expiry = datetime.now(UTC) + timedelta(days=30)
    token = fake_dynatrace.add_token(["problems.read"], expires_at=expiry)
    response = httpx.post(
        f"{fake_dynatrace.url}/api/v2/apiTokens/lookup",
        json={"token": token},
        headers={"Authorization": f"Api-Token {token}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["scopes"] == ["problems.read"]
    assert body["enabled"] is True
    assert body["expirationDate"].startswith(expiry.strftime("%Y-%m-%dT%H:%M"))
    assert token not in response.text


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Missing authorization parameter."),
        ("Api-Token dt0c01.UNKNOWN.TOKEN", "Token Authentication failed"),
        ("Bearer whatever", "Token Authentication failed"),
    ],
)
def test_bad_credentials_get_401_in_the_dynatrace_envelope(fake_dynatrace, header, message):
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{fake_dynatrace.url}/api/v2/problems", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": 401, "message": message}}


def test_disabled_and_expired_tokens_are_refused(fake_dynatrace):
    disabled = fake_dynatrace.add_token(enabled=False)
    expired = fake_dynatrace.add_token(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    assert "disabled" in _get(fake_dynatrace, "/api/v2/problems", disabled).json()["error"]["message"]
    assert "expired" in _get(fake_dynatrace, "/api/v2/problems", expired).json()["error"]["message"]


def test_missing_scope_is_403_naming_the_scope(fake_dynatrace):
    token = fake_dynatrace.add_token(["entities.read"])
    response = _get(fake_dynatrace, "/api/v1/config/clusterversion", token)
    assert response.status_code == 403
    assert "DataExport" in response.json()["error"]["message"]


def test_problems_page_by_next_page_key_alone(fake_dynatrace):
    token = fake_dynatrace.add_token()
    for _ in range(5):
        fake_dynatrace.add_problem()
    first = _get(fake_dynatrace, "/api/v2/problems", token, pageSize=2, **{"from": "now-1d"}).json()
    assert len(first["problems"]) == 2
    assert first["totalCount"] == 5
    mixed = _get(fake_dynatrace, "/api/v2/problems", token, nextPageKey=first["nextPageKey"], pageSize=2)
    assert mixed.status_code == 400
    second = _get(fake_dynatrace, "/api/v2/problems", token, nextPageKey=first["nextPageKey"]).json()
    third = _get(fake_dynatrace, "/api/v2/problems", token, nextPageKey=second["nextPageKey"]).json()
    assert "nextPageKey" not in third
    ids = [p["problemId"] for page in (first, second, third) for p in page["problems"]]
    assert sorted(ids) == sorted(fake_dynatrace.problems)


def test_problem_details_only_when_asked_for(fake_dynatrace):
    token = fake_dynatrace.add_token()
    problem = fake_dynatrace.add_problem(evidenceDetails={"totalCount": 0, "details": []})
    plain = _get(fake_dynatrace, f"/api/v2/problems/{problem['problemId']}", token).json()
    assert "evidenceDetails" not in plain
    full = _get(
        fake_dynatrace, f"/api/v2/problems/{problem['problemId']}", token, fields="+evidenceDetails"
    ).json()
    assert full["evidenceDetails"] == {"totalCount": 0, "details": []}
    missing = _get(fake_dynatrace, "/api/v2/problems/nope", token)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404


def test_managed_mode_answers_only_under_the_environment_path(fake_dynatrace):
    token = fake_dynatrace.add_token()
    fake_dynatrace.managed = True
    assert _get(fake_dynatrace, "/api/v1/config/clusterversion", token).status_code == 200
    root = httpx.get(
        f"{fake_dynatrace.url}/api/v1/config/clusterversion", headers={"Authorization": f"Api-Token {token}"}
    )
    assert root.status_code == 404
    assert root.headers["content-type"].startswith("text/html")


def test_injected_failures_apply_the_given_number_of_times(fake_dynatrace):
    token = fake_dynatrace.add_token()
    fake_dynatrace.fail("/api/v2/problems", 429, retry_after=3, times=1)
    limited = _get(fake_dynatrace, "/api/v2/problems", token)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert _get(fake_dynatrace, "/api/v2/problems", token).status_code == 200
    fake_dynatrace.fail("/api/v2/*", html=True)
    page = _get(fake_dynatrace, "/api/v2/problems", token)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


def test_entities_get_and_list(fake_dynatrace):
    token = fake_dynatrace.add_token()
    fake_dynatrace.add_entity("HOST-1", "web-1")
    fake_dynatrace.add_entity("SERVICE-1", "checkout")
    assert _get(fake_dynatrace, "/api/v2/entities/HOST-1", token).json()["displayName"] == "web-1"
    listed = _get(fake_dynatrace, "/api/v2/entities", token, entitySelector='type("SERVICE")').json()
    assert [entity["entityId"] for entity in listed["entities"]] == ["SERVICE-1"]


# ---- entity selectors ------------------------------------------------------------------------------


def _ref(entity_id):
    return {"id": entity_id, "type": entity_id.rsplit("-", 1)[0]}


def _topology(fake):
    """frontend calls checkout and search; checkout calls orders-db; checkout runs on host web-1."""
    fake.add_entity(
        "SERVICE-FRONT",
        "frontend",
        fromRelationships={"calls": [_ref("SERVICE-CHECKOUT"), _ref("SERVICE-SEARCH")]},
    )
    fake.add_entity(
        "SERVICE-CHECKOUT",
        "checkout-api",
        properties={"serviceType": "WEB_REQUEST_SERVICE"},
        fromRelationships={"calls": [_ref("SERVICE-DB")], "runsOnHost": [_ref("HOST-WEB1")]},
        toRelationships={"calls": [_ref("SERVICE-FRONT")]},
        tags=[
            {"context": "CONTEXTLESS", "key": "team", "value": "shop", "stringRepresentation": "team:shop"}
        ],
    )
    fake.add_entity("SERVICE-SEARCH", "search, v2 (beta)", toRelationships={"calls": [_ref("SERVICE-FRONT")]})
    fake.add_entity(
        "SERVICE-DB",
        "orders-db",
        properties={"serviceType": "DATABASE_SERVICE"},
        toRelationships={"calls": [_ref("SERVICE-CHECKOUT")]},
    )
    fake.add_entity("HOST-WEB1", "web-1", toRelationships={"runsOnHost": [_ref("SERVICE-CHECKOUT")]})


def _selected(fake, token, selector, **params):
    response = _get(fake, "/api/v2/entities", token, entitySelector=selector, **params)
    assert response.status_code == 200, response.text
    return sorted(entity["entityId"] for entity in response.json()["entities"])


def test_the_selector_parser_reads_nesting_quotes_and_escapes():
    from borealis.simulation import parse_criteria

    (kind, related, name) = parse_criteria(
        'type(SERVICE), toRelationships.calls(type("SERVICE"),entityName("a,b(c)")), entityName("say ~"hi~" ~~")'
    )
    assert (kind.name, kind.values) == ("type", ("SERVICE",))
    assert related.relationship == ("toRelationships", "calls")
    assert [(c.name, c.values) for c in related.nested] == [
        ("type", ("SERVICE",)),
        ("entityName", ("a,b(c)",)),
    ]
    assert name.values == ('say "hi" ~',)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ('type("SERVICE")', ["SERVICE-CHECKOUT", "SERVICE-DB", "SERVICE-FRONT", "SERVICE-SEARCH"]),
        ("type(SERVICE),entityId(SERVICE-DB)", ["SERVICE-DB"]),
        ('entityId("SERVICE-FRONT","SERVICE-DB")', ["SERVICE-DB", "SERVICE-FRONT"]),
        # What frontend calls: entities whose toRelationships.calls hold the frontend.
        (
            'type(SERVICE),toRelationships.calls(entityId("SERVICE-FRONT"))',
            ["SERVICE-CHECKOUT", "SERVICE-SEARCH"],
        ),
        # Who calls orders-db.
        ('type(SERVICE),fromRelationships.calls(entityId("SERVICE-DB"))', ["SERVICE-CHECKOUT"]),
        (
            'type(SERVICE),fromRelationships.runsOnHost(type(HOST),entityName.equals("WEB-1"))',
            ["SERVICE-CHECKOUT"],
        ),
        # Two hops: who calls a service that calls a database.
        (
            "type(SERVICE),fromRelationships.calls(type(SERVICE),fromRelationships.calls(type(SERVICE),"
            'serviceType("DATABASE_SERVICE")))',
            ["SERVICE-FRONT"],
        ),
        ('type(SERVICE),entityName("CHECK")', ["SERVICE-CHECKOUT"]),
        ('type(SERVICE),entityName.startsWith("orders")', ["SERVICE-DB"]),
        ('type(SERVICE),caseSensitive(entityName.startsWith("Orders"))', []),
        ('type(SERVICE),entityName.in("search, v2 (beta)","frontend")', ["SERVICE-FRONT", "SERVICE-SEARCH"]),
        ('type(SERVICE),not(entityId("SERVICE-FRONT")),tag("team:shop")', ["SERVICE-CHECKOUT"]),
        ("type(SERVICE),serviceType.exists()", ["SERVICE-CHECKOUT", "SERVICE-DB"]),
    ],
)
def test_entity_selectors_filter_as_dynatrace_does(fake_dynatrace, selector, expected):
    token = fake_dynatrace.add_token()
    _topology(fake_dynatrace)
    assert _selected(fake_dynatrace, token, selector) == expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ('entityName("frontend")', 'must set type("TYPE") or entityId("id")'),
        ('entityId("SERVICE-FRONT","HOST-WEB1")', "same type"),
        ('type("SERVICE","HOST")', "one entity type"),
        ('type(SERVICE),toRelationships.calls(entityName("x"))', 'must set type("TYPE") or entityId("id")'),
        ('type(SERVICE),not(type("HOST"))', "cannot be negated"),
        ('type(SERVICE),entityName("unterminated)', "unterminated"),
        ("type(SERVICE", "expected ')'"),
        ('type(SERVICE),entityId("' + "SERVICE-0," * 200 + '")', "2000 characters"),
    ],
)
def test_bad_entity_selectors_are_400_in_the_dynatrace_envelope(fake_dynatrace, selector, message):
    token = fake_dynatrace.add_token()
    for path in ("/api/v2/entities", "/api/v2/events"):
        params = {"entitySelector": selector, "metricSelector": "builtin:host.cpu.usage"}
        response = _get(fake_dynatrace, path, token, **params)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == 400
        assert message in error["message"]
        assert error["constraintViolations"][0]["path"] == "entitySelector"


def test_the_entity_list_shows_the_base_fields_unless_more_are_asked_for(fake_dynatrace):
    token = fake_dynatrace.add_token()
    _topology(fake_dynatrace)
    selector = 'entityId("SERVICE-CHECKOUT")'
    (plain,) = _get(fake_dynatrace, "/api/v2/entities", token, entitySelector=selector).json()["entities"]
    assert plain == {"entityId": "SERVICE-CHECKOUT", "type": "SERVICE", "displayName": "checkout-api"}
    fields = (
        "+properties,+fromRelationships,+toRelationships,+tags,+managementZones,+firstSeenTms,+lastSeenTms"
    )
    (full,) = _get(fake_dynatrace, "/api/v2/entities", token, entitySelector=selector, fields=fields).json()[
        "entities"
    ]
    assert full["fromRelationships"]["calls"] == [_ref("SERVICE-DB")]
    assert full["toRelationships"]["calls"] == [_ref("SERVICE-FRONT")]
    assert full["properties"] == {"serviceType": "WEB_REQUEST_SERVICE"}
    assert {"tags", "managementZones", "firstSeenTms", "lastSeenTms"} <= set(full)
    (one,) = _get(
        fake_dynatrace,
        "/api/v2/entities",
        token,
        entitySelector=selector,
        fields="+properties.serviceType,+fromRelationships.runsOnHost",
    ).json()["entities"]
    assert one["properties"] == {"serviceType": "WEB_REQUEST_SERVICE"}
    assert one["fromRelationships"] == {"runsOnHost": [_ref("HOST-WEB1")]}
    wrong = _get(fake_dynatrace, "/api/v2/entities", token, entitySelector=selector, fields="+nonsense")
    assert wrong.status_code == 400


def test_the_entity_list_pages_up_to_500_and_keeps_the_fields(fake_dynatrace):
    token = fake_dynatrace.add_token()
    for index in range(120):
        fake_dynatrace.add_entity(f"SERVICE-{index:016X}", f"svc-{index:03d}", properties={"n": index})
    too_big = _get(fake_dynatrace, "/api/v2/entities", token, entitySelector="type(SERVICE)", pageSize=501)
    assert too_big.status_code == 400
    everything = _get(fake_dynatrace, "/api/v2/entities", token, entitySelector="type(SERVICE)", pageSize=500)
    assert len(everything.json()["entities"]) == 120
    page = _get(
        fake_dynatrace,
        "/api/v2/entities",
        token,
        entitySelector="type(SERVICE)",
        fields="+properties",
        sort="-name",
    ).json()
    assert page["totalCount"] == 120
    assert page["pageSize"] == 50
    seen = list(page["entities"])
    while page.get("nextPageKey"):
        page = _get(fake_dynatrace, "/api/v2/entities", token, nextPageKey=page["nextPageKey"]).json()
        seen.extend(page["entities"])
    assert [entity["displayName"] for entity in seen] == [
        f"svc-{index:03d}" for index in reversed(range(120))
    ]
    assert all("properties" in entity for entity in seen)


# ---- metrics -----------------------------------------------------------------------------------------

T = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # an hour boundary, in milliseconds
MINUTE = 60_000


def _metric(fake, token, **params):
    response = _get(fake, "/api/v2/metrics/query", token, **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_metrics_are_averaged_into_aligned_slots_stamped_at_their_end(fake_dynatrace):
    token = fake_dynatrace.add_token()
    stamps = [T + MINUTE * (i + 1) for i in range(15)]  # one-minute points covering T .. T+15m
    values = [float(i) for i in range(5)] + [None] * 5 + [10.0, None, 20.0, None, 30.0]
    fake_dynatrace.add_metric_series("builtin:service.response.time", "SERVICE-A", stamps, values)
    body = _metric(
        fake_dynatrace,
        token,
        metricSelector="builtin:service.response.time",
        resolution="5m",
        **{"from": str(T + 30_000), "to": str(T + 15 * MINUTE)},
    )
    assert body["resolution"] == "5m"
    assert body["nextPageKey"] is None
    (series,) = body["result"][0]["data"]
    assert series["dimensionMap"] == {"dt.entity.service": "SERVICE-A"}
    assert series["dimensions"] == ["SERVICE-A"]
    assert series["timestamps"] == [T + 5 * MINUTE, T + 10 * MINUTE, T + 15 * MINUTE]
    assert series["values"] == [2.0, None, 20.0]
    # The last slot holding ``to`` ends after it: its timestamp lies in the future of the timeframe.
    late = _metric(
        fake_dynatrace,
        token,
        metricSelector="builtin:service.response.time",
        resolution="1h",
        **{"from": str(T), "to": str(T + 15 * MINUTE)},
    )
    assert late["result"][0]["data"][0]["timestamps"] == [T + 60 * MINUTE]
    assert late["result"][0]["data"][0]["values"] == [pytest.approx(sum([0, 1, 2, 3, 4, 10, 20, 30]) / 8)]
    whole = _metric(
        fake_dynatrace,
        token,
        metricSelector="builtin:service.response.time",
        resolution="Inf",
        **{"from": str(T), "to": str(T + 15 * MINUTE)},
    )
    assert whole["resolution"] == "Inf"
    assert whole["result"][0]["data"][0]["timestamps"] == [T + 15 * MINUTE]
    one_minute = _metric(
        fake_dynatrace,
        token,
        metricSelector="builtin:service.response.time",
        **{"from": str(T), "to": str(T + 15 * MINUTE)},
    )
    assert one_minute["resolution"] == "1m"  # 120 points over 15 minutes: the finest slot
    assert one_minute["result"][0]["data"][0]["values"] == values
    bad = _get(fake_dynatrace, "/api/v2/metrics/query", token, metricSelector="builtin:x", resolution="soon")
    assert bad.status_code == 400


def test_metrics_select_many_entities_in_one_call(fake_dynatrace):
    token = fake_dynatrace.add_token()
    _topology(fake_dynatrace)
    stamps = [T + MINUTE * (i + 1) for i in range(3)]
    for entity_id in ("SERVICE-FRONT", "SERVICE-CHECKOUT", "SERVICE-DB"):
        for key in ("builtin:service.response.time", "builtin:service.errors.total.rate"):
            fake_dynatrace.add_metric_series(key, entity_id, stamps, [1.0, 2.0, 3.0])
    fake_dynatrace.add_metric_series("builtin:host.cpu.usage", "HOST-WEB1", stamps, [50.0, 60.0, 70.0])
    frame = {"from": str(T), "to": str(T + 3 * MINUTE)}
    body = _metric(
        fake_dynatrace,
        token,
        metricSelector="builtin:service.(response.time,errors.total.rate)",
        entitySelector='type(SERVICE),entityId("SERVICE-FRONT","SERVICE-DB")',
        **frame,
    )
    assert [result["metricId"] for result in body["result"]] == [
        "builtin:service.response.time",
        "builtin:service.errors.total.rate",
    ]
    for result in body["result"]:
        assert sorted(s["dimensionMap"]["dt.entity.service"] for s in result["data"]) == [
            "SERVICE-DB",
            "SERVICE-FRONT",
        ]
    assert body["totalCount"] == 2
    callees = _metric(
        fake_dynatrace,
        token,
        metricSelector="builtin:service.response.time",
        entitySelector='type(SERVICE),toRelationships.calls(entityId("SERVICE-FRONT"))',
        **frame,
    )
    assert [s["dimensions"] for s in callees["result"][0]["data"]] == [["SERVICE-CHECKOUT"]]
    hosts = _metric(
        fake_dynatrace, token, metricSelector="builtin:host.cpu.usage", entitySelector="type(HOST)", **frame
    )
    assert hosts["result"][0]["data"][0]["values"] == [50.0, 60.0, 70.0]
    eleven = ",".join(f"builtin:m{i}" for i in range(11))
    assert _get(fake_dynatrace, "/api/v2/metrics/query", token, metricSelector=eleven).status_code == 400


# ---- events ------------------------------------------------------------------------------------------


def _event(event_id, event_type, entity_id, start):
    return {
        "eventId": event_id,
        "eventType": event_type,
        "title": event_type,
        "startTime": start,
        "endTime": -1,
        "status": "OPEN",
        "entityId": {"entityId": _ref(entity_id), "name": entity_id},
        "properties": [],
    }


def test_events_are_selected_by_entity_and_event_type(fake_dynatrace):
    token = fake_dynatrace.add_token()
    _topology(fake_dynatrace)
    now = datetime.now(UTC)
    start = int((now - timedelta(minutes=30)).timestamp() * 1000)
    fake_dynatrace.add_event(_event("1", "CUSTOM_DEPLOYMENT", "SERVICE-CHECKOUT", start))
    fake_dynatrace.add_event(_event("2", "SERVICE_SLOWDOWN", "SERVICE-FRONT", start + 1000))
    fake_dynatrace.add_event(_event("3", "CPU_SATURATED", "HOST-WEB1", start + 2000))

    def ids(**params):
        response = _get(fake_dynatrace, "/api/v2/events", token, **params)
        assert response.status_code == 200, response.text
        return [event["eventId"] for event in response.json()["events"]]

    assert ids() == ["3", "2", "1"]
    assert ids(entitySelector="type(SERVICE)") == ["2", "1"]
    assert ids(entitySelector='entityId("SERVICE-CHECKOUT","SERVICE-FRONT")') == ["2", "1"]
    assert ids(entitySelector='type(HOST),toRelationships.runsOnHost(entityId("SERVICE-CHECKOUT"))') == ["3"]
    assert ids(entitySelector="type(SERVICE)", eventSelector='eventType("CUSTOM_DEPLOYMENT")') == ["1"]
    assert ids(eventSelector='status("OPEN"),eventId("2","3")') == ["3", "2"]
    two_types = _get(
        fake_dynatrace,
        "/api/v2/events",
        token,
        eventSelector='eventType("CUSTOM_DEPLOYMENT","CPU_SATURATED")',
    )
    assert two_types.status_code == 400
    assert _get(fake_dynatrace, "/api/v2/events", token, pageSize=1000).status_code == 200
    assert _get(fake_dynatrace, "/api/v2/events", token, pageSize=1001).status_code == 400
