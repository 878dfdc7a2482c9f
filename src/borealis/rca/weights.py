"""The weights of the deterministic ranking and its verdict thresholds, in one place to be read and tuned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Weights:
    """How much each kind of signal counts; tuned on the scenario corpus, kept here to be read."""

    dynatrace_root_cause: float = 5.0
    dynatrace_root_cause_repeat: float = 1.0
    relevant_finding: float = 2.0
    relevant_finding_more: float = 0.5
    relevant_finding_cap: float = 3.0
    change_before_start: float = 4.0
    restart: float = 1.0
    anomaly_event: float = 1.0
    anomaly_event_more: float = 0.5
    anomaly_event_cap: float = 2.0
    error_logs: float = 1.0
    metric_anomaly: float = 1.0
    symptom: float = 0.5
    common_dependency: float = 2.0
    upstream_most: float = 1.0
    first_to_go_wrong: float = 1.0
    unrelated_infrastructure_factor: float = 0.5
    likely_minimum: float = 3.0
    clear_lead: float = 1.5
    # The walk (when the impacted entities' metrics were judged against their baselines).
    walk_leaf: float = 4.0
    walk_hop: float = 1.0
    walk_blind: float = 2.0
    walk_reachable: float = 1.0
    walk_reachable_magnitude: float = 0.5
    walk_magnitude: float = 1.0
    walk_first_onset: float = 1.0
    walk_more_paths: float = 0.5
    walk_depth: float = 0.25
    external_factor: float = 0.5
    # A change on something whose metrics stayed within their baseline explains little.
    healthy_change_factor: float = 0.25
    # ... and a change on something whose trouble a dependency explains, a little more.
    explained_change_factor: float = 0.5
    # A lead is clear when the top is this far ahead of the second, in points and as a ratio.
    clear_margin: float = 2.0
    clear_ratio: float = 1.25


WEIGHTS = Weights()
