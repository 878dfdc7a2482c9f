"""Schemathesis over every operation in ``/openapi.json``, against the live server on the test database.

Every answer must be one the document promises (a documented status code and content type, a body that
matches its schema), and none may be a 5xx. Each operation gets EXAMPLES valid requests and, when it takes
any input, EXAMPLES invalid ones. The caller is a real user with an API key, connected to the fake
Dynatrace with a background worker running, so operations are exercised past authentication; the webhook
gets its real user id and secret, so its bodies are parsed and stored (it runs first, so the problems and
incidents it creates are there for the rest to find).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.sync import connect, deliver
from tests.support.webhooks import notification

EXAMPLES = 50
WEBHOOK = "POST /dynatrace/webhook/{workspace_id}"
CONNECT = "POST /dynatrace/connect"
# Fuzzed first: what it stores is what the other operations read.
FIRST = (WEBHOOK,)
# Fuzzed last, in this order: each changes what the operations before it rely on (the webhook secret,
# the Dynatrace connection).
LAST = ("POST /dynatrace/webhook-url/rotate", "DELETE /dynatrace/disconnect")
# What POST /dynatrace/connect answers for an address where no Dynatrace listens (the fuzzer types host
# names that do not resolve or refuse; tests allow private addresses, for the fake Dynatrace).
UNREACHABLE = {(502, "dynatrace_unreachable"), (504, "dynatrace_timeout")}
# Sent with every request (and echoed back): an input every operation reads, so even one that takes no
# parameters gets EXAMPLES distinct requests instead of Hypothesis stopping after the only one it has.
REQUEST_IDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80)
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    # The same requests on every run: a failure in CI is one a developer sees again locally.
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Schemathesis' 5xx check, except POST /dynatrace/connect saying that the typed address does not
    answer: the documented gateway answer for it, not a fault of this server."""
    if case.operation.label == CONNECT and response.status_code in (502, 504):
        answered = (response.status_code, response.json()["error"]["code"])
        return None if answered in UNREACHABLE else not_a_server_error(ctx, response, case)
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def documented_operations(document: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}


def takes_input(document: dict[str, Any], label: str) -> bool:
    method, path = label.split(" ", 1)
    operation = document["paths"][path][method.lower()]
    # A declared credential is an input too: a request without it, or with a wrong one, is invalid.
    return bool(operation.get("parameters") or operation.get("requestBody") or operation.get("security"))


def fuzz_order(label: str) -> tuple[int, int, str]:
    return (-int(label in FIRST), LAST.index(label) + 1 if label in LAST else 0, label)


@pytest.fixture
def caller(account, fake_dynatrace, background_worker) -> dict[str, str]:
    """A connected account with one delivered problem (and so an incident) for ids to find."""
    background_worker()
    connect(account, fake_dynatrace)
    deliver(account, notification())
    secret = account.client.get("/dynatrace/webhook-url").json()["headers"]["Authorization"]
    return {"api": f"Bearer {account.api_key}", "webhook": secret, "workspace_id": account.workspace_id}


def fuzz(
    operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str], **fixed: Any
) -> Counter:
    """Send one operation's examples of one mode through the checks; how many answers had each status."""
    statuses: Counter[int] = Counter()

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(mode, **fixed), request_id=REQUEST_IDS)
    def run(case: Case, request_id: str) -> None:
        response = case.call(base_url, session, {**headers, "X-Request-ID": request_id}, timeout=60)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    with requests.Session() as session:
        try:
            run()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            # Nothing to make invalid: the operation takes no input.
    return statuses


def test_every_operation_answers_as_documented(live_server, caller) -> None:
    document = httpx.get(f"{live_server.url}/openapi.json").json()
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    assert set(operations) == documented_operations(document)
    assert {*FIRST, *LAST} <= set(operations)

    failures: dict[str, str] = {}
    answered: dict[str, dict[GenerationMode, Counter]] = {}
    for label in sorted(operations, key=fuzz_order):
        headers, fixed = {"Authorization": caller["api"]}, {}
        if label == WEBHOOK:
            headers, fixed = (
                {"Authorization": caller["webhook"]},
                {"path_parameters": {"workspace_id": caller["workspace_id"]}},
            )
        started = time.perf_counter()
        answered[label] = {}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                answered[label][mode] = fuzz(operations[label], mode, live_server.url, headers, **fixed)
            except (Exception, FailureGroup) as exc:
                failures[f"{label} ({mode.value})"] = str(exc)
        summary = {mode.value: dict(statuses) for mode, statuses in answered[label].items()}
        print(f"{time.perf_counter() - started:6.1f}s {label} {summary}")

    assert not failures, "\n\n".join(f"{label}\n{failure}" for label, failure in failures.items())
    for label, modes in answered.items():
        assert modes[GenerationMode.POSITIVE].total() >= EXAMPLES, label
        invalid = modes[GenerationMode.NEGATIVE].total()
        assert invalid >= EXAMPLES if takes_input(document, label) else invalid == 0, label
