"""Out-of-range ids, offsets, dates and cursors answer 422 with a message, never 500."""

from __future__ import annotations

import base64
import json

import pytest

BIG = 2**63


def cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "path",
    [
        f"/incidents/{BIG}",
        f"/incidents/{BIG}/rca",
        f"/dynatrace/alerts/{BIG}",
        f"/jobs/{BIG}",
        f"/dynatrace/alerts?offset={BIG}",
        f"/incidents?offset={BIG}",
        f"/jobs?offset={BIG}",
        "/dynatrace/alerts?since=0001-01-01T00:00:00%2B14:00",
        "/incidents?since=0001-01-01T00:00:00%2B14:00",
        "/dynatrace/alerts?cursor=" + cursor('["2024-01-01T00:00:00+00:00", 1e400]'),
        f"/dynatrace/alerts?cursor={cursor('[' * 3000 + ']' * 3000)}",
        f"/dynatrace/alerts?cursor={cursor(json.dumps(['2024-01-01T00:00:00+00:00', BIG]))}",
        f"/dynatrace/alerts?cursor={cursor(json.dumps(['0001-01-01T00:00:00+14:00', 1]))}",
    ],
)
def test_a_read_out_of_range_is_422_with_a_message(account, path):
    answer = account.client.get(path)
    assert answer.status_code == 422, (path, answer.status_code, answer.text)
    error = answer.json()["error"]
    assert error["message"]
    assert error["requestId"]


def test_merge_and_move_with_an_id_out_of_range_never_reach_the_database(account):
    in_path = [
        account.client.post(f"/incidents/{BIG}/merge", json={"sourceIncidentId": 1}),
        account.client.post(f"/incidents/{BIG}/problems/1/move", json={}),
    ]
    for answer in in_path:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["message"]
    in_body = [
        account.client.post("/incidents/1/merge", json={"sourceIncidentId": BIG}),
        account.client.post("/incidents/1/problems/1/move", json={"targetIncidentId": BIG}),
        account.client.post(f"/incidents/1/problems/{BIG}/move", json={}),
    ]
    for answer in in_body:
        # The incident is looked up first (404 here); an existing one gets the 422 for the body.
        assert answer.status_code in (404, 422), answer.text
        assert answer.json()["error"]["message"]
