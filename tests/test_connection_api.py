"""Connecting a Dynatrace environment through the live server against the fake Dynatrace."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from borealis import crypto
from borealis.dynatrace.models import Connection
from borealis.dynatrace.template import SUGGESTED_PAYLOAD
from borealis.simulation import ALL_SCOPES

USED_SCOPES = {
    "problems.read",
    "entities.read",
    "events.read",
    "logs.read",
    "metrics.read",
    "settings.read",
    "settings.write",
    "problems.write",
}


@pytest.fixture
def override_settings(app) -> Iterator:
    """Change the running app's settings for one test."""
    original = app.state.settings

    def apply(**changes) -> None:
        app.state.settings = original.model_copy(update=changes)

    yield apply
    app.state.settings = original


def connect(account, fake, token, url=None):
    return account.client.post(
        "/dynatrace/connect", json={"environmentUrl": url or fake.environment_url, "apiToken": token}
    )


def stored(database, workspace_id) -> Connection | None:
    with database.session() as session:
        return session.scalar(sa.select(Connection).where(Connection.workspace_id == workspace_id))


def test_connect_validates_the_token_and_reports_scopes_expiry_and_version(account, fake_dynatrace):
    expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(days=90)
    token = fake_dynatrace.add_token(ALL_SCOPES, expires_at=expiry)
    response = connect(account, fake_dynatrace, token, url=fake_dynatrace.url + "/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["environmentUrl"] == fake_dynatrace.url
    assert body["version"] == fake_dynatrace.cluster_version
    assert body["scopes"] == sorted(ALL_SCOPES)
    assert body["missingScopes"] == []
    assert datetime.fromisoformat(body["tokenExpiresAt"]) == expiry
    assert body["warnings"] == []
    assert body["connectedAt"]

    status = account.client.get("/dynatrace/status").json()
    assert status["connected"] is True
    assert status["environmentUrl"] == fake_dynatrace.url
    assert status["version"] == fake_dynatrace.cluster_version
    assert status["scopes"] == sorted(ALL_SCOPES)
    assert status["connectedAt"] == body["connectedAt"]
    assert status["webhookConfigured"] is False
    assert "tokenValid" not in status


def test_connect_with_few_scopes_lists_what_each_missing_one_enables(account, fake_dynatrace):
    token = fake_dynatrace.add_token(["problems.read"])
    body = connect(account, fake_dynatrace, token).json()
    assert body["version"] is None
    missing = {item["scope"]: item["enables"] for item in body["missingScopes"]}
    assert set(missing) == USED_SCOPES - {"problems.read"}
    assert "topology" in missing["entities.read"]
    assert any("logs.read" in warning for warning in body["warnings"])
    assert any("DataExport" in warning for warning in body["warnings"])
    # The cluster version endpoint was not even asked without DataExport.
    assert fake_dynatrace.requests_to("/api/v1/config/clusterversion") == []


def test_token_expiring_within_two_weeks_is_a_warning(account, fake_dynatrace):
    token = fake_dynatrace.add_token(expires_at=datetime.now(UTC) + timedelta(days=5, hours=1))
    body = connect(account, fake_dynatrace, token).json()
    assert any("expires on" in warning and "in 5 days" in warning for warning in body["warnings"])


def test_managed_environment_path_is_kept(account, fake_dynatrace):
    fake_dynatrace.managed = True
    token = fake_dynatrace.add_token()
    body = connect(account, fake_dynatrace, token, url=fake_dynatrace.environment_url + "/#dashboards").json()
    assert body["environmentUrl"] == f"{fake_dynatrace.url}/e/{fake_dynatrace.environment_id}"


def test_a_pasted_api_token_header_prefix_is_tolerated(account, fake_dynatrace):
    token = fake_dynatrace.add_token()
    assert connect(account, fake_dynatrace, f"Api-Token {token}").status_code == 200


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lookup_says_disabled(fake):
    fake.fail("/api/v2/apiTokens/lookup", 200, body={"id": "dt0c01.X", "enabled": False, "scopes": []})
    return None, fake.add_token()


def _managed_without_path(fake):
    fake.managed = True
    return fake.url, fake.add_token()


def _failing(fake, pattern, *args, **kwargs):
    fake.fail(pattern, *args, **kwargs)
    return None, fake.add_token()


# (name, set-up on the fake → (url or None, token), status, error code, words in the message)
FAILURES = [
    (
        "unknown token",
        lambda fake: (None, "dt0c01.AAAAAAAAAAAAAAAAAAAAAAAA.BBBB"),
        422,
        "dynatrace_token_rejected",
        "does not recognize the token",
    ),
    (
        "disabled token",
        lambda fake: (None, fake.add_token(enabled=False)),
        422,
        "dynatrace_token_disabled",
        "disabled",
    ),
    (
        "expired token",
        lambda fake: (None, fake.add_token(expires_at=datetime.now(UTC) - timedelta(days=1))),
        422,
        "dynatrace_token_disabled",
        "expired",
    ),
    (
        "token disabled per lookup",
        lambda fake: _lookup_says_disabled(fake),
        422,
        "dynatrace_token_disabled",
        "disabled",
    ),
    (
        "not a URL",
        lambda fake: ("ftp://dt.example.com", fake.add_token()),
        422,
        "invalid_environment_url",
        "environmentUrl: must start with https://",
    ),
    (
        "credentials in the URL",
        lambda fake: (fake.url.replace("http://", "http://admin:pw@"), fake.add_token()),
        422,
        "invalid_environment_url",
        "must not contain a user name or password",
    ),
    (
        "custom domain without /e/",
        lambda fake: _managed_without_path(fake),
        422,
        "dynatrace_environment_not_found",
        "add /e/{environment-id}",
    ),
    (
        "web page instead of the API",
        lambda fake: _failing(fake, "/api/*", html=True),
        422,
        "dynatrace_environment_not_found",
        "web page",
    ),
    (
        "server error",
        lambda fake: _failing(fake, "/api/v2/apiTokens/lookup", 500),
        502,
        "dynatrace_upstream_error",
        "answered 500",
    ),
    (
        "rate limited",
        lambda fake: _failing(fake, "/api/v2/apiTokens/lookup", 429, retry_after=0),
        503,
        "dynatrace_rate_limited",
        "rate limiting",
    ),
    (
        "connection refused",
        lambda fake: (f"http://127.0.0.1:{_closed_port()}", fake.add_token()),
        502,
        "dynatrace_unreachable",
        "refused the connection",
    ),
    (
        "DNS failure",
        lambda fake: ("https://nonexistent-borealis-env.invalid", fake.add_token()),
        502,
        "dynatrace_unreachable",
        "cannot be resolved (DNS)",
    ),
    (
        "TLS failure",
        lambda fake: (fake.url.replace("http://", "https://"), fake.add_token()),
        502,
        "dynatrace_tls_failure",
        "BOREALIS_DYNATRACE_CA_BUNDLE",
    ),
]


@pytest.mark.parametrize(
    ("setup", "status", "code", "words"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
def test_each_failure_has_its_own_status_and_message_and_stores_nothing(
    account, fake_dynatrace, database, setup, status, code, words
):
    url, token = setup(fake_dynatrace)
    response = connect(account, fake_dynatrace, token, url=url)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]
    assert token not in response.text
    assert stored(database, account.workspace_id) is None
    assert account.client.get("/dynatrace/status").json()["connected"] is False


def test_slow_dynatrace_times_out(account, fake_dynatrace, override_settings):
    override_settings(dynatrace_timeout=0.5)
    token = fake_dynatrace.add_token()
    fake_dynatrace.slow("/api/v2/apiTokens/lookup", 3, times=1)
    response = connect(account, fake_dynatrace, token)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "dynatrace_timeout"
    assert "did not answer within 0.5 s" in response.json()["error"]["message"]


def test_private_hosts_are_refused_when_not_allowed(account, fake_dynatrace, override_settings):
    override_settings(allow_private_dynatrace=False)
    response = connect(account, fake_dynatrace, fake_dynatrace.add_token())
    assert response.status_code == 422
    assert "BOREALIS_ALLOW_PRIVATE_DYNATRACE" in response.json()["error"]["message"]
    assert fake_dynatrace.requests == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"apiToken": "dt0c01.A.B"}, "environmentUrl"),
        ({"environmentUrl": "https://abc.live.dynatrace.com"}, "apiToken"),
        ({"environmentUrl": "https://abc.live.dynatrace.com", "apiToken": 12}, "apiToken"),
        ({"environmentUrl": "https://abc.live.dynatrace.com", "apiToken": "  "}, "apiToken"),
        ({"environmentUrl": "https://abc.live.dynatrace.com", "apiToken": "dt0c01 A B"}, "apiToken"),
        # Not ASCII: it would go into the Authorization header sent to Dynatrace.
        ({"environmentUrl": "https://abc.live.dynatrace.com", "apiToken": "dt0c01.A.B\u00e9"}, "apiToken"),
        ({"environmentUrl": "https://abc.live.dynatrace.com", "apiToken": "dt0c01.A\U0004964b"}, "apiToken"),
        ({"environmentUrl": ["x"], "apiToken": "dt0c01.A.B"}, "environmentUrl"),
    ],
)
def test_invalid_input_names_the_field(account, body, field):
    response = account.client.post("/dynatrace/connect", json=body)
    assert response.status_code == 422
    assert field in response.json()["error"]["message"]


