"""A fingerprint of a generated case: the same seed must give the same one in any process."""

from __future__ import annotations

import hashlib
import json

from borealis.simulation import Case


def digest(case: Case) -> str:
    document = {
        "entities": case.entities,
        "metrics": sorted((key, values) for key, values in case.metrics.items()),
        "events": case.events,
        "problem": case.problem,
        "truth": case.truth,
        "traps": case.traps,
        "now": case.now.isoformat(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
