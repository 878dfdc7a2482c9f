"""Keeping Borealis in sync with Dynatrace: problem enrichment, backfill on connect, and periodic
reconciliation against ``GET /api/v2/problems``, all as durable jobs.

- ``borealis.sync.service``: requesting enrichment (intake calls it), the entity cache, sync state.
- ``borealis.sync.enrichment`` and ``borealis.sync.reconcile``: the flows the jobs run.
- ``borealis.sync.api``: clients whose calls are capped per connection.
- ``borealis.sync.topology``: the entity cache as the topology correlation walks.
"""
