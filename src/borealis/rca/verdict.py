"""The verdict on the leading candidate, the doubts that keep it open, and what would settle them.

CONFIRMED only when Dynatrace's root cause and the evidence gathered here agree; LIKELY for a candidate
clearly ahead; INCONCLUSIVE otherwise, saying why and what would settle it.
"""

from __future__ import annotations

from borealis.rca.explain import WalkFacts
from borealis.rca.ranking import Ranked
from borealis.rca.report import Verdict
from borealis.rca.signals import Analysis


def verdict_of(
    analysis: Analysis, top: Ranked | None, second: Ranked | None, roots: set[str]
) -> tuple[Verdict, list[str]]:
    """The verdict and, when the walk leaves it open, the doubts to say."""
    if analysis.walking:
        doubts: list[str] = []
        return _walk_verdict(analysis, top, second, roots, doubts), doubts
    return _plain_verdict(analysis, top, second, roots), []


def _plain_verdict(analysis: Analysis, top: Ranked | None, second: Ranked | None, roots: set[str]) -> Verdict:
    """Without the walk (no metrics of the impacted entities): the evidence's own weight decides."""
    clear = top is not None and (second is None or top.score >= analysis.w.clear_lead * second.score)
    if top and top.key in roots and top.signals.corroboration and clear:
        return Verdict.CONFIRMED
    if top and clear and top.score >= analysis.w.likely_minimum and top.signals.cause_signal:
        return Verdict.LIKELY
    return Verdict.INCONCLUSIVE


def _walk_verdict(
    analysis: Analysis, top: Ranked | None, second: Ranked | None, roots: set[str], doubts: list[str]
) -> Verdict:
    """CONFIRMED when Davis and the walk agree; LIKELY for a leaf of the walk clearly ahead with
    nothing unknown below or on the way to it; otherwise INCONCLUSIVE, with the doubts said."""
    walk, w = analysis.walk, analysis.w
    assert walk is not None
    if top is None:
        return Verdict.INCONCLUSIVE
    clear = second is None or (
        top.score - second.score >= w.clear_margin and top.score >= w.clear_ratio * second.score
    )
    leaf = walk.is_leaf(top.key)
    if top.key in roots and (leaf or top.key in walk.subgraph) and clear:
        return Verdict.CONFIRMED
    name = top.entity.name or top.entity.id
    if not leaf:
        if top.key in roots:
            doubts.append(f"Dynatrace names {name}, but its metrics do not explain the symptom")
        else:
            doubts.append(f"the walk found no anomalous dependency that explains the symptom below {name}")
    if not clear and second is not None:
        doubts.append(
            f"{second.entity.name or second.entity.id} is close behind (score {second.score} against {top.score})"
        )
    unknown = walk.unknown_below.get(top.key, [])
    if unknown:
        doubts.append(f"what {name} depends on could not all be checked ({analysis.listed_names(unknown)})")
    gaps = walk.gaps_on_path.get(top.key, [])
    if gaps:
        doubts.append(f"data was missing on the path to it ({analysis.listed_names(gaps)})")
    if _alone_in_its_trouble(walk, top.key) and not top.signals.changes:
        doubts.append(
            f"nothing below {name} is anomalous while its own figures are: the trouble is in "
            "it or in something Dynatrace does not see, and no change on it says which"
        )
    if not any(walk.nodes[k].anomalous for k in walk.impacted if k in walk.nodes):
        doubts.append(
            "the impacted entity's own metrics stayed within their baseline, so there is no symptom for "
            "the walk to explain"
        )
    if roots and top.key not in roots:
        named = ", ".join(analysis.representative(k, analysis.signals[k]).label for k in sorted(roots))
        doubts.append(f"Dynatrace names {named} instead")
    return Verdict.INCONCLUSIVE if doubts else Verdict.LIKELY


def _alone_in_its_trouble(walk: WalkFacts, key: str) -> bool:
    """An impacted component that explains no other impacted one: its own trouble is all there is, so
    it may lie in it or in something Dynatrace does not see. One whose trouble explains another impacted
    component's (a problem opened on the cause as well as on the symptom above it) is a cause like any."""
    return key in walk.impacted and not (walk.reached_by.get(key, set()) - {key})


def settle(analysis: Analysis, top: Ranked | None, second: Ranked | None, roots: set[str]) -> list[str]:
    steps = []
    walk = analysis.walk if analysis.walking else None
    if walk is not None and top is not None:
        name = top.entity.name or top.entity.id
        missing = [*walk.gaps_on_path.get(top.key, []), *walk.unknown_below.get(top.key, [])]
        if missing:
            steps.append(
                f"look at the metrics of {analysis.listed_names(missing)} in Dynatrace (they were not available "
                "here) and re-run the analysis;"
            )
        if _alone_in_its_trouble(walk, top.key) and walk.is_leaf(top.key) and not top.signals.changes:
            steps.append(
                f"check {name} itself: a change Dynatrace was not told of (deployment, configuration, "
                "feature flag), its error logs, and whether all its instances are affected;"
            )
    for gap in analysis.not_checked:
        if gap.code == "missing_scope" and gap.scope:
            steps.append(f"grant the token the {gap.scope} scope ({gap.what} was not checked);")
        elif gap.code in ("rate_limited", "error"):
            steps.append(f"re-run the analysis once {gap.what} can be read ({gap.reason});")
    steps = list(dict.fromkeys(steps))
    if not roots:
        steps.append(
            "Dynatrace named no root cause; its problem page may show one once the analysis completes;"
        )
    if top and second:
        steps.append(
            f"look for a change (deployment, configuration) on {top.entity.label} or {second.entity.label}"
            " just before the start, and check whether one depends on the other;"
        )
    elif top is None:
        steps.append("no entity showed trouble of its own; check the impacted entities' events and logs;")
    if steps:
        steps[-1] = steps[-1].rstrip(";") + "."
    return steps
