"""Where the tests' reference data lives: ``tests/fixtures/`` inside the repository.

The Dynatrace samples (real API responses and webhook payloads, see ``fixtures/dynatrace/SOURCES.md``) are
copied into the repository so that a lone clone passes its tests: nothing here reads outside the checkout.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
FIXTURES = REPOSITORY / "tests" / "fixtures"
DYNATRACE = FIXTURES / "dynatrace"
API_SAMPLES = DYNATRACE / "api-samples"
WEBHOOK_SAMPLES = DYNATRACE / "webhook-samples"
