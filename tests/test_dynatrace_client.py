"""The Environment API client against the fake Dynatrace over loopback HTTP (and TLS)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from borealis.dynatrace import transport as dynatrace_transport
from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.errors import (
    EnvironmentNotFound,
    InvalidEnvironmentUrl,
    RateLimited,
    ResourceNotFound,
    ScopeMissing,
    Timeout,
    TlsFailure,
    TokenDisabled,
    TokenRejected,
    Unreachable,
    UpstreamError,
)
from borealis.dynatrace.transport import retry_wait


class Sleeps(list):
    """Records back-off waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(fake_dynatrace, sleeps):
    clients: list[DynatraceClient] = []

    def factory(token: str, *, url: str | None = None, **options) -> DynatraceClient:
        options.setdefault("allow_private", True)
        options.setdefault("timeout", 5)
        made = DynatraceClient(url or fake_dynatrace.environment_url, token, sleep=sleeps, **options)
        clients.append(made)
        return made

    yield factory
    for made in clients:
        made.close()


def test_lookup_sends_the_api_token_header_and_reads_scopes_and_expiry(fake_dynatrace, make_client):
    expiry = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    token = fake_dynatrace.add_token(["problems.read", "DataExport"], expires_at=expiry, name="borealis-prod")
    info = make_client(token).lookup_token()
    assert info.scopes == ["problems.read", "DataExport"]
    assert info.enabled is True
    assert info.expires_at == expiry
    assert info.name == "borealis-prod"
    assert token.startswith(info.id)
    assert info.id != token
    sent = fake_dynatrace.requests_to("/api/v2/apiTokens/lookup")[0]
    assert sent.headers["authorization"] == f"Api-Token {token}"


def test_unknown_token_is_rejected_with_a_message_about_the_environment(fake_dynatrace, make_client):
    with pytest.raises(TokenRejected) as caught:
        make_client("dt0c01.NOTKNOWN.SECRET").lookup_token()
    assert "does not recognize the token" in caught.value.message
    assert "dt0c01.NOTKNOWN.SECRET" not in caught.value.message


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"enabled": False}, "disabled"),
        ({"expires_at": datetime.now(UTC) - timedelta(hours=1)}, "expired"),
    ],
)
def test_disabled_or_expired_token_says_so(fake_dynatrace, make_client, options, word):
    token = fake_dynatrace.add_token(**options)
    with pytest.raises(TokenDisabled) as caught:
        make_client(token).lookup_token()
    assert word in caught.value.message


