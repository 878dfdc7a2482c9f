"""The service's edges: health, authentication, JSON errors, per-user RCA settings."""

from __future__ import annotations

from tests.conftest import TEST_ACTOR


def test_health_endpoints_need_no_user(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_openapi_document_lists_the_seed_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/dynatrace/rca-settings" in paths
    assert client.get("/docs").status_code == 200


def test_dynatrace_routes_refuse_a_missing_key_with_json(client):
    response = client.get("/dynatrace/rca-settings")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "not_authenticated"
    assert "Authorization: Bearer" in error["message"]


def test_unknown_and_revoked_keys_are_refused(client, make_account, database):
    from borealis.auth import service

    account = make_account()
    bad = client.get("/dynatrace/rca-settings", headers={"Authorization": "Bearer brl_nope"})
    assert bad.status_code == 401
    assert account.client.get("/dynatrace/rca-settings").status_code == 200
    with database.session(write=True) as session:
        key = service.list_api_keys(db_session=session, workspace_id=account.workspace_id)[0]
        service.revoke_api_key(
            db_session=session,
            workspace_id=account.workspace_id,
            key_id_or_prefix=key.prefix,
            actor=TEST_ACTOR,
        )
        session.commit()
    assert account.client.get("/dynatrace/rca-settings").status_code == 401


def test_unknown_route_is_json_404(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "http_404"


def test_rca_setting_defaults_off_and_is_per_user(make_account):
    alice = make_account("alice@example.com")
    bob = make_account("bob@example.com")
    assert alice.client.get("/dynatrace/rca-settings").json() == {"rcaEnabled": False}

    changed = alice.client.put("/dynatrace/rca-settings", json={"rcaEnabled": True})
    assert changed.status_code == 200
    assert changed.json() == {"rcaEnabled": True}
    assert alice.client.get("/dynatrace/rca-settings").json() == {"rcaEnabled": True}
    assert bob.client.get("/dynatrace/rca-settings").json() == {"rcaEnabled": False}


def test_rca_setting_refuses_a_non_boolean(account):
    response = account.client.put("/dynatrace/rca-settings", json={"rcaEnabled": "yes"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert "rcaEnabled" in error["message"]
    assert account.client.get("/dynatrace/rca-settings").json() == {"rcaEnabled": False}


def test_oversized_body_is_413(account, settings):
    response = account.client.put(
        "/dynatrace/rca-settings",
        content=b"{" + b" " * (settings.max_body_bytes + 10) + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_every_answer_carries_a_request_id(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["x-request-id"] == "abc123"
    assert client.get("/healthz").headers["x-request-id"]
