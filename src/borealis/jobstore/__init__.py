"""Durable work, recorded: jobs with their cause, claimed under a lease, retried, visible.

Every layer may record work here (a new problem's enrichment, an incident's analysis); the workers and
the handlers that carry it out live above, in ``borealis.jobs``. The surface other packages use::

    from borealis.jobstore import JobContext, PermanentFailure, Retry, enqueue
"""

from borealis.jobstore.context import JobContext, LeaseLost, PermanentFailure, Retry
from borealis.jobstore.enqueueing import JobRequest, enqueue, enqueue_many
from borealis.jobstore.listing import counts_by_state
from borealis.jobstore.schedules import ensure_schedule, remove_schedule

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
    "remove_schedule",
]