def test_malformed_json_is_a_4xx(account):
    response = account.client.post(
        "/dynatrace/connect", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/dynatrace/connect"),
        ("GET", "/dynatrace/status"),
        ("DELETE", "/dynatrace/disconnect"),
        ("GET", "/dynatrace/webhook-url"),
        ("POST", "/dynatrace/webhook-url/rotate"),
    ],
)
def test_connection_routes_need_a_user(client, method, path):
    response = client.request(method, path, json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_no_endpoint_ever_returns_the_token(account, fake_dynatrace):
    token = fake_dynatrace.add_token()
    answers = [
        connect(account, fake_dynatrace, token),
        account.client.get("/dynatrace/status"),
        account.client.get("/dynatrace/status", params={"verify": "true"}),
        account.client.get("/dynatrace/webhook-url"),
        account.client.post("/dynatrace/webhook-url/rotate"),
        account.client.get("/openapi.json"),
        account.client.delete("/dynatrace/disconnect"),
        account.client.get("/dynatrace/status"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert token not in answer.text
        assert token.split(".")[2] not in answer.text


def _database_bytes(database, settings) -> bytes:
    """Everything the database holds: the SQLite files (WAL included) or a dump of the PostgreSQL table."""
    if database.is_sqlite:
        # Read in a child process: closing another descriptor of the database file in this process would
        # drop SQLite's POSIX locks on it.
        path = Path(database.engine.url.database)
        files = [str(file) for file in (path, path.with_name(path.name + "-wal")) if file.exists()]
        reader = "import sys\nfor name in sys.argv[1:]:\n    sys.stdout.buffer.write(open(name, 'rb').read())"
        return subprocess.run([sys.executable, "-c", reader, *files], capture_output=True, check=True).stdout
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT row_to_json(c)::text FROM connections c").scalars()
        return "\n".join(rows).encode()


def test_the_database_holds_no_plain_text_token_or_webhook_secret(
    account, fake_dynatrace, database, settings
):
    token = fake_dynatrace.add_token()
    assert connect(account, fake_dynatrace, token).status_code == 200
    secret = account.client.get("/dynatrace/webhook-url").json()["headers"]["Authorization"].split()[1]
    dump = _database_bytes(database, settings)
    row = stored(database, account.workspace_id)
    assert row.token_ciphertext is not None
    assert row.token_ciphertext.encode() in dump  # we are looking at the right bytes
    assert token.encode() not in dump
    assert token.split(".")[2].encode() not in dump
    assert secret.encode() not in dump
    assert row.webhook_secret_hash == crypto.digest(secret)


def test_two_users_each_see_only_their_own_connection(make_account, fake_dynatrace):
    alice = make_account("alice@example.com")
    bob = make_account("bob@example.com")
    alice_token = fake_dynatrace.add_token(["problems.read"])
    assert connect(alice, fake_dynatrace, alice_token).status_code == 200
    assert bob.client.get("/dynatrace/status").json()["connected"] is False
    assert bob.client.get("/dynatrace/webhook-url").status_code == 409

    fake_dynatrace.managed = True
    bob_token = fake_dynatrace.add_token(ALL_SCOPES)
    assert connect(bob, fake_dynatrace, bob_token).status_code == 200
    alice_status = alice.client.get("/dynatrace/status").json()
    bob_status = bob.client.get("/dynatrace/status").json()
    assert alice_status["environmentUrl"] == fake_dynatrace.url
    assert alice_status["scopes"] == ["problems.read"]
    assert bob_status["environmentUrl"] == fake_dynatrace.environment_url
    alice_hook = alice.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    bob_hook = bob.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    assert f"/dynatrace/webhook/{alice.workspace_id}?" in alice_hook
    assert f"/dynatrace/webhook/{bob.workspace_id}?" in bob_hook

    assert alice.client.delete("/dynatrace/disconnect").status_code == 200
    assert alice.client.get("/dynatrace/status").json()["connected"] is False
    assert bob.client.get("/dynatrace/status").json()["connected"] is True


def test_reconnecting_replaces_the_token_and_keeps_the_webhook_secret(account, fake_dynatrace, database):
    first = fake_dynatrace.add_token(["problems.read"])
    connect(account, fake_dynatrace, first)
    hook_before = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    before = stored(database, account.workspace_id)

    fake_dynatrace.managed = True
    second = fake_dynatrace.add_token(ALL_SCOPES, name="rotated")
    body = connect(account, fake_dynatrace, second).json()
    assert body["environmentUrl"] == fake_dynatrace.environment_url
    assert body["scopes"] == sorted(ALL_SCOPES)
    after = stored(database, account.workspace_id)
    assert after.id == before.id
    assert after.token_ciphertext != before.token_ciphertext
    assert after.token_name == "rotated"
    assert account.client.get("/dynatrace/webhook-url").json()["webhookUrl"] == hook_before
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Connection)) == 1


def test_a_failed_reconnect_keeps_the_working_connection(account, fake_dynatrace, database):
    token = fake_dynatrace.add_token()
    connect(account, fake_dynatrace, token)
    before = stored(database, account.workspace_id)
    assert connect(account, fake_dynatrace, "dt0c01.WRONG.TOKEN").status_code == 422
    after = stored(database, account.workspace_id)
    assert after.token_ciphertext == before.token_ciphertext
    assert account.client.get("/dynatrace/status").json()["connected"] is True


def test_disconnect_is_idempotent_and_keeps_the_row(account, fake_dynatrace, database):
    assert account.client.delete("/dynatrace/disconnect").json() == {"success": True, "connected": False}
    connect(account, fake_dynatrace, fake_dynatrace.add_token())
    hook = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    for _ in range(2):
        response = account.client.delete("/dynatrace/disconnect")
        assert response.status_code == 200
        assert response.json() == {"success": True, "connected": False}
    row = stored(database, account.workspace_id)
    assert row is not None
    assert row.token_ciphertext is None
    assert row.disconnected_at is not None
    status = account.client.get("/dynatrace/status").json()
    assert status["connected"] is False
    assert status["scopes"] == []
    assert status["disconnectedAt"]
    # The webhook takes nothing while disconnected, so there is no URL to paste...
    assert account.client.get("/dynatrace/webhook-url").status_code == 409
    # ...and the URL already pasted into Dynatrace works again after a reconnect.
    connect(account, fake_dynatrace, fake_dynatrace.add_token())
    assert account.client.get("/dynatrace/webhook-url").json()["webhookUrl"] == hook


def test_verify_checks_the_token_live(account, fake_dynatrace):
    token = fake_dynatrace.add_token(["problems.read"])
    connect(account, fake_dynatrace, token)
    fake_dynatrace.token(token).scopes.append("entities.read")
    valid = account.client.get("/dynatrace/status", params={"verify": "true"}).json()
    assert valid["tokenValid"] is True
    assert valid["tokenError"] is None
    assert valid["scopes"] == ["entities.read", "problems.read"]  # live scopes

    fake_dynatrace.token(token).enabled = False
    invalid = account.client.get("/dynatrace/status", params={"verify": "true"}).json()
    assert invalid["tokenValid"] is False
    assert "disabled" in invalid["tokenError"]
    assert invalid["connected"] is True

    fake_dynatrace.token(token).enabled = True
    fake_dynatrace.fail("/api/v2/apiTokens/lookup", 503)
    unknown = account.client.get("/dynatrace/status", params={"verify": "true"}).json()
    assert unknown["tokenValid"] is None
    assert "answered 503" in unknown["tokenError"]


def test_verify_without_a_connection_says_connect_first(account):
    body = account.client.get("/dynatrace/status", params={"verify": "true"}).json()
    assert body["connected"] is False
    assert body["tokenValid"] is False
    assert "POST /dynatrace/connect" in body["tokenError"]


def test_status_shows_the_last_webhook_and_test_notification(account, fake_dynatrace, database):
    connect(account, fake_dynatrace, fake_dynatrace.add_token())
    received = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = {
        "receivedAt": received.isoformat(),
        "ok": False,
        "missingFields": ["PID"],
        "unreplacedPlaceholders": [],
    }
    with database.session(write=True) as session:
        row = session.scalar(sa.select(Connection).where(Connection.workspace_id == account.workspace_id))
        row.last_test_notification_at = received
        row.last_webhook_at = received
        row.last_test_report = report
        session.commit()
    status = account.client.get("/dynatrace/status").json()
    assert status["webhookConfigured"] is True
    assert datetime.fromisoformat(status["lastTestNotificationAt"]) == received
    assert datetime.fromisoformat(status["lastWebhookAt"]) == received
    assert status["lastTestNotification"] == report


def test_webhook_url_needs_a_connection_first(account):
    response = account.client.get("/dynatrace/webhook-url")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "dynatrace_not_connected"
    assert "POST /dynatrace/connect" in response.json()["error"]["message"]
    assert account.client.post("/dynatrace/webhook-url/rotate").status_code == 409


def test_webhook_url_carries_the_secret_template_steps_and_header(
    account, fake_dynatrace, live_server, database
):
    connect(account, fake_dynatrace, fake_dynatrace.add_token())
    body = account.client.get("/dynatrace/webhook-url").json()
    base = f"{live_server.url}/dynatrace/webhook/{account.workspace_id}"
    assert body["webhookUrl"].startswith(base + "?token=")
    secret = body["webhookUrl"].split("?token=")[1]
    assert len(secret) >= 40
    assert body["headers"] == {"Authorization": f"Bearer {secret}"}
    assert body["suggestedPayload"] == SUGGESTED_PAYLOAD
    steps = " ".join(body["instructions"])
    for words in (
        "Problem notifications",
        "Custom Integration",
        body["webhookUrl"],
        "Send test notification",
    ):
        assert words in steps
    assert f"{fake_dynatrace.url}/ui/settings/integration/notifications" in steps
    assert stored(database, account.workspace_id).webhook_secret_hash == crypto.digest(secret)


@pytest.mark.parametrize(
    ("changes", "base"),
    [
        ({"public_url": "https://borealis.example.com"}, "https://borealis.example.com"),
        ({"ngrok_url": "https://abc.ngrok.app"}, "https://abc.ngrok.app"),
        (
            {"public_url": "https://borealis.example.com", "ngrok_url": "https://abc.ngrok.app"},
            "https://borealis.example.com",
        ),
    ],
)
def test_webhook_url_base_comes_from_the_public_url_settings(
    account, fake_dynatrace, override_settings, changes, base
):
    connect(account, fake_dynatrace, fake_dynatrace.add_token())
    override_settings(**changes)
    url = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    assert url.startswith(f"{base}/dynatrace/webhook/{account.workspace_id}?token=")


def test_rotating_issues_a_new_secret_and_forgets_the_old(account, fake_dynatrace, database):
    connect(account, fake_dynatrace, fake_dynatrace.add_token())
    old = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"].split("?token=")[1]
    rotated = account.client.post("/dynatrace/webhook-url/rotate")
    assert rotated.status_code == 200
    new = rotated.json()["webhookUrl"].split("?token=")[1]
    assert new != old
    assert account.client.get("/dynatrace/webhook-url").json()["webhookUrl"].endswith(f"?token={new}")
    row = stored(database, account.workspace_id)
    assert row.webhook_secret_hash == crypto.digest(new)
    assert not crypto.matches(old, row.webhook_secret_hash)


def test_openapi_lists_the_connection_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/dynatrace/connect",
        "/dynatrace/status",
        "/dynatrace/disconnect",
        "/dynatrace/webhook-url",
    ):
        assert path in paths
