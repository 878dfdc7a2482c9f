"""Correlation: how related two problems are, as a score and a sentence a human can check.

Pure functions over ``ProblemFacts``; the database side is in ``index.py`` (candidates) and
``placement.py`` (attachments). Every signal comes from Dynatrace's own data. Each fired signal has a
strength in [0, 1]; the score combines them as a noisy-OR (``1 - prod(1 - strength)``), so one strong
signal is enough and weak ones add up without ever passing 1. With the default strengths, the strong
signals (shared root cause, shared impacted entities, a direct topology relation) each pass the default
threshold on their own, and the weak ones (tags, management zones, title, time) together stay below it:
unrelated problems that merely share an environment tag and start together stay apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from borealis.incidents.topology import Reach

SIGNALS = ("root_cause", "entities", "topology", "tags", "management_zones", "title", "time")

# Strength of each signal at full match. Changing these changes the defaults' behaviour: the corpus and
# tests/test_correlation.py pin it.
SAME_ROOT_CAUSE = 0.9
ROOT_CAUSE_IMPACTED = 0.75
ENTITIES_MIN, ENTITIES_MAX = 0.6, 0.85
TOPOLOGY_ONE_HOP = 0.7
TOPOLOGY_DECAY = 0.5
TAGS_MAX = 0.15
ZONES_MAX = 0.1
TITLE_MAX = 0.2
TIME_MAX = 0.15

DEFAULT_WINDOW_MINUTES = 60
DEFAULT_THRESHOLD = 0.5
DEFAULT_MAX_HOPS = 2


@dataclass(frozen=True)
class ProblemFacts:
    """What correlation knows of one problem: Dynatrace's ids, never its sentences."""

    problem_id: str
    display_id: str
    title: str = ""
    root_cause_entity: str | None = None
    impacted_entities: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    management_zones: frozenset[str] = frozenset()
    start_time: datetime | None = None

    @property
    def entities(self) -> frozenset[str]:
        """Impacted entities and the root cause: everything a topology walk starts from."""
        if self.root_cause_entity:
            return self.impacted_entities | {self.root_cause_entity}
        return self.impacted_entities


@dataclass(frozen=True)
class CorrelationSettings:
    """A workspace's knobs: the time window, the threshold, the topology depth and which signals count."""

    window_minutes: int = DEFAULT_WINDOW_MINUTES
    threshold: float = DEFAULT_THRESHOLD
    max_hops: int = DEFAULT_MAX_HOPS
    root_cause: bool = True
    entities: bool = True
    topology: bool = True
    tags: bool = True
    management_zones: bool = True
    title: bool = True
    time: bool = True

    def enabled(self, signal: str) -> bool:
        return bool(getattr(self, signal))


@dataclass(frozen=True)
class Evidence:
    """One signal that fired: its name, strength and the phrase that lets a human check it."""

    signal: str
    strength: float
    phrase: str


@dataclass(frozen=True)
class Match:
    """Why a problem relates to another one."""

    other: ProblemFacts
    score: float
    evidence: tuple[Evidence, ...] = field(default=())

    @property
    def strategy(self) -> str:
        """The strongest signal (time only ever supports another signal)."""
        ranked = [item for item in self.evidence if item.signal != "time"] or list(self.evidence)
        return ranked[0].signal if ranked else "none"

    @property
    def reason(self) -> str:
        return explain(self)


# -- individual signals -------------------------------------------------------------------------------


def root_cause_signal(new: ProblemFacts, other: ProblemFacts) -> Evidence | None:
    """Same root-cause entity, or one problem's root cause among the other's impacted entities."""
    if new.root_cause_entity and new.root_cause_entity == other.root_cause_entity:
        return Evidence(
            "root_cause",
            SAME_ROOT_CAUSE,
            f"shares root cause {new.root_cause_entity} with {other.display_id}",
        )
    if other.root_cause_entity and other.root_cause_entity in new.impacted_entities:
        return Evidence(
            "root_cause",
            ROOT_CAUSE_IMPACTED,
            f"impacts {other.root_cause_entity}, the root cause of {other.display_id}",
        )
    if new.root_cause_entity and new.root_cause_entity in other.impacted_entities:
        return Evidence(
            "root_cause",
            ROOT_CAUSE_IMPACTED,
            f"its root cause {new.root_cause_entity} is impacted in {other.display_id}",
        )
    return None


