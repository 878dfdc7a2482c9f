"""Durable background work: jobs recorded with their cause, claimed under a lease, retried, visible.

The surface other domains use::

    from borealis.jobs import JobContext, PermanentFailure, Retry, enqueue, register
"""

from borealis.jobs.enqueueing import JobRequest, enqueue, enqueue_many
from borealis.jobs.listing import counts_by_state
from borealis.jobs.registry import JobContext, LeaseLost, PermanentFailure, Retry, register
from borealis.jobs.schedules import ensure_schedule, remove_schedule

__all__ = [
    "JobContext",
    "JobRequest",
    "LeaseLost",
    "PermanentFailure",
    "Retry",
    "counts_by_state",
    "enqueue",
    "enqueue_many",
    "ensure_schedule",
    "register",
    "remove_schedule",
]
