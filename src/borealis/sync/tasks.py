"""Job handlers of syncing with Dynatrace: enrichment per problem, backfill and sync per connection
(registered by ``borealis.jobs.registry.register_handlers``)."""

from __future__ import annotations

from typing import Any

from borealis.jobstore import JobContext
from borealis.sync import enrichment, reconcile


def enrich_problem(ctx: JobContext) -> dict[str, Any] | None:
    """Fetch a problem's details and entities, cache them, and correlate the problem again."""
    return enrichment.run(ctx)


def backfill(ctx: JobContext) -> dict[str, Any] | None:
    """Pull the problems of the last BOREALIS_BACKFILL_HOURS after a connect."""
    return reconcile.run(ctx, kind=reconcile.BACKFILL)


def sync(ctx: JobContext) -> dict[str, Any] | None:
    """Reconcile the stored problems with the API: create missed ones, close missed resolutions."""
    return reconcile.run(ctx, kind=reconcile.SYNC)
