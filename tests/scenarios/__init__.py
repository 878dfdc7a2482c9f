"""The correlation scenario corpus: realistic cascades, each a topology, the deliveries Dynatrace sends
(OPEN, RESOLVED, MERGED, redeliveries, out of order) and the true grouping with each group's cause.

``tests/support/replay.py`` feeds a scenario through the real ingest path and scores the grouping;
``CorrelationScenario.rca_scenarios()`` turns every group with a known cause into a root-cause scenario.
"""

from __future__ import annotations

from tests.scenarios.database_host import database_host_saturation
from tests.scenarios.deployment import deployment_breaks_one_service
from tests.scenarios.flapping import flapping_problem
from tests.scenarios.merged import merged_problems
from tests.scenarios.model import CorrelationScenario, Group, Grouping
from tests.scenarios.node_without_topology import node_memory_without_topology
from tests.scenarios.storm import problem_storm
from tests.scenarios.unrelated import two_unrelated_at_once
from tests.support import rca_scenarios

BUILDERS = (
    database_host_saturation,
    two_unrelated_at_once,
    deployment_breaks_one_service,
    flapping_problem,
    merged_problems,
    node_memory_without_topology,
    problem_storm,
)


def corpus() -> list[CorrelationScenario]:
    """Every scenario, freshly built (tests may change what they are given)."""
    return [build() for build in BUILDERS]


def rca_corpus() -> list[rca_scenarios.Scenario]:
    """Every group of the corpus with a known cause, as a root-cause scenario."""
    return [item for scenario in corpus() for item in scenario.rca_scenarios()]


__all__ = ["CorrelationScenario", "Group", "Grouping", "corpus", "rca_corpus"]
