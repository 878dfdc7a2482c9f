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
