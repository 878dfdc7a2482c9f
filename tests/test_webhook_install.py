"""Webhook auto-install through Settings 2.0, over real HTTP against the fake Dynatrace."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import re

import httpx
import pytest
import sqlalchemy as sa

from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.errors import ResourceNotFound, UpstreamError
from borealis.dynatrace.models import Connection
from borealis.dynatrace.template import SUGGESTED_PAYLOAD
from borealis.simulation import ALERTING_PROFILE_SCHEMA, ALL_SCOPES, PROBLEM_NOTIFICATION_SCHEMA
from tests.support.forms import csrf_from, log_in
from tests.support.webhooks import notification

WITHOUT_WRITE = tuple(scope for scope in ALL_SCOPES if scope != "settings.write")
WITHOUT_SETTINGS = tuple(scope for scope in ALL_SCOPES if not scope.startswith("settings."))


def connect(account, fake, scopes=ALL_SCOPES, url=None) -> str:
    token = fake.add_token(scopes)
    response = account.client.post(
        "/dynatrace/connect", json={"environmentUrl": url or fake.environment_url, "apiToken": token}
    )
    assert response.status_code == 200, response.text
    return token


def secret_of(app, database, workspace_id) -> str:
    with database.session() as session:
        connection = session.scalar(sa.select(Connection).where(Connection.workspace_id == workspace_id))
        return app.state.secret_box.decrypt(connection.webhook_secret_ciphertext)


def install(account, **body) -> httpx.Response:
    return account.client.post("/dynatrace/webhook/install", json=body or None)


def header_value(item) -> str:
    [header] = item["value"]["webHookNotification"]["headers"]
    assert header["name"] == "Authorization"
    assert header["secret"] is True
    return header["secretValue"]


def hand_made(fake, url: str, name: str = "Borealis") -> str:
    """A notification made in the Dynatrace UI from the manual steps."""
    return fake.add_settings_object(
        PROBLEM_NOTIFICATION_SCHEMA,
        {
            "enabled": True,
            "displayName": name,
            "type": "WEBHOOK",
            "alertingProfile": fake.default_alerting_profile,
            "webHookNotification": {
                "url": url,
                "acceptAnyCertificate": False,
                "notifyClosedProblems": False,
                "notifyEventMergesEnabled": False,
                "headers": [],
                "payload": '{"State": "{State}"}',
            },
        },
    )


# --- install -------------------------------------------------------------------------------------------


def test_installing_twice_leaves_one_notification(account, fake_dynatrace, live_server, app, database):
    connect(account, fake_dynatrace)
    first = install(account)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["installed"] is True
    assert body["action"] == "created"
    assert body["alertingProfile"] == {
        "id": fake_dynatrace.default_alerting_profile,
        "name": "Default",
        "default": True,
    }
    assert body["alertingProfileChoice"] == "default"
    assert "default" in body["message"]
    assert "BOREALIS_PUBLIC_URL" in body["warnings"][0]  # the live server listens on loopback

    [item] = fake_dynatrace.problem_notifications()
    value = item["value"]
    webhook = value["webHookNotification"]
    assert item["objectId"] == body["objectId"]
    assert value["displayName"] == "Borealis"
    assert value["type"] == "WEBHOOK"
    assert value["enabled"] is True
    assert value["alertingProfile"] == fake_dynatrace.default_alerting_profile
    assert (
        webhook["url"] == f"{live_server.url}/dynatrace/webhook/{account.workspace_id}" == body["webhookUrl"]
    )
    assert webhook["payload"] == SUGGESTED_PAYLOAD
    assert webhook["notifyClosedProblems"] is True
    assert webhook["notifyEventMergesEnabled"] is True
    assert header_value(item) == f"Bearer {secret_of(app, database, account.workspace_id)}"

    second = install(account)
    assert second.status_code == 200, second.text
    assert second.json()["action"] == "updated"
    assert second.json()["objectId"] == body["objectId"]
    assert [item["objectId"] for item in fake_dynatrace.problem_notifications()] == [body["objectId"]]


@pytest.fixture
def public_url(app):
    """Run the app with BOREALIS_PUBLIC_URL set for one test."""
    original = app.state.settings
    app.state.settings = original.model_copy(update={"public_url": "https://borealis.example.com/"})
    yield "https://borealis.example.com"
    app.state.settings = original


def test_the_notification_calls_the_public_url_when_one_is_set(account, fake_dynatrace, public_url):
    connect(account, fake_dynatrace)
    body = install(account).json()
    assert body["webhookUrl"] == f"{public_url}/dynatrace/webhook/{account.workspace_id}"
    assert body["warnings"] == []
    [item] = fake_dynatrace.problem_notifications()
    assert item["value"]["webHookNotification"]["url"] == body["webhookUrl"]


def test_status_shows_the_installed_notification(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    before = account.client.get("/dynatrace/status").json()
    assert before["webhookInstalled"] is False
    assert before["webhookInstall"] is None
    object_id = install(account).json()["objectId"]
    status = account.client.get("/dynatrace/status").json()
    assert status["webhookInstalled"] is True
    assert status["webhookInstall"]["objectId"] == object_id
    assert status["webhookInstall"]["displayName"] == "Borealis"
    assert status["webhookInstall"]["alertingProfile"]["name"] == "Default"
    assert status["webhookInstall"]["installedAt"]


def test_deliveries_from_the_installed_notification_are_accepted(account, fake_dynatrace, client):
    connect(account, fake_dynatrace)
    install(account)
    [item] = fake_dynatrace.problem_notifications()
    url = item["value"]["webHookNotification"]["url"]
    delivered = client.post(url, json=notification(), headers={"Authorization": header_value(item)})
    assert delivered.status_code == 200, delivered.text
    assert client.post(url, json=notification()).status_code == 401


def test_alerting_profiles_are_listed_and_the_requested_one_is_used(account, fake_dynatrace):
    production = fake_dynatrace.add_alerting_profile("Production")
    connect(account, fake_dynatrace)
    listed = account.client.get("/dynatrace/alerting-profiles")
    assert listed.status_code == 200, listed.text
    assert listed.json()["alertingProfiles"] == [
        {"id": fake_dynatrace.default_alerting_profile, "name": "Default", "default": True},
        {"id": production, "name": "Production", "default": False},
    ]
    body = install(account, alertingProfile=production).json()
    assert body["alertingProfileChoice"] == "requested"
    assert body["alertingProfile"]["name"] == "Production"
    [item] = fake_dynatrace.problem_notifications()
    assert item["value"]["alertingProfile"] == production
    status = account.client.get("/dynatrace/status").json()
    assert status["webhookInstall"]["alertingProfile"]["id"] == production
    assert status["webhookInstall"]["alertingProfile"]["name"] == "Production"

    moved = install(account).json()  # no profile named: back to the default, same notification
    assert moved["objectId"] == body["objectId"]
    assert fake_dynatrace.problem_notifications()[0]["value"]["alertingProfile"] == (
        fake_dynatrace.default_alerting_profile
    )


def test_without_a_default_profile_the_first_is_taken_and_the_answer_says_so(account, fake_dynatrace):
    fake_dynatrace.settings_objects.clear()
    ops = fake_dynatrace.add_alerting_profile("Ops")
    fake_dynatrace.add_alerting_profile("Dev")
    connect(account, fake_dynatrace)
    body = install(account).json()
    assert body["alertingProfileChoice"] == "first"
    assert body["alertingProfile"]["id"] == ops
    assert "no profile named 'Default'" in body["message"]


def test_an_unknown_alerting_profile_is_refused_and_nothing_is_created(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    response = install(account, alertingProfile="no-such-profile")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"]["field"] == "alertingProfile"
    assert "GET /dynatrace/alerting-profiles" in error["message"]
    assert fake_dynatrace.problem_notifications() == []


def test_install_without_a_body_or_with_an_empty_one_uses_the_default(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    bare = account.client.post("/dynatrace/webhook/install")
    assert bare.status_code == 200, bare.text
    empty = account.client.post("/dynatrace/webhook/install", json={})
    assert empty.status_code == 200, empty.text
    assert bare.json()["objectId"] == empty.json()["objectId"]
    assert len(fake_dynatrace.problem_notifications()) == 1


def test_a_notification_made_by_hand_is_adopted_not_duplicated(account, fake_dynatrace, app, database):
    connect(account, fake_dynatrace)
    secret = secret_of(app, database, account.workspace_id)
    pasted = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    assert f"token={secret}" in pasted
    by_hand = hand_made(fake_dynatrace, pasted)
    body = install(account).json()
    assert body["action"] == "updated"
    assert body["objectId"] == by_hand
    [item] = fake_dynatrace.problem_notifications()
    webhook = item["value"]["webHookNotification"]
    assert "token=" not in webhook["url"]
    assert webhook["notifyClosedProblems"] is True
    assert header_value(item) == f"Bearer {secret}"


def test_duplicates_of_the_notification_are_removed(account, fake_dynatrace, live_server):
    connect(account, fake_dynatrace)
    url = f"{live_server.url}/dynatrace/webhook/{account.workspace_id}"
    older = hand_made(fake_dynatrace, url)
    newer = hand_made(fake_dynatrace, url + "?token=old")
    body = install(account).json()
    assert body["objectId"] == older
    assert body["removedDuplicates"] == [newer]
    assert [item["objectId"] for item in fake_dynatrace.problem_notifications()] == [older]


def test_another_users_borealis_notification_is_left_alone(account, fake_dynatrace, live_server):
    connect(account, fake_dynatrace)
    theirs = hand_made(fake_dynatrace, f"{live_server.url}/dynatrace/webhook/someone-else?token=theirs")
    untouched = json.dumps(fake_dynatrace.settings_objects[theirs], sort_keys=True)
    body = install(account).json()
    assert body["action"] == "created"
    assert body["objectId"] != theirs
    assert len(fake_dynatrace.problem_notifications()) == 2
    assert json.dumps(fake_dynatrace.settings_objects[theirs], sort_keys=True) == untouched


def test_installing_after_it_was_deleted_in_dynatrace_creates_it_again(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    first = install(account).json()["objectId"]
    fake_dynatrace.settings_objects.pop(first)
    again = install(account).json()
    assert again["action"] == "created"
    assert [item["objectId"] for item in fake_dynatrace.problem_notifications()] == [again["objectId"]]
    assert account.client.get("/dynatrace/status").json()["webhookInstall"]["objectId"] == again["objectId"]


def test_concurrent_installs_end_with_one_notification(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    # Creating is slow, so every install lists before any has created: each creates one, then the
    # duplicates go.
    fake_dynatrace.fail("/api/v2/settings/objects", None, method="POST", delay=0.5, times=4)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: install(account), range(4)))
    assert [answer.status_code for answer in answers] == [200] * 4, [answer.text for answer in answers]
    [item] = fake_dynatrace.problem_notifications()
    assert account.client.get("/dynatrace/status").json()["webhookInstall"]["objectId"] == item["objectId"]


# --- missing scopes ------------------------------------------------------------------------------------


def test_without_settings_write_the_answer_names_the_scope_and_gives_the_manual_steps(
    account, fake_dynatrace, app, database
):
    connect(account, fake_dynatrace, WITHOUT_WRITE)
    fake_dynatrace.requests.clear()
    response = install(account)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "dynatrace_scope_missing"
    assert "'settings.write'" in error["message"]
    assert "by hand" in error["message"]
    details = error["details"]
    assert details["missingScopes"] == ["settings.write"]
    assert details["suggestedPayload"] == SUGGESTED_PAYLOAD
    manual = account.client.get("/dynatrace/webhook-url").json()
    assert len(details["instructions"]) == len(manual["instructions"])
    assert any("Custom Integration" in step for step in details["instructions"])
    assert any("GET /dynatrace/webhook-url" in step for step in details["instructions"])
    assert secret_of(app, database, account.workspace_id) not in response.text
    assert not [r for r in fake_dynatrace.requests if r.path.startswith("/api/v2/settings")]
    assert fake_dynatrace.problem_notifications() == []


def test_without_settings_read_the_alerting_profiles_answer_explains(account, fake_dynatrace):
    connect(account, fake_dynatrace, WITHOUT_SETTINGS)
    response = account.client.get("/dynatrace/alerting-profiles")
    assert response.status_code == 422
    error = response.json()["error"]
    assert "'settings.read'" in error["message"]
    assert error["details"]["instructions"]
    assert install(account).json()["error"]["details"]["missingScopes"] == ["settings.read", "settings.write"]


def test_a_scope_added_to_the_token_later_is_noticed(account, fake_dynatrace):
    token = connect(account, fake_dynatrace, WITHOUT_WRITE)
    fake_dynatrace.token(token).scopes.append("settings.write")  # edited in Dynatrace after connecting
    response = install(account)
    assert response.status_code == 200, response.text
    assert "settings.write" in account.client.get("/dynatrace/status").json()["scopes"]


def test_a_scope_removed_in_dynatrace_after_connecting_gives_the_manual_steps(account, fake_dynatrace):
    token = connect(account, fake_dynatrace)
    fake_dynatrace.token(token).scopes.remove("settings.write")
    response = install(account)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["missingScopes"] == ["settings.write"]
    assert fake_dynatrace.problem_notifications() == []


def test_not_connected_install_is_409(account, fake_dynatrace):
    response = install(account)
    assert response.status_code == 409
    assert "POST /dynatrace/connect" in response.json()["error"]["message"]


def test_dynatrace_refusing_the_notification_is_explained_without_echoing_the_secret(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    refusal = {
        "code": 400,
        "error": {
            "code": 400,
            "message": "Constraints violated.",
            "constraintViolations": [
                {
                    "path": "webHookNotification.url",
                    "message": "host not allowed",
                    "parameterLocation": "PAYLOAD_BODY",
                }
            ],
        },
        "invalidValue": {"webHookNotification": {"headers": [{"secretValue": "Bearer ECHOED-SECRET"}]}},
    }
    fake_dynatrace.fail("/api/v2/settings/objects", 400, method="POST", body=[refusal], times=1)
    response = install(account)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "webHookNotification.url: host not allowed" in message
    assert "ECHOED-SECRET" not in response.text
    fake_dynatrace.fail("/api/v2/settings/objects", 207, method="POST", body=[refusal], times=1)
    mixed = install(account)
    assert mixed.status_code == 502
    assert "host not allowed" in mixed.json()["error"]["message"]
    assert account.client.get("/dynatrace/status").json()["webhookInstalled"] is False


# --- disconnect and rotation ---------------------------------------------------------------------------


def test_disconnect_removes_the_installed_notification(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    object_id = install(account).json()["objectId"]
    response = account.client.delete("/dynatrace/disconnect")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["connected"] is False
    assert body["webhookRemoval"]["removed"] is True
    assert body["webhookRemoval"]["objectId"] == object_id
    assert fake_dynatrace.problem_notifications() == []
    assert account.client.get("/dynatrace/status").json()["webhookInstalled"] is False


def test_disconnect_without_an_installed_notification_says_nothing_about_it(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    body = account.client.delete("/dynatrace/disconnect").json()
    assert body == {"success": True, "connected": False}


def test_disconnect_when_the_token_no_longer_allows_removal_still_disconnects(account, fake_dynatrace):
    token = connect(account, fake_dynatrace)
    install(account)
    fake_dynatrace.token(token).scopes.remove("settings.write")
    response = account.client.delete("/dynatrace/disconnect")
    assert response.status_code == 200
    removal = response.json()["webhookRemoval"]
    assert removal["removed"] is False
    assert "settings.write" in removal["message"]
    assert "by hand" in removal["message"]
    assert len(fake_dynatrace.problem_notifications()) == 1
    status = account.client.get("/dynatrace/status").json()
    assert status["connected"] is False
    assert status["webhookInstalled"] is True  # still there in Dynatrace


def test_disconnect_when_dynatrace_fails_still_disconnects(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    install(account)
    fake_dynatrace.fail("/api/v2/settings/objects/*", 503, method="DELETE")
    response = account.client.delete("/dynatrace/disconnect")
    assert response.status_code == 200
    assert response.json()["webhookRemoval"]["removed"] is False
    assert "503" in response.json()["webhookRemoval"]["message"]
    assert account.client.get("/dynatrace/status").json()["connected"] is False


def test_disconnect_after_the_notification_was_deleted_in_dynatrace(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    install(account)
    fake_dynatrace.settings_objects.pop(fake_dynatrace.problem_notifications()[0]["objectId"])
    removal = account.client.delete("/dynatrace/disconnect").json()["webhookRemoval"]
    assert removal["removed"] is True
    assert "already gone" in removal["message"]


def test_rotation_updates_the_installed_notification(account, fake_dynatrace, client, app, database):
    connect(account, fake_dynatrace)
    production = fake_dynatrace.add_alerting_profile("Production")
    install(account)
    old = secret_of(app, database, account.workspace_id)
    # Changed in the Dynatrace UI since: rotation keeps it.
    [item] = fake_dynatrace.problem_notifications()
    item["value"]["alertingProfile"] = production
    response = account.client.post("/dynatrace/webhook-url/rotate")
    assert response.status_code == 200, response.text
    assert "new secret" in response.json()["installedNotification"]
    new = secret_of(app, database, account.workspace_id)
    assert new != old
    [item] = fake_dynatrace.problem_notifications()
    assert header_value(item) == f"Bearer {new}"
    assert item["value"]["alertingProfile"] == production
    url = item["value"]["webHookNotification"]["url"]
    assert (
        client.post(url, json=notification(), headers={"Authorization": f"Bearer {new}"}).status_code == 200
    )
    assert (
        client.post(url, json=notification(), headers={"Authorization": f"Bearer {old}"}).status_code == 401
    )


def test_rotation_without_an_installed_notification_leaves_dynatrace_alone(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    fake_dynatrace.requests.clear()
    response = account.client.post("/dynatrace/webhook-url/rotate")
    assert response.status_code == 200
    assert response.json()["installedNotification"] is None
    assert not [r for r in fake_dynatrace.requests if r.path.startswith("/api/v2/settings")]


def test_rotation_after_the_notification_was_deleted_in_dynatrace_says_so(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    install(account)
    fake_dynatrace.settings_objects.pop(fake_dynatrace.problem_notifications()[0]["objectId"])
    response = account.client.post("/dynatrace/webhook-url/rotate")
    assert response.status_code == 200
    assert "POST /dynatrace/webhook/install" in response.json()["installedNotification"]
    assert account.client.get("/dynatrace/status").json()["webhookInstalled"] is False


def test_rotation_when_dynatrace_fails_says_deliveries_are_refused(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    install(account)
    fake_dynatrace.fail("/api/v2/settings/objects/*", 500, method="PUT")
    response = account.client.post("/dynatrace/webhook-url/rotate")
    assert response.status_code == 200
    assert "old secret" in response.json()["installedNotification"]
    assert account.client.get("/dynatrace/status").json()["webhookInstalled"] is True


def test_reconnecting_to_another_environment_forgets_the_installed_notification(account, fake_dynatrace):
    connect(account, fake_dynatrace)
    install(account)
    connect(account, fake_dynatrace, url=f"{fake_dynatrace.url}/e/{fake_dynatrace.environment_id}")
    assert account.client.get("/dynatrace/status").json()["webhookInstalled"] is False


# --- the secret ----------------------------------------------------------------------------------------


def test_the_secret_never_appears_in_any_answer_or_log(account, fake_dynatrace, app, database, caplog):
    caplog.set_level(logging.DEBUG)
    token = connect(account, fake_dynatrace)
    secret = secret_of(app, database, account.workspace_id)
    answers = [
        install(account),
        install(account, alertingProfile="missing"),
        account.client.get("/dynatrace/alerting-profiles"),
        account.client.get("/dynatrace/status"),
        account.client.get("/dynatrace/status?verify=true"),
    ]
    fake_dynatrace.token(token).scopes.remove("settings.write")
    answers += [install(account), account.client.delete("/dynatrace/disconnect")]
    assert [answer.status_code for answer in answers] == [200, 422, 200, 200, 200, 422, 200]
    for answer in answers:
        assert secret not in answer.text
        assert token not in answer.text
    logged = [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    assert any("problem notification created" in line for line in logged)  # the app's log is captured
    assert not [line for line in logged if secret in line or token in line]
    [item] = fake_dynatrace.problem_notifications()
    assert secret not in item["value"]["webHookNotification"]["url"]


# --- client: Settings 2.0 ------------------------------------------------------------------------------


@pytest.fixture
def dynatrace_client(fake_dynatrace):
    token = fake_dynatrace.add_token(ALL_SCOPES)
    with DynatraceClient(fake_dynatrace.url, token, allow_private=True, max_retries=0) as client:
        yield client


def test_client_lists_settings_objects_across_pages_with_the_key_alone(dynatrace_client, fake_dynatrace):
    names = [f"Profile {number}" for number in range(5)]
    for name in names:
        fake_dynatrace.add_alerting_profile(name)
    items = dynatrace_client.list_settings_objects(ALERTING_PROFILE_SCHEMA, page_size=2)
    assert [item["value"]["name"] for item in items] == ["Default", *names]
    calls = fake_dynatrace.requests_to("/api/v2/settings/objects")
    assert len(calls) == 3
    assert calls[0].params["schemaIds"] == ALERTING_PROFILE_SCHEMA
    assert all(list(call.params) == ["nextPageKey"] for call in calls[1:])


def test_client_creates_updates_and_deletes_a_settings_object(dynatrace_client, fake_dynatrace):
    value = {"name": "Night shift", "managementZone": None, "severityRules": [], "eventFilters": []}
    object_id = dynatrace_client.create_settings_object(ALERTING_PROFILE_SCHEMA, value)
    assert "=" in object_id  # quoted in paths
    assert dynatrace_client.get_settings_object(object_id)["value"]["name"] == "Night shift"
    assert dynatrace_client.update_settings_object(object_id, {**value, "name": "Day shift"}) == object_id
    assert fake_dynatrace.settings_objects[object_id]["value"]["name"] == "Day shift"
    dynatrace_client.delete_settings_object(object_id)
    assert object_id not in fake_dynatrace.settings_objects
    with pytest.raises(ResourceNotFound):
        dynatrace_client.delete_settings_object(object_id)
    with pytest.raises(ResourceNotFound):
        dynatrace_client.update_settings_object(object_id, value)


def test_client_reports_object_level_errors_and_stale_update_tokens(dynatrace_client, fake_dynatrace):
    with pytest.raises(UpstreamError, match=r"name: must not be empty"):
        dynatrace_client.create_settings_object(ALERTING_PROFILE_SCHEMA, {"name": ""})
    with pytest.raises(ResourceNotFound):
        dynatrace_client.create_settings_object("builtin:no.such.schema", {"name": "x"})
    object_id = fake_dynatrace.default_alerting_profile
    with pytest.raises(UpstreamError, match=r"\(409\)"):
        dynatrace_client.update_settings_object(object_id, {"name": "Renamed"}, update_token="stale")


def test_secret_header_values_are_masked_when_read_back(account, fake_dynatrace, app, database):
    connect(account, fake_dynatrace)
    object_id = install(account).json()["objectId"]
    secret = secret_of(app, database, account.workspace_id)
    listed = account.client.get("/dynatrace/alerting-profiles")  # a settings read through Borealis
    assert listed.status_code == 200
    token = fake_dynatrace.add_token(ALL_SCOPES)
    with DynatraceClient(fake_dynatrace.url, token, allow_private=True) as dynatrace:
        read = dynatrace.get_settings_object(object_id)
    assert secret not in json.dumps(read)
    assert re.fullmatch(r"\*+", read["value"]["webHookNotification"]["headers"][0]["secretValue"])


# --- web UI --------------------------------------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def browser(live_server, make_account, fake_dynatrace):
    """A signed-in browser-like client (cookies, forms, HTML) and its account."""
    account = make_account("ui@example.com", password=PASSWORD)
    with httpx.Client(base_url=live_server.url, headers={"Accept": "text/html"}, timeout=30) as http:
        log_in(http, account.email, PASSWORD)
        yield http, account


def test_the_page_offers_install_automatically_only_when_the_token_allows_it(browser, fake_dynatrace):
    http, account = browser
    connect(account, fake_dynatrace, WITHOUT_WRITE)
    page = http.get("/dynatrace")
    assert "Install automatically" not in page.text
    assert "settings.write" in page.text
    connect(account, fake_dynatrace)
    assert "Install automatically" in http.get("/dynatrace").text


def test_install_from_the_page_creates_it_and_disconnect_from_the_page_removes_it(browser, fake_dynatrace):
    http, account = browser
    connect(account, fake_dynatrace)
    answer = http.post("/dynatrace/webhook/install", data={"csrf_token": csrf_from(http.get("/dynatrace"))})
    assert answer.status_code == 303
    page = http.get("/dynatrace")
    assert "Created the problem notification" in page.text
    assert "Install again" in page.text
    [item] = fake_dynatrace.problem_notifications()
    assert item["value"]["displayName"] == "Borealis"

    rotated = http.post("/dynatrace/webhook-url/rotate", data={"csrf_token": csrf_from(page)})
    assert rotated.status_code == 303
    assert "sends it" in http.get("/dynatrace").text

    http.post("/dynatrace/disconnect", data={"csrf_token": csrf_from(http.get("/dynatrace"))})
    assert "Removed the problem notification" in http.get("/dynatrace").text
    assert fake_dynatrace.problem_notifications() == []


def test_install_from_the_page_without_the_scope_explains(browser, fake_dynatrace):
    http, account = browser
    token = connect(account, fake_dynatrace)
    page = http.get("/dynatrace")
    fake_dynatrace.token(token).scopes.remove("settings.write")
    http.post("/dynatrace/webhook/install", data={"csrf_token": csrf_from(page)})
    assert "was not installed" in http.get("/dynatrace").text
    assert fake_dynatrace.problem_notifications() == []
