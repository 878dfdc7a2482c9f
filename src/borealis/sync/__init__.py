"""Keeping Borealis in sync with Dynatrace: problem enrichment, backfill on connect, and periodic
reconciliation against ``GET /api/v2/problems``, all as durable jobs.

- ``borealis.sync.service``: requesting enrichment, enrichment records, sync state.
- ``borealis.sync.enrichment`` and ``borealis.sync.reconcile``: the flows the jobs run.
- ``borealis.sync.tasks``: their job handlers (registered in ``borealis.jobs.registry``).

The Dynatrace side they stand on (capped clients, the entity cache) is in ``borealis.dynatrace``.
"""
