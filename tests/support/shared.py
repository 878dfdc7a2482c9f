"""Where the project's reference data lives: the ``shared/`` folder beside the checkout.

CI clones the repository into another folder with a copy of ``shared/`` beside it, so the path is found
from this file, never written out. ``BOREALIS_SHARED_DIR`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("BOREALIS_SHARED_DIR", REPOSITORY.parent / "shared"))
DYNATRACE = SHARED / "dynatrace"
API_SAMPLES = DYNATRACE / "api-samples"
WEBHOOK_SAMPLES = DYNATRACE / "webhook-samples"
OPENAPI = DYNATRACE / "openapi"