def entities_signal(new: ProblemFacts, other: ProblemFacts) -> Evidence | None:
    """Overlapping impacted entity ids; stronger the more of the smaller set is shared."""
    shared = new.impacted_entities & other.impacted_entities
    if not shared:
        return None
    overlap = len(shared) / min(len(new.impacted_entities), len(other.impacted_entities))
    strength = ENTITIES_MIN + (ENTITIES_MAX - ENTITIES_MIN) * overlap
    noun = "impacted entity" if len(shared) == 1 else f"{len(shared)} impacted entities"
    return Evidence("entities", strength, f"shares {noun} {_listing(shared)} with {other.display_id}")


def topology_signal(new: ProblemFacts, other: ProblemFacts, reached: Mapping[str, Reach]) -> Evidence | None:
    """The nearest of the other's entities in the topology around the new one's, decaying per hop.

    ``reached`` is ``topology.reach(...)`` from the new problem's entities. Shared entities (zero hops)
    are the entities signal's, not this one's.
    """
    best: tuple[int, str, str] | None = None
    for entity in sorted(other.entities - new.entities):
        hit = reached.get(entity)
        if hit is not None and (best is None or hit.hops < best[0]):
            best = (hit.hops, hit.origin, entity)
    if best is None:
        return None
    hops, origin, entity = best
    strength = TOPOLOGY_ONE_HOP * TOPOLOGY_DECAY ** (hops - 1)
    unit = "hop" if hops == 1 else "hops"
    return Evidence("topology", strength, f"{origin} is {hops} {unit} from {entity} of {other.display_id}")


def tags_signal(new: ProblemFacts, other: ProblemFacts) -> Evidence | None:
    shared = new.tags & other.tags
    if not shared:
        return None
    strength = TAGS_MAX * len(shared) / min(len(new.tags), len(other.tags))
    noun = "tag" if len(shared) == 1 else "tags"
    return Evidence("tags", strength, f"shares {noun} {_listing(shared)} with {other.display_id}")


def zones_signal(new: ProblemFacts, other: ProblemFacts) -> Evidence | None:
    shared = new.management_zones & other.management_zones
    if not shared:
        return None
    strength = ZONES_MAX * len(shared) / min(len(new.management_zones), len(other.management_zones))
    noun = "management zone" if len(shared) == 1 else "management zones"
    return Evidence("management_zones", strength, f"shares {noun} {_listing(shared)} with {other.display_id}")


def title_signal(new: ProblemFacts, other: ProblemFacts) -> Evidence | None:
    similarity = title_similarity(new.title, other.title)
    if similarity < 0.5:
        return None
    return Evidence(
        "title",
        TITLE_MAX * similarity,
        f"title {round(similarity * 100)}% similar to {other.display_id}'s",
    )


def time_signal(new: ProblemFacts, other: ProblemFacts, *, window_minutes: int) -> Evidence | None:
    """Closer starts count more; nothing beyond the window (which ``within_window`` already refuses)."""
    gap = start_gap_seconds(new, other)
    window = window_minutes * 60
    if gap is None or window <= 0 or gap > window:
        return None
    return Evidence("time", TIME_MAX * (1 - gap / window), f"started {describe_gap(gap)}")


# -- combining -----------------------------------------------------------------------------------------


def start_gap_seconds(new: ProblemFacts, other: ProblemFacts) -> float | None:
    """Seconds between Dynatrace start times, or None when either is unknown."""
    if new.start_time is None or other.start_time is None:
        return None
    return abs((new.start_time - other.start_time).total_seconds())


def within_window(new: ProblemFacts, other: ProblemFacts, *, window_minutes: int) -> bool:
    """Problems whose starts lie further apart than the window are never related (unknown starts are
    not held against them)."""
    gap = start_gap_seconds(new, other)
    return gap is None or gap <= window_minutes * 60


def combine(strengths: Iterable[float]) -> float:
    """Noisy-OR: independent pieces of evidence, each able to explain the relation on its own."""
    remaining = 1.0
    for strength in strengths:
        remaining *= 1.0 - min(max(strength, 0.0), 1.0)
    return round(1.0 - remaining, 4)


