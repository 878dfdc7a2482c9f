"""Environment URL normalization and the SSRF checks: every form DESIGN section 3 names."""

from __future__ import annotations

import pytest

from borealis.dynatrace.errors import InvalidEnvironmentUrl, Unreachable
from borealis.dynatrace.urls import (
    check_destination,
    needs_managed_path,
    normalize_environment_url,
    validate_environment_url,
)

NORMALIZED = [
    # SaaS
    ("https://abc12345.live.dynatrace.com", "https://abc12345.live.dynatrace.com"),
    ("  https://abc12345.live.dynatrace.com  ", "https://abc12345.live.dynatrace.com"),
    ("abc12345.live.dynatrace.com", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com/", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com///", "https://abc12345.live.dynatrace.com"),
    ("HTTPS://ABC12345.LIVE.DYNATRACE.COM", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com.", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com:443/", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com?x=1#top", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com/#dashboards", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com/api/v2/problems", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.live.dynatrace.com/ui/settings/x", "https://abc12345.live.dynatrace.com"),
    # The UI domain is not the API domain.
    ("https://abc12345.apps.dynatrace.com", "https://abc12345.live.dynatrace.com"),
    ("abc12345.apps.dynatrace.com/ui/apps/dynatrace.classic/", "https://abc12345.live.dynatrace.com"),
    ("https://abc12345.apps.dynatracegov.com", "https://abc12345.live.dynatracegov.com"),
    # Managed: /e/{env-id} is kept; what follows it is dropped.
    ("https://dt.example.com/e/1a2b3c4d", "https://dt.example.com/e/1a2b3c4d"),
    ("dt.example.com/e/1a2b3c4d/", "https://dt.example.com/e/1a2b3c4d"),
    ("https://dt.example.com/e/1a2b3c4d/api/v2/problems?x=1", "https://dt.example.com/e/1a2b3c4d"),
    ("https://dt.example.com/e/1a2b3c4d/#dashboards", "https://dt.example.com/e/1a2b3c4d"),
    ("https://dt.example.com:9999/e/1a2b3c4d", "https://dt.example.com:9999/e/1a2b3c4d"),
    ("https://dt.example.com//e//1a2b3c4d//", "https://dt.example.com/e/1a2b3c4d"),
    # Gov and other custom domains as given.
    ("https://abc12345.live.dynatracegov.com", "https://abc12345.live.dynatracegov.com"),
    ("https://dynatrace.agency.gov", "https://dynatrace.agency.gov"),
    ("https://proxy.example.com/dynatrace/", "https://proxy.example.com/dynatrace"),
    # Internationalized host names become their ASCII form.
    ("https://dynatrace.bücher.example", "https://dynatrace.xn--bcher-kva.example"),
    # Literal addresses (refused or allowed later by the address check).
    ("https://10.0.0.5/e/prod", "https://10.0.0.5/e/prod"),
    ("https://[2001:db8::1]:8443/e/prod", "https://[2001:db8::1]:8443/e/prod"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZED)
def test_environment_url_forms_normalize(raw, expected):
    assert normalize_environment_url(raw) == expected


REFUSED = [
    ("", "is required"),
    ("   ", "is required"),
    (None, "is required"),
    (42, "is required"),
    ("http://abc12345.live.dynatrace.com", "must use https://"),
    ("ftp://abc12345.live.dynatrace.com", "must start with https://"),
    ("https://user:secret@abc12345.live.dynatrace.com", "must not contain a user name or password"),
    ("https://token@abc12345.live.dynatrace.com", "must not contain a user name or password"),
    ("https://", "has no host name"),
    ("https:///e/abc", "has no host name"),
    ("https://abc 123.live.dynatrace.com", "must not contain spaces"),
    ("https://abc_123.live.dynatrace.com", "invalid host name"),
    ("https://-bad-.example.com", "invalid host name"),
    ("https://dt.example.com:99999", "not a valid URL"),
    ("https://dt.example.com/e/", "without an environment id"),
    ("https://dt.example.com/e/a%2F..", "invalid environment id"),
    ("https://proxy.example.com/a/../b", "cannot use"),
    ("https://" + "a" * 2050 + ".com", "longer than 2048"),
]


@pytest.mark.parametrize(("raw", "message"), REFUSED)
def test_unusable_environment_urls_are_refused_naming_the_field(raw, message):
    with pytest.raises(InvalidEnvironmentUrl) as caught:
        normalize_environment_url(raw)
    assert message in caught.value.message
    assert caught.value.message.startswith("environmentUrl: ")
    assert caught.value.details == {"field": "environmentUrl"}
    assert caught.value.status_code == 422


def test_credentials_never_appear_in_the_error():
    with pytest.raises(InvalidEnvironmentUrl) as caught:
        normalize_environment_url("https://admin:hunter2@dt.example.com")
    assert "hunter2" not in caught.value.message


def _resolver(table):
    def resolve(host, port):
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


DNS = _resolver(
    {
        "abc12345.live.dynatrace.com": ["34.197.2.44"],
        "dt.internal.example": ["10.1.2.3"],
        "sneaky.example.com": ["52.1.1.1", "127.0.0.1"],
        "metadata.example.com": ["169.254.169.254"],
        "cgnat.example.com": ["100.64.1.1"],
        "v6private.example.com": ["fd00::1"],
        "mapped.example.com": ["::ffff:192.168.1.1"],
        "localhost": ["127.0.0.1", "::1"],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "https://dt.internal.example/e/prod",
        "https://sneaky.example.com",
        "https://metadata.example.com",
        "https://cgnat.example.com",
        "https://v6private.example.com",
        "https://mapped.example.com",
        "https://localhost:8443",
        "https://127.0.0.1",
        "https://[::1]",
        "https://0.0.0.0",
        "https://192.168.0.10/e/x",
        "https://[fe80::1]",
    ],
)
def test_hosts_on_non_public_addresses_are_refused_by_default(url):
    with pytest.raises(InvalidEnvironmentUrl) as caught:
        check_destination(url, allow_private=False, resolver=DNS)
    assert "BOREALIS_ALLOW_PRIVATE_DYNATRACE" in caught.value.message


def test_public_hosts_pass_the_address_check():
    assert [
        str(ip)
        for ip in check_destination("https://abc12345.live.dynatrace.com", allow_private=False, resolver=DNS)
    ] == ["34.197.2.44"]


def test_private_hosts_pass_when_the_operator_allows_them():
    url = validate_environment_url("https://dt.internal.example/e/prod", allow_private=True, resolver=DNS)
    assert url == "https://dt.internal.example/e/prod"


def test_plain_http_is_allowed_only_to_private_hosts_when_allowed():
    allowed = validate_environment_url(
        "http://dt.internal.example:8080/e/prod", allow_private=True, resolver=DNS
    )
    assert allowed == "http://dt.internal.example:8080/e/prod"
    with pytest.raises(InvalidEnvironmentUrl, match="https:// for the public host"):
        validate_environment_url("http://abc12345.live.dynatrace.com", allow_private=True, resolver=DNS)
    with pytest.raises(InvalidEnvironmentUrl, match="must use https://"):
        validate_environment_url("http://dt.internal.example/e/prod", allow_private=False, resolver=DNS)


def test_unresolvable_host_is_unreachable_with_a_dns_message():
    with pytest.raises(Unreachable) as caught:
        validate_environment_url("https://typo.live.dynatrace.com", allow_private=False, resolver=DNS)
    assert "cannot be resolved" in caught.value.message
    assert caught.value.details == {"field": "environmentUrl"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://abc12345.live.dynatrace.com", False),
        ("https://dt.example.com", True),
        ("https://dt.example.com/e/abc", False),
        ("https://abc.sprint.dynatracelabs.com", False),
    ],
)
def test_custom_domains_without_environment_path_are_flagged(url, expected):
    assert needs_managed_path(url) is expected
