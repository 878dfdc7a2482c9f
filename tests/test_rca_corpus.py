"""The deterministic analyzer on every group of the correlation corpus with a known cause."""

from __future__ import annotations

import pytest

from borealis.rca.analyzer import analyze
from borealis.rca.report import Verdict
from tests.scenarios import rca_corpus
from tests.support.rca_scenarios import Scenario

CORPUS = rca_corpus()


@pytest.mark.parametrize("scenario", CORPUS, ids=[s.name for s in CORPUS])
def test_the_true_cause_is_named_with_evidence_that_exists(scenario: Scenario):
    book = scenario.book()
    report = analyze(book.items, book.not_checked)
    assert report.verdict in (Verdict.CONFIRMED, Verdict.LIKELY)
    assert report.root_cause.entity is not None
    assert report.root_cause.entity.id == scenario.truth
    known = {item.id for item in report.evidence}
    assert report.root_cause.evidence_ids
    assert report.cited_ids() <= known


def test_the_corpus_has_causes_to_find():
    assert len(CORPUS) >= 6
