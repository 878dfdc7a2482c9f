"""The payload template we ask users to paste into a Dynatrace Custom Integration.

One source for the template shown by ``/webhook-url``, the fields the webhook parser looks for, and the
report on a test notification. ``{ImpactedEntities}`` and ``{ProblemDetailsJSONv2}`` expand to JSON, so
they stand unquoted.
"""

from __future__ import annotations

SUGGESTED_PAYLOAD = """{
  "ProblemID": "{ProblemID}",
  "PID": "{PID}",
  "State": "{State}",
  "ProblemTitle": "{ProblemTitle}",
  "ProblemSeverity": "{ProblemSeverity}",
  "ProblemImpact": "{ProblemImpact}",
  "ProblemURL": "{ProblemURL}",
  "ImpactedEntity": "{ImpactedEntity}",
  "ImpactedEntityNames": "{ImpactedEntityNames}",
  "ImpactedEntities": {ImpactedEntities},
  "Tags": "{Tags}",
  "ProblemDetailsJSONv2": {ProblemDetailsJSONv2}
}"""

# Field -> what Borealis loses without it; the test-notification report names the missing ones.
EXPECTED_FIELDS: dict[str, str] = {
    "ProblemID": "the display id shown in Dynatrace (P-12345)",
    "PID": "the stable problem id that keeps one record per problem",
    "State": "the lifecycle (OPEN, RESOLVED, MERGED)",
    "ProblemTitle": "the title",
    "ProblemSeverity": "the severity and the derived priority",
    "ProblemImpact": "the impact level",
    "ProblemURL": "the deep link back to Dynatrace",
    "ImpactedEntity": "the impact sentence",
    "ImpactedEntityNames": "the entity names",
    "ImpactedEntities": "entity ids, used to group related problems",
    "Tags": "tags, used to group related problems",
    "ProblemDetailsJSONv2": "root cause, evidence and Dynatrace's start and end times",
}