def test_lookup_answer_for_a_disabled_token_is_reported_as_disabled(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.fail(
        "/api/v2/apiTokens/lookup", 200, body={"id": "dt0c01.X", "enabled": False, "scopes": []}
    )
    assert make_client(token).lookup_token().enabled is False


def test_cluster_version_is_none_without_data_export(fake_dynatrace, make_client):
    without = fake_dynatrace.add_token(["problems.read"])
    assert make_client(without).cluster_version() is None
    with_scope = fake_dynatrace.add_token(["DataExport"])
    assert make_client(with_scope).cluster_version() == fake_dynatrace.cluster_version


def test_missing_scope_is_named(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token(["entities.read"])
    with pytest.raises(ScopeMissing) as caught:
        make_client(token).list_problems("now-2h")
    assert caught.value.scope == "problems.read"
    assert "'problems.read'" in caught.value.message


def test_custom_domain_without_environment_path_suggests_adding_it(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.managed = True
    with pytest.raises(EnvironmentNotFound) as caught:
        make_client(token, url=fake_dynatrace.url).lookup_token()
    assert "/e/{environment-id}" in caught.value.message
    assert make_client(token, url=fake_dynatrace.environment_url).lookup_token().enabled


def test_web_page_instead_of_json_is_not_a_dynatrace_api(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.fail("/api/v2/apiTokens/lookup", html=True)
    with pytest.raises(EnvironmentNotFound) as caught:
        make_client(token).lookup_token()
    assert "web page" in caught.value.message


def test_redirect_is_reported_not_followed(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.fail(
        "/api/v2/apiTokens/lookup", 302, body="", headers={"Location": "https://sso.example.com/"}
    )
    with pytest.raises(EnvironmentNotFound) as caught:
        make_client(token).lookup_token()
    assert "redirects to https://sso.example.com/" in caught.value.message


def test_proxy_sign_in_is_not_blamed_on_the_token(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.fail("/api/v2/apiTokens/lookup", 401, html=True)
    with pytest.raises(UpstreamError) as caught:
        make_client(token).lookup_token()
    assert "proxy" in caught.value.message


def test_server_error_is_an_upstream_error(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.fail("/api/v2/problems", 500)
    with pytest.raises(UpstreamError) as caught:
        make_client(token).list_problems("now-2h")
    assert caught.value.status_code == 502
    assert "answered 500" in caught.value.message


def test_rate_limit_is_retried_after_the_wait_dynatrace_asks_for(fake_dynatrace, make_client, sleeps):
    token = fake_dynatrace.add_token()
    fake_dynatrace.add_problem()
    fake_dynatrace.fail("/api/v2/problems", 429, retry_after=3, times=2)
    problems = make_client(token).list_problems("now-2h")
    assert len(problems) == 1
    assert sleeps == [3.0, 3.0]
    assert len(fake_dynatrace.requests_to("/api/v2/problems")) == 3


def test_rate_limit_gives_up_after_bounded_retries(fake_dynatrace, make_client, sleeps):
    token = fake_dynatrace.add_token()
    fake_dynatrace.fail("/api/v2/problems", 429, retry_after=500)
    with pytest.raises(RateLimited) as caught:
        make_client(token, max_retries=2, max_retry_wait=20).list_problems("now-2h")
    assert sleeps == [20.0, 20.0]
    assert len(fake_dynatrace.requests_to("/api/v2/problems")) == 3
    assert caught.value.status_code == 503


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:25 GMT"}, 5.0),
        ({"x-ratelimit-reset": str(int((NOW + 4) * 1_000_000))}, 4.0),  # microseconds
        ({"x-ratelimit-reset": str(int((NOW + 4) * 1000))}, 4.0),  # milliseconds
        ({"x-ratelimit-reset": str(int(NOW + 4))}, 4.0),  # seconds
        ({"x-ratelimit-reset": "6"}, 6.0),  # a delay
        ({"retry-after": "2", "x-ratelimit-reset": str(int(NOW + 9))}, 2.0),  # Retry-After wins
        ({"x-ratelimit-reset": str(int((NOW + 86400) * 1000))}, 30.0),  # clamped
        ({"x-ratelimit-reset": str(int((NOW - 60) * 1000))}, 0.1),  # already past
        ({}, 1.0),  # nothing said: exponential from 1 s
    ],
)
def test_retry_wait_reads_retry_after_then_rate_limit_reset_in_any_unit(headers, expected):
    assert retry_wait(headers, attempt=0, max_wait=30.0, now=NOW) == pytest.approx(expected, abs=0.01)


def test_retry_wait_without_headers_grows_exponentially():
    assert [retry_wait({}, attempt=n, max_wait=30.0) for n in range(6)] == [1, 2, 4, 8, 16, 30]


def test_slow_environment_times_out_with_the_setting_named(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.slow("/api/v2/apiTokens/lookup", 3, times=1)
    with pytest.raises(Timeout) as caught:
        make_client(token, timeout=0.3).lookup_token()
    assert "BOREALIS_DYNATRACE_TIMEOUT" in caught.value.message
    assert caught.value.status_code == 504


def test_refused_connection_is_unreachable(make_client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unreachable) as caught:
        make_client("dt0c01.A.B", url=f"http://127.0.0.1:{port}").lookup_token()
    assert "refused the connection" in caught.value.message


def test_dns_failure_is_unreachable_and_names_the_host(make_client):
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    with pytest.raises(Unreachable) as caught:
        make_client(
            "dt0c01.A.B", url="https://typo.live.dynatrace.com", transport=httpx.MockTransport(fail)
        ).lookup_token()
    assert "typo.live.dynatrace.com" in caught.value.message
    assert "DNS" in caught.value.message


def test_https_to_a_plain_http_port_is_a_tls_failure(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    url = fake_dynatrace.url.replace("http://", "https://")
    with pytest.raises(TlsFailure) as caught:
        make_client(token, url=url).lookup_token()
    assert "BOREALIS_DYNATRACE_CA_BUNDLE" in caught.value.message


@contextmanager
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny HTTPS server with a self-signed certificate for 127.0.0.1; yields its URL and the CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Managed test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "ca.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"version": "1.280.0"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_file
    finally:
        server.shutdown()
        server.server_close()


def test_untrusted_certificate_suggests_the_ca_bundle_and_the_bundle_fixes_it(tmp_path, make_client):
    with tls_server(tmp_path) as (url, ca_file):
        with pytest.raises(TlsFailure) as caught:
            make_client("dt0c01.A.B", url=url).cluster_version()
        assert "certificate not trusted" in caught.value.message
        assert "BOREALIS_DYNATRACE_CA_BUNDLE" in caught.value.message
        assert make_client("dt0c01.A.B", url=url, ca_bundle=ca_file).cluster_version() == "1.280.0"


def test_pages_are_followed_with_next_page_key_alone(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    for _ in range(5):
        fake_dynatrace.add_problem()
    fake_dynatrace.total_count_override = 2  # totalCount must not decide "more pages"
    problems = make_client(token).list_problems("now-1d", problem_selector='status("open")', page_size=2)
    assert sorted(p["problemId"] for p in problems) == sorted(fake_dynatrace.problems)
    sent = fake_dynatrace.requests_to("/api/v2/problems")
    assert len(sent) == 3
    assert sent[0].params["problemSelector"] == 'status("open")'
    assert [set(request.params) for request in sent[1:]] == [{"nextPageKey"}, {"nextPageKey"}]


@pytest.mark.parametrize("style", ["absent", "null", "string-null"])
def test_every_form_of_no_next_page_ends_the_list(fake_dynatrace, make_client, style):
    token = fake_dynatrace.add_token()
    for _ in range(3):
        fake_dynatrace.add_problem()
    fake_dynatrace.last_page_key = style
    assert len(make_client(token).list_problems("now-1d", page_size=2)) == 3
    assert len(fake_dynatrace.requests_to("/api/v2/problems")) == 2


def test_problem_list_passes_the_timeframe_and_fields(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    start = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    make_client(token).list_problems(start, to="now", fields=["evidenceDetails", "impactAnalysis"])
    sent = fake_dynatrace.requests_to("/api/v2/problems")[0].params
    assert sent["from"] == str(int(start.timestamp() * 1000))
    assert sent["to"] == "now"
    assert sent["fields"] == "evidenceDetails,impactAnalysis"


def test_get_problem_includes_evidence_by_default(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    problem = fake_dynatrace.add_problem(
        evidenceDetails={"totalCount": 1, "details": [{"evidenceType": "EVENT"}]}
    )
    got = make_client(token).get_problem(problem["problemId"])
    assert got["evidenceDetails"]["totalCount"] == 1
    with pytest.raises(ResourceNotFound) as caught:
        make_client(token).get_problem("-123_456V2")
    assert "-123_456V2" in caught.value.message


def test_get_entity_returns_relationships(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    fake_dynatrace.add_entity(
        "SERVICE-ABC", "checkout", fromRelationships={"runsOn": [{"id": "HOST-1", "type": "HOST"}]}
    )
    entity = make_client(token).get_entity("SERVICE-ABC")
    assert entity["displayName"] == "checkout"
    assert entity["fromRelationships"]["runsOn"][0]["id"] == "HOST-1"


@pytest.fixture
def restore_recorder():
    """Put back whatever recorder was installed (the Prometheus one), whatever the test sets."""
    previous = dynatrace_transport._recorder
    yield
    dynatrace_transport.set_api_call_recorder(previous)


def test_every_call_is_reported_to_the_metrics_hook(fake_dynatrace, make_client, restore_recorder):
    calls: list[tuple[str, int | str]] = []
    dynatrace_transport.set_api_call_recorder(lambda endpoint, status: calls.append((endpoint, status)))
    token = fake_dynatrace.add_token(["problems.read"])
    client = make_client(token)
    client.lookup_token()
    client.cluster_version()
    with pytest.raises(ResourceNotFound):
        client.get_problem("nope")
    assert calls == [
        ("POST /api/v2/apiTokens/lookup", 200),
        ("GET /api/v1/config/clusterversion", 403),
        ("GET /api/v2/problems/{problemId}", 404),
    ]


def test_a_failing_metrics_hook_does_not_break_calls(fake_dynatrace, make_client, restore_recorder):
    def broken(endpoint: str, status: int | str) -> None:
        raise RuntimeError("metrics down")

    dynatrace_transport.set_api_call_recorder(broken)
    token = fake_dynatrace.add_token()
    assert make_client(token).lookup_token().enabled


def test_the_token_never_reaches_logs_or_errors(fake_dynatrace, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    token = fake_dynatrace.add_token(["problems.read"])
    client = make_client(token)
    client.lookup_token()
    fake_dynatrace.fail("/api/v2/problems", 429, retry_after=1, times=1)
    client.list_problems("now-2h")
    messages = []
    for failing in (lambda: client.cluster_version(), lambda: client.get_entity("HOST-1")):
        try:
            failing()
        except Exception as exc:  # collect whatever surfaces
            messages.append(str(exc))
    assert caplog.records
    assert token not in caplog.text
    assert all(token not in message for message in messages)
    assert token not in repr(client)


def test_private_addresses_are_refused_unless_allowed(fake_dynatrace, make_client):
    token = fake_dynatrace.add_token()
    with pytest.raises(InvalidEnvironmentUrl) as caught:
        make_client(token, allow_private=False).lookup_token()
    assert "non-public address" in caught.value.message
    assert fake_dynatrace.requests == []


def test_public_hosts_are_called_on_the_address_that_was_checked():
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"version": "1.0"})

    with DynatraceClient(
        "https://abc12345.live.dynatrace.com",
        "dt0c01.A.B",
        allow_private=False,
        transport=httpx.MockTransport(capture),
        resolver=lambda host, port: ["34.197.2.44"],
    ) as client:
        assert client.cluster_version() == "1.0"
    assert seen[0].url.host == "34.197.2.44"
    assert seen[0].headers["host"] == "abc12345.live.dynatrace.com"
    assert seen[0].extensions["sni_hostname"] == "abc12345.live.dynatrace.com"


def test_rebinding_to_a_private_address_is_refused_at_call_time():
    answers = iter([["34.197.2.44"], ["127.0.0.1"]])

    def capture(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"version": "1.0"})

    with DynatraceClient(
        "https://abc12345.live.dynatrace.com",
        "dt0c01.A.B",
        allow_private=False,
        transport=httpx.MockTransport(capture),
        resolver=lambda host, port: next(answers),
    ) as client:
        assert client.cluster_version() == "1.0"
        with pytest.raises(InvalidEnvironmentUrl):
            client.cluster_version()
