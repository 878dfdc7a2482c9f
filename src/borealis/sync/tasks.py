"""Job kinds of syncing with Dynatrace: enrichment per problem, backfill and sync per connection."""

from __future__ import annotations

from typing import Any

from borealis.dynatrace.service import BACKFILL_JOB, SYNC_JOB
from borealis.jobs import JobContext, register
from borealis.sync import enrichment, reconcile
from borealis.sync.service import ENRICH_JOB


@register(ENRICH_JOB, backoff_base=15.0, backoff_cap=600.0)
def enrich_problem(ctx: JobContext) -> dict[str, Any] | None:
    """Fetch a problem's details and entities, cache them, and correlate the problem again."""
    return enrichment.run(ctx)


@register(BACKFILL_JOB, backoff_base=30.0, backoff_cap=900.0)
def backfill(ctx: JobContext) -> dict[str, Any] | None:
    """Pull the problems of the last BOREALIS_BACKFILL_HOURS after a connect."""
    return reconcile.run(ctx, kind=reconcile.BACKFILL)


@register(SYNC_JOB, backoff_base=30.0, backoff_cap=900.0)
def sync(ctx: JobContext) -> dict[str, Any] | None:
    """Reconcile the stored problems with the API: create missed ones, close missed resolutions."""
    return reconcile.run(ctx, kind=reconcile.SYNC)