def score_pair(
    new: ProblemFacts,
    other: ProblemFacts,
    *,
    settings: CorrelationSettings,
    reached: Mapping[str, Reach] | None = None,
) -> Match | None:
    """How related ``new`` is to ``other`` under the workspace's settings; None outside the time window or
    when no signal fires."""
    if not within_window(new, other, window_minutes=settings.window_minutes):
        return None
    found: list[Evidence | None] = []
    if settings.root_cause:
        found.append(root_cause_signal(new, other))
    if settings.entities:
        found.append(entities_signal(new, other))
    if settings.topology and reached:
        found.append(topology_signal(new, other, reached))
    if settings.tags:
        found.append(tags_signal(new, other))
    if settings.management_zones:
        found.append(zones_signal(new, other))
    if settings.title:
        found.append(title_signal(new, other))
    evidence = [item for item in found if item is not None]
    if not evidence:
        return None
    if settings.time:
        timing = time_signal(new, other, window_minutes=settings.window_minutes)
        if timing is not None:
            evidence.append(timing)
    evidence.sort(key=lambda item: (item.signal == "time", -item.strength, SIGNALS.index(item.signal)))
    return Match(other=other, score=combine(item.strength for item in evidence), evidence=tuple(evidence))


def weak_signals_can_group(settings: CorrelationSettings) -> bool:
    """Whether tags, zones, title and time together can reach the threshold without a strong signal.

    When they cannot (the defaults), problems that share only a tag, a zone or a title need not even
    be looked at: that keeps the candidate lookup small when every problem carries ``env:prod``.
    """
    strongest = [
        strength
        for signal, strength in (
            ("tags", TAGS_MAX),
            ("management_zones", ZONES_MAX),
            ("title", TITLE_MAX),
            ("time", TIME_MAX),
        )
        if settings.enabled(signal)
    ]
    return combine(strongest) >= settings.threshold


@dataclass(frozen=True)
class Candidate:
    """A problem in an open incident; ``incident_rank`` orders incidents for ties (oldest first)."""

    incident_id: int | str
    incident_rank: tuple
    facts: ProblemFacts


@dataclass(frozen=True)
class IncidentMatch:
    """The best-scoring problem of one related incident."""

    incident_id: int | str
    incident_rank: tuple
    match: Match


def related_incidents(
    new: ProblemFacts,
    candidates: Sequence[Candidate],
    *,
    settings: CorrelationSettings,
    reached: Mapping[str, Reach] | None = None,
) -> list[IncidentMatch]:
    """Every incident with a problem scoring at or above the threshold, best first.

    Each incident is represented by its best problem; ties go to the oldest incident, then the lowest
    problem id, so the outcome never depends on the order of equals.
    """
    best: dict[int | str, tuple[tuple, IncidentMatch]] = {}
    for candidate in candidates:
        if candidate.facts.problem_id == new.problem_id:
            continue
        match = score_pair(new, candidate.facts, settings=settings, reached=reached)
        if match is None or match.score < settings.threshold:
            continue
        rank = (-match.score, candidate.incident_rank, candidate.facts.problem_id)
        current = best.get(candidate.incident_id)
        if current is None or rank < current[0]:
            best[candidate.incident_id] = (
                rank,
                IncidentMatch(candidate.incident_id, candidate.incident_rank, match),
            )
    return [item for _, item in sorted(best.values(), key=lambda pair: pair[0])]


def explain(match: Match) -> str:
    """The sentence stored with an attachment: "shares root cause HOST-1A2B with P-123; started 2 min
    apart"."""
    return "; ".join(item.phrase for item in match.evidence)


# -- helpers -------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z][a-z0-9_.-]*")
# Words that say nothing about what broke.
_STOPWORDS = frozenset({"a", "an", "the", "on", "in", "of", "for", "to", "and", "at", "is", "by", "with"})


@lru_cache(maxsize=4096)
def title_words(title: str) -> frozenset[str]:
    """The words of a title that identify the kind of problem: lowercase, without numbers and stopwords
    ("3 services slow" and "5 services slow" say the same thing)."""
    return frozenset(word for word in _WORD.findall(title.lower()) if word not in _STOPWORDS)


def title_similarity(left: str, right: str) -> float:
    """Jaccard similarity of the titles' words, 0..1."""
    a, b = title_words(left), title_words(right)
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def title_key(title: str) -> str | None:
    """An index key shared by titles with the same words, so identical-kind problems find each other."""
    words = title_words(title)
    return " ".join(sorted(words))[:200] if words else None


def describe_gap(seconds: float) -> str:
    if seconds < 60:
        return "within a minute of each other" if seconds >= 1 else "at the same time"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min apart"
    return f"{seconds / 3600:.1f} h apart"


def _listing(items: Iterable[str], *, limit: int = 3) -> str:
    ordered = sorted(items)
    shown = ", ".join(ordered[:limit])
    return f"{shown} (+{len(ordered) - limit} more)" if len(ordered) > limit else shown
