"""A simulated Dynatrace environment: generated incidents with a known cause, served over HTTP.

Two halves. The generator (``cases``, ``topology``, ``series``, ``faults``, ``documents``) builds a case
from a seed: a service graph, three hours of metrics, events and the problem Davis opened, with the true
cause to score an analysis against. The server (``store``, ``server``, ``selectors``, ``api*``) speaks the
Environment API over real HTTP. ``load(case, fake)`` joins them. The RCA tests and benchmark measure the
analysis with it; ``borealis demo`` shows Borealis working without a tenant.
"""

from __future__ import annotations

from borealis.simulation.cases import TRAPS, Case, generate, load, problem_on_cause, shifted
from borealis.simulation.faults import FAULTS
from borealis.simulation.selectors import parse_criteria, to_millis
from borealis.simulation.series import (
    FAILURE_RATE,
    HOST_CPU,
    HOST_MEMORY,
    PROCESS_CPU,
    PROCESS_MEMORY,
    REQUESTS,
    RESPONSE_TIME,
    TRAFFIC,
)
from borealis.simulation.server import RecordedRequest
from borealis.simulation.store import (
    ALERTING_PROFILE_SCHEMA,
    ALL_SCOPES,
    PROBLEM_NOTIFICATION_SCHEMA,
    Failure,
    FakeDynatrace,
    FakeToken,
    running_fake_dynatrace,
)

__all__ = [
    "ALERTING_PROFILE_SCHEMA",
    "ALL_SCOPES",
    "FAILURE_RATE",
    "FAULTS",
    "HOST_CPU",
    "HOST_MEMORY",
    "PROBLEM_NOTIFICATION_SCHEMA",
    "PROCESS_CPU",
    "PROCESS_MEMORY",
    "REQUESTS",
    "RESPONSE_TIME",
    "TRAFFIC",
    "TRAPS",
    "Case",
    "Failure",
    "FakeDynatrace",
    "FakeToken",
    "RecordedRequest",
    "generate",
    "load",
    "parse_criteria",
    "problem_on_cause",
    "running_fake_dynatrace",
    "shifted",
    "to_millis",
]
