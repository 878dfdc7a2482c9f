"""The webhook parser: every real sample, and one variant per kind of drift real senders produce."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from borealis.dynatrace.payload import parse_webhook, template_report
from borealis.dynatrace.problem_details import from_api_problem
from borealis.dynatrace.problem_notification import (
    MERGED,
    OPEN,
    RESOLVED,
    PayloadRejected,
    pid_key,
    priority_for,
)
from borealis.dynatrace.template import EXPECTED_FIELDS, SUGGESTED_PAYLOAD
from tests.support.webhooks import SAMPLES, encode, filled_template, notification

API_SAMPLES = Path(SAMPLES).parent / "api-samples"


def sample(name: str) -> bytes:
    return (Path(SAMPLES) / name).read_bytes()


def parse(body: dict) -> object:
    return parse_webhook(encode(body))


# --- the real samples ----------------------------------------------------------------------------------


def test_every_sample_parses_without_error():
    names = sorted(path.name for path in Path(SAMPLES).glob("*.json"))
    assert len(names) >= 3
    for name in names:
        parsed = parse_webhook(sample(name))
        assert parsed.pid, name
        assert parsed.content_hash


def test_2017_open_sample_keeps_all_five_entities_and_plain_tags():
    parsed = parse_webhook(sample("webhook-2017-open-process-crash-multi-entity.json"))
    assert parsed.pid == "1724771582765390602"
    assert parsed.display_id == "324"
    assert parsed.state == OPEN
    assert parsed.title == "2 application problems"
    assert [e["entityId"] for e in parsed.impacted_entities] == [
        "APPLICATION-08EBD5603755FA87",
        "PROCESS_GROUP_INSTANCE-769FDDE57854E59C",
        "SERVICE-647148447FC4DDD2",
        "SERVICE-9F3CCA917EA0080A",
        "SERVICE-7A68C3A53D9236A5",
    ]
    assert parsed.impacted_entities[1]["type"] == "PROCESS_GROUP_INSTANCE"
    assert parsed.tags == [
        {"context": "CONTEXTLESS", "key": "CouchDB", "value": None},
        {"context": "CONTEXTLESS", "key": "autoremediation", "value": None},
    ]
    assert parsed.is_test is False
    assert parsed.observed_at is None


def test_keptn_resolved_sample_reads_v1_details_for_times_and_root_cause():
    parsed = parse_webhook(sample("webhook-keptn-resolved-service-responsetime-problemdetailsv1.json"))
    assert parsed.state == RESOLVED
    assert parsed.pid == "-175196579159161496"
    assert parsed.api_problem_id == "-175196579159161496_1578561060000V2"
    assert parsed.pid_key == pid_key(parsed.api_problem_id)
    assert parsed.details_format == "v1"
    assert parsed.severity == "PERFORMANCE"
    assert parsed.impact == "SERVICE"
    assert parsed.priority == "medium"
    assert parsed.start_time == datetime.fromtimestamp(1578561060, UTC)
    assert parsed.end_time == datetime.fromtimestamp(1578562140, UTC)
    assert parsed.observed_at == datetime.fromtimestamp(1578562440, UTC)
    assert parsed.root_cause_entity == {
        "entityId": "SERVICE-1016B63497E3FEF6",
        "name": "ItemsController",
        "type": "SERVICE",
    }
    assert {"context": "CONTEXTLESS", "key": "keptn_stage", "value": "production"} in parsed.tags


def test_official_test_run_is_recognized_and_reports_the_missing_template_fields():
    parsed = parse_webhook(sample("webhook-official-docs-testrun-example.json"))
    assert parsed.is_test
    assert parsed.problem_url == "https://example.com"
    report = template_report(parsed, datetime(2024, 1, 1, tzinfo=UTC))
    assert report["ok"] is False
    assert report["problemId"] == "999"
    assert report["pid"] == "99999"
    assert report["title"] == "Dynatrace problem notification test run"
    assert "ProblemURL" not in report["missingFields"]
    assert {"ProblemSeverity", "ProblemDetailsJSONv2"} <= set(report["missingFields"])
    assert report["unreplacedPlaceholders"] == []
    assert report["receivedAt"] == "2024-01-01T00:00:00+00:00"


def test_suggested_template_filled_in_by_a_test_run_is_reported_ok():
    parsed = parse_webhook(filled_template())
    report = template_report(parsed, datetime.now(UTC))
    assert report == {**report, "ok": True, "missingFields": [], "unreplacedPlaceholders": []}


# --- drift ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("OPEN", OPEN),
        ("open", OPEN),
        (" Resolved ", RESOLVED),
        ("CLOSED", RESOLVED),
        ("closed", RESOLVED),
        ("MERGED", MERGED),
    ],
)
def test_state_is_case_insensitive_and_closed_means_resolved(raw, expected):
    assert parse(notification(state=raw)).state == expected


def test_unknown_state_is_kept_verbatim_with_a_warning():
    parsed = parse(notification(state="Acknowledged"))
    assert parsed.state == "Acknowledged"
    assert parsed.state_raw == "Acknowledged"
    assert any("Acknowledged" in warning for warning in parsed.warnings)


def test_unknown_severity_and_impact_are_kept_verbatim_and_known_ones_in_dynatrace_case():
    parsed = parse(notification(severity="QUANTUM_FLUX", impact="galaxy"))
    assert (parsed.severity, parsed.impact) == ("QUANTUM_FLUX", "galaxy")
    assert parsed.priority == "medium"
    parsed = parse(notification(severity="availability", impact="application"))
    assert (parsed.severity, parsed.impact, parsed.priority) == ("AVAILABILITY", "APPLICATION", "critical")


def test_priorities_follow_severity():
    assert [
        priority_for(s) for s in ("AVAILABILITY", "ERROR", "PERFORMANCE", "MONITORING_UNAVAILABLE", "INFO")
    ] == [
        "critical",
        "high",
        "medium",
        "low",
        "info",
    ]
    assert priority_for(None) is None


def test_impacted_entities_as_a_json_string_are_read():
    entities = [{"type": "SERVICE", "name": "checkout", "entity": "SERVICE-1"}]
    parsed = parse(notification(ImpactedEntities=json.dumps(entities)))
    assert parsed.impacted_entities == [{"entityId": "SERVICE-1", "name": "checkout", "type": "SERVICE"}]


def test_impacted_entities_as_an_empty_string_mean_none():
    assert parse(notification(ImpactedEntities="")).impacted_entities == []


def test_impacted_entities_missing_mean_not_told():
    body = notification()
    del body["ImpactedEntities"]
    body.pop("ProblemDetailsJSONv2")
    assert parse(body).impacted_entities is None


def test_impacted_entities_in_api_shape_are_read():
    entities = [{"entityId": {"id": "HOST-9", "type": "HOST"}, "name": "db-9"}]
    assert parse(notification(ImpactedEntities=entities)).impacted_entities == [
        {"entityId": "HOST-9", "name": "db-9", "type": "HOST"}
    ]


def test_tags_with_context_key_and_value_keep_the_raw_string():
    raw = "plain, key:value, [Kubernetes]namespace:shop, [AWS]arn:aws:iam::1:role/x, "
    parsed = parse(notification(tags=raw))
    assert parsed.tags_raw == raw
    assert parsed.tags == [
        {"context": "CONTEXTLESS", "key": "plain", "value": None},
        {"context": "CONTEXTLESS", "key": "key", "value": "value"},
        {"context": "Kubernetes", "key": "namespace", "value": "shop"},
        {"context": "AWS", "key": "arn", "value": "aws:iam::1:role/x"},
    ]


def test_empty_tags_fall_back_to_the_v2_entity_tags():
    body = notification(tags="")
    body["ProblemDetailsJSONv2"]["entityTags"] = [
        {
            "context": "CONTEXTLESS",
            "key": "Environment",
            "value": "UAT",
            "stringRepresentation": "Environment:UAT",
        }
    ]
    assert parse(body).tags == [{"context": "CONTEXTLESS", "key": "Environment", "value": "UAT"}]


@pytest.mark.parametrize("key", ["ProblemDetailsJSONv2", "ProblemDetailsJSON", "ProblemDetails"])
@pytest.mark.parametrize("as_string", [False, True])
def test_v2_details_are_read_under_any_key_as_object_or_string(key, as_string):
    body = notification(root_cause={"entityId": {"id": "HOST-7", "type": "HOST"}, "name": "db-7"})
    details = body.pop("ProblemDetailsJSONv2")
    body[key] = json.dumps(details) if as_string else details
    parsed = parse(body)
    assert parsed.details_format == "v2"
    assert parsed.api_problem_id == details["problemId"]
    assert parsed.start_time == datetime.fromtimestamp(details["startTime"] / 1000, UTC)
    assert parsed.end_time is None
    assert parsed.root_cause_entity == {"entityId": "HOST-7", "name": "db-7", "type": "HOST"}
    assert parsed.management_zones == [{"id": "1", "name": "Shop"}]


def test_problem_url_key_variants_are_read():
    body = notification()
    url = body.pop("ProblemURL")
    body["Problem URL"] = url
    parsed = parse(body)
    assert parsed.problem_url == url
    assert "ProblemURL" in parsed.present_fields


def test_keys_in_another_case_are_read():
    body = {key.lower(): value for key, value in notification().items()}
    parsed = parse(body)
    assert (parsed.pid, parsed.display_id, parsed.title) == (
        "-4242424242424242424",
        "P-1001",
        "CPU saturation",
    )


def test_unreplaced_placeholders_are_reported_not_stored():
    parsed = parse(notification(ProblemURL="{ProblemURL}", ImpactedEntity="{ImpactedEntity}", tags="{Tags}"))
    assert parsed.problem_url is None
    assert parsed.impacted_entity is None
    assert parsed.tags is None
    assert set(parsed.unreplaced) == {"ProblemURL", "ImpactedEntity", "Tags"}


def test_quoted_unreplaced_json_placeholders_are_reported():
    body = notification(ImpactedEntities="{ImpactedEntities}")
    body["ProblemDetailsJSONv2"] = "{ProblemDetailsJSONv2}"
    parsed = parse(body)
    assert parsed.impacted_entities is None
    assert {"ImpactedEntities", "ProblemDetailsJSONv2"} <= set(parsed.unreplaced)


def test_unreplaced_pid_is_refused_with_a_message_naming_it():
    body = notification(PID="{PID}")
    body.pop("ProblemDetailsJSONv2")
    with pytest.raises(PayloadRejected, match=r"PID is unreplaced") as caught:
        parse(body)
    assert "webhook-url" in caught.value.message
    assert not caught.value.malformed


def test_unreplaced_pid_falls_back_to_the_details_problem_id():
    parsed = parse(notification(PID="{PID}"))
    assert parsed.pid == "-4242424242424242424_1700000000000V2"
    assert parsed.pid_key == "-4242424242424242424"


def test_numeric_and_non_numeric_ids_are_text():
    parsed = parse(notification(PID=1234567, ProblemID=42))
    assert (parsed.pid, parsed.display_id) == ("1234567", "42")
    assert parse(notification(pid="custom-pid-abc")).pid_key == "custom-pid-abc"


def test_duplicate_keys_keep_the_useful_value():
    body = b'{"PID": "{PID}", "PID": "777", "State": "OPEN", "State": "", "ProblemTitle": "dup"}'
    parsed = parse_webhook(body)
    assert parsed.pid == "777"
    assert parsed.state == OPEN
    assert any("2 times" in warning for warning in parsed.warnings)


def test_a_key_sent_twice_is_found_in_a_body_with_escapes():
    body = b'{"PID": "{PID}", "ProblemTitle": "a \\"quoted\\" title", "PID": "777", "Tags": "k\\u003av"}'
    parsed = parse_webhook(body)
    assert parsed.pid == "777"
    assert parsed.title == 'a "quoted" title'
    assert any("PID was sent 2 times" in warning for warning in parsed.warnings)


def test_a_key_named_again_inside_the_details_is_not_a_key_sent_twice():
    body = notification(state="OPEN")
    body["ProblemDetailsJSONv2"]["title"] = "ProblemTitle"
    body["ProblemDetailsJSONv2"]["PID"] = "other"
    parsed = parse(body)
    assert (parsed.pid, parsed.title, parsed.state) == ("-4242424242424242424", "CPU saturation", OPEN)
    assert not any("times" in warning for warning in parsed.warnings)


def test_a_key_sent_twice_inside_the_details_keeps_its_last_value():
    text = encode(notification()).replace(b'"status": "OPEN"', b'"status": "CLOSED", "status": "OPEN"')
    parsed = parse_webhook(text)
    assert parsed.details["status"] == "OPEN"
    assert not any("times" in warning for warning in parsed.warnings)


def test_long_digit_runs_are_kept_exactly_in_text_and_in_numbers():
    body = notification(pid="-8720840650528236841")
    body["ProblemDetailsJSONv2"]["occurrences"] = 2**70
    body["ProblemDetailsJSONv2"]["ratio"] = 0.1234567890123456789
    parsed = parse(body)
    assert parsed.pid == "-8720840650528236841"
    assert parsed.details["problemId"] == "-8720840650528236841_1700000000000V2"
    assert parsed.details["occurrences"] == 2**70
    assert isinstance(parsed.details["occurrences"], int)
    assert parsed.details["ratio"] == 0.1234567890123456789


def test_body_is_json_whatever_the_encoding_marks():
    body = "\ufeff" + json.dumps(notification(title="Überlast"))
    assert parse_webhook(body.encode("utf-8")).title == "Überlast"


def test_nul_escapes_do_not_survive_parsing():
    parsed = parse_webhook(encode(notification(title="bad\u0000title")))
    assert "\x00" not in parsed.title


def test_timestamps_out_of_range_are_ignored_with_a_warning():
    body = notification()
    body["ProblemDetailsJSONv2"]["startTime"] = 10**30
    parsed = parse(body)
    assert parsed.start_time is None
    assert any("out of range" in warning for warning in parsed.warnings)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "a list"),
        (b'"text"', "a str"),
        (b"null", "a null"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_bodies_are_refused_as_malformed(body, message):
    with pytest.raises(PayloadRejected, match=message) as caught:
        parse_webhook(body)
    assert caught.value.malformed


def test_an_object_without_any_identity_is_refused():
    with pytest.raises(PayloadRejected, match="no PID"):
        parse({"ProblemTitle": "something", "State": "OPEN"})


@pytest.mark.parametrize(
    "marker",
    [
        {"ProblemID": "999"},
        {"ProblemID": "TESTID"},
        {"PID": "99999"},
        {"ProblemTitle": "Dynatrace problem notification test run"},
    ],
)
def test_each_test_marker_alone_marks_a_test_notification(marker):
    body = notification(pid="5555", problem_id="P-5", title="real")
    body.update(marker)
    assert parse(body).is_test


def test_test_notification_with_unreplaced_pid_is_still_a_test():
    parsed = parse({"ProblemID": "999", "PID": "{PID}", "ProblemTitle": "x"})
    assert parsed.is_test
    assert "PID" in parsed.unreplaced


def test_expected_fields_all_come_from_the_suggested_template():
    for name in EXPECTED_FIELDS:
        assert "{" + name + "}" in SUGGESTED_PAYLOAD


def test_identical_bodies_hash_alike_and_different_bodies_differ():
    first = parse(notification())
    assert first.content_hash == parse(notification()).content_hash
    assert first.content_hash != parse(notification(title="other")).content_hash


# --- API problems --------------------------------------------------------------------------------------


def test_api_problem_lands_on_the_same_identity_as_the_webhook_pid():
    problem = json.loads((API_SAMPLES / "api-v2-problems-list-open-and-closed.json").read_text())["problems"][
        1
    ]
    parsed = from_api_problem(problem)
    assert parsed.pid == "-8720840650528236841_1623003540000V2"
    assert parsed.pid_key == pid_key("-8720840650528236841")
    assert parsed.state == RESOLVED
    assert parsed.display_id == "P-210619"
    assert parsed.end_time == datetime.fromtimestamp(1623004383.324, UTC)
    assert parsed.management_zones == [{"id": "8692695975020499402", "name": "Operations Team"}]
    assert {"context": "CONTEXTLESS", "key": "Application", "value": "EasyTravel"} in parsed.tags


def test_api_problem_with_evidence_is_observed_at_its_newest_evidence():
    problem = json.loads((API_SAMPLES / "api-v2-problem-get-by-id-with-evidence-impact.json").read_text())
    parsed = from_api_problem(problem)
    assert parsed.state == OPEN
    assert parsed.observed_at == datetime.fromtimestamp(1638272040, UTC)
    assert parsed.impacted_entities[0]["entityId"] == "MOBILE_APPLICATION-89B1A1E7FE894151"


def test_api_problem_without_problem_id_is_refused():
    with pytest.raises(PayloadRejected):
        from_api_problem({"title": "x"})
