"""The Dynatrace error tree: every error in one group, its status and code as the API and README promise,
and the notChecked entry RCA makes of it."""

from __future__ import annotations

import inspect

import pytest

from borealis.dynatrace import errors
from borealis.dynatrace.errors import (
    DynatraceError,
    EnvironmentNotFound,
    NeedsUserAction,
    RateLimited,
    ResourceNotFound,
    ScopeMissing,
    TlsFailure,
    TokenRejected,
    Transient,
    UpstreamError,
)
from borealis.errors import Conflict
from borealis.rca.evidence import NotChecked

# class: (group, status, code). The codes and statuses are the HTTP API's contract.
TREE: dict[str, tuple[type[DynatraceError], int, str]] = {
    "InvalidEnvironmentUrl": (NeedsUserAction, 422, "invalid_environment_url"),
    "TokenRejected": (NeedsUserAction, 422, "dynatrace_token_rejected"),
    "TokenDisabled": (NeedsUserAction, 422, "dynatrace_token_disabled"),
    "ScopeMissing": (NeedsUserAction, 422, "dynatrace_scope_missing"),
    "EnvironmentNotFound": (NeedsUserAction, 422, "dynatrace_environment_not_found"),
    "ResourceNotFound": (NeedsUserAction, 404, "dynatrace_resource_not_found"),
    "TlsFailure": (NeedsUserAction, 502, "dynatrace_tls_failure"),
    "Unreachable": (Transient, 502, "dynatrace_unreachable"),
    "Timeout": (Transient, 504, "dynatrace_timeout"),
    "RateLimited": (Transient, 503, "dynatrace_rate_limited"),
    "UpstreamError": (Transient, 502, "dynatrace_upstream_error"),
}
GROUPS = (NeedsUserAction, Transient)


def concrete_errors() -> dict[str, type[DynatraceError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, DynatraceError) and cls not in (DynatraceError, *GROUPS)
    }


def test_every_dynatrace_error_is_in_the_table():
    assert set(concrete_errors()) == set(TREE)


@pytest.mark.parametrize("name", sorted(TREE))
def test_each_error_belongs_to_exactly_one_group(name: str):
    cls = concrete_errors()[name]
    group = TREE[name][0]
    assert [g for g in GROUPS if issubclass(cls, g)] == [group]


@pytest.mark.parametrize("name", sorted(TREE))
def test_statuses_and_codes_are_unchanged(name: str):
    cls = concrete_errors()[name]
    _, status, code = TREE[name]
    assert (cls.status_code, cls.code) == (status, code)


def test_not_connected_is_our_conflict_not_a_dynatrace_error():
    assert issubclass(errors.NotConnected, Conflict)
    assert not issubclass(errors.NotConnected, DynatraceError)


def test_messages_keep_what_to_fix():
    assert "dt0c01" in TokenRejected().message
    assert "BOREALIS_DYNATRACE_CA_BUNDLE" in TlsFailure("dt.example.com", "certificate not trusted").message
    assert "in about 7 s" in RateLimited(7).message


def test_a_transient_error_becomes_an_error_gap_with_its_message():
    error = UpstreamError("Dynatrace at dt.example.com answered 503; this is on the Dynatrace side")
    gap = NotChecked.for_error("error logs of SERVICE-1", error, ["SERVICE-1"])
    assert gap == NotChecked(
        what="error logs of SERVICE-1", reason=error.message, code="error", entity_ids=["SERVICE-1"]
    )


def test_a_rate_limit_becomes_a_rate_limited_gap():
    gap = NotChecked.for_error("events of HOST-1", RateLimited(30), ["HOST-1"])
    assert gap.code == "rate_limited"
    assert gap.reason.startswith("Dynatrace kept answering 429 (rate limit): ")
    assert gap.entity_ids == ["HOST-1"]


def test_a_user_action_error_becomes_a_gap_that_says_what_to_fix():
    error = EnvironmentNotFound("https://dt.example.com", what="answers with a web page")
    gap = NotChecked.for_error("the Dynatrace API", error)
    assert (gap.code, gap.reason, gap.scope, gap.entity_ids) == ("error", error.message, None, [])


def test_a_missing_scope_names_the_scope_the_next_steps_ask_for():
    gap = NotChecked.for_error("events of HOST-1", ScopeMissing("events.read"), ["HOST-1"])
    assert (gap.code, gap.scope) == ("missing_scope", "events.read")
    assert gap.reason == "the token lacks the events.read scope"


def test_an_unknown_object_is_a_not_found_gap():
    gap = NotChecked.for_error("entity HOST-9", ResourceNotFound("Dynatrace: HOST-9 not found"))
    assert gap.code == "not_found"
    assert gap.reason == "Dynatrace does not know it: Dynatrace: HOST-9 not found"


def test_an_error_outside_the_tree_is_an_error_gap():
    gap = NotChecked.for_error("the Dynatrace API", Conflict("the token cannot be decrypted"))
    assert (gap.code, gap.reason) == ("error", "the token cannot be decrypted")
