"""The alerts list: a workspace's problems, newest activity first, under any filters, with an exact total.

What keeps each request cheap with a million problems per workspace:

* Order. Pages follow an index that starts with ``workspace_id`` and ends with ``(last_received_at, id)``:
  one for all problems and one each for state, severity and impact. With two or more of those filters
  the page walks the index of the rarest value (the others are compared row by row).
* ``total``. Without ``q``, ``since`` or ``until`` it is summed from ``problem_counts``, which every
  change keeps current, whatever the number of problems. ``since``/``until`` count the index range
  they select, ``q`` the problems its words match: work in proportion to the matches, not the workspace's
  problems. A total of zero, or an offset past it, answers without reading any problem.
* ``q``. Each word is a key range in ``problem_terms`` (see search.py). The page either walks the
  newest problems keeping those with every word (when matches are common: a few rows per match), or
  sorts the problems of the rarest word (when they are few). The walk is bounded; if the matches turn
  out to be older than expected it stops and sorts the rarest word's problems instead.
* Deep pages. ``cursor`` (the ``nextCursor`` of the previous page) continues from the last row seen
  with one index seek at any depth. An ``offset`` has to step over the rows before it, so it reads
  from whichever end of the list is nearer: ``offset=900000`` of 1,000,000 steps over 100,000 index
  entries, the middle of the list over half of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.errors import InvalidInput
from borealis.problems import search
from borealis.problems.models import Problem, ProblemCount

problems_table: sa.Table = Problem.__table__  # type: ignore[assignment]
counts_table: sa.Table = ProblemCount.__table__  # type: ignore[assignment]
terms_table = search.terms_table

# What a list row carries (everything but the details document and the bookkeeping).
COLUMNS = (
    "id",
    "display_id",
    "pid",
    "title",
    "state",
    "severity",
    "impact",
    "priority",
    "impacted_entity",
    "impacted_entities",
    "root_cause_entity_id",
    "root_cause_entity_name",
    "root_cause_entity_type",
    "problem_url",
    "tags",
    "start_time",
    "end_time",
    "first_received_at",
    "last_received_at",
    "notification_count",
)
_SELECT = [problems_table.c[name] for name in COLUMNS]
_activity = problems_table.c.last_received_at
_id = problems_table.c.id

# Postings counted exactly before a word is just "common"; enough to pick the rarest word.
_SIZE_CAP = 20_000
# A bounded walk reads this many times the rows it expects to need (plus a margin) at most.
_WALK_SLACK = 4
_WALK_MARGIN = 500
# On SQLite a walk tests the rarest word against its list of problems built in memory, rather than
# seek its terms per row, when the list is at most this many times the rows the walk expects to read.
# Building costs about as much per entry as a seek per row (over 1M problems: 11,000 entries against a
# 4,500-row walk took 4.3 ms as a list, 2.0 ms as seeks); a walk may read up to _WALK_SLACK times what
# it expects, where the list bounds the cost better.
_LIST_FACTOR = 2


@dataclass(slots=True)
class AlertFilters:
    """Validated filters of the alerts list; ``None`` means no filter."""

    state: str | None = None
    severity: str | None = None
    impact: str | None = None
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(slots=True)
class AlertPage:
    """One page of rows (dicts of COLUMNS), the exact total, and where the next page starts."""

    rows: list[dict[str, Any]]
    total: int
    next_after: tuple[datetime, int] | None


def list_alerts(
    *,
    db_session: Session,
    workspace_id: str,
    filters: AlertFilters,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, int] | None = None,
) -> AlertPage:
    """One page of a workspace's problems, newest activity first, with the total matching the filters."""
    query = _Query(db_session, workspace_id, filters)
    total = query.total()
    if total == 0 or (after is None and offset >= total):
        return AlertPage(rows=[], total=total, next_after=None)
    rows = query.page(limit=limit, offset=offset, after=after)
    next_after = None
    if len(rows) == limit and (after is not None or offset + limit < total):
        next_after = (rows[-1]["last_received_at"], rows[-1]["id"])
    return AlertPage(rows=rows, total=total, next_after=next_after)


def query_words(q: str) -> list[str]:
    """The words of a ``q`` filter; a ``q`` without a letter or digit, or with more words than a
    search uses, is refused rather than quietly read as something else."""
    found = search.query_words(q)
    if not found:
        raise InvalidInput(
            f"q must contain a letter or digit to search for; got {q!r}", details={"field": "q"}
        )
    if len(found) > search.MAX_QUERY_WORDS:
        raise InvalidInput(
            f"q has {len(found)} different words; search with at most {search.MAX_QUERY_WORDS} "
            "(the most distinctive ones: a host, service or problem id)",
            details={"field": "q"},
        )
    return found


@dataclass(slots=True)
class _Word:
    text: str
    # Postings in the word's range: exact below _SIZE_CAP, else at least that many.
    size: int = 0


@dataclass
class _Query:
    """One alerts request: the filters as SQL conditions, and the counts that decide each plan."""

    db_session: Session
    workspace_id: str
    filters: AlertFilters
    words: list[_Word] = field(default_factory=list)
    _base_total: int | None = None
    _total: int | None = None
    _conditions: list[Any] | None = None
    # The workspace's number in the search index (0 before any of their problems was indexed).
    number: int = 0

    def __post_init__(self) -> None:
        if self.filters.q is not None:
            self.words = [_Word(word) for word in query_words(self.filters.q)]
            self.number = (
                search.workspace_number(db_session=self.db_session, workspace_id=self.workspace_id) or 0
            )

    # --- counts -----------------------------------------------------------------------------------

    def total(self) -> int:
        """The exact number of problems matching every filter."""
        if self._total is None:
            self._total = self._count()
        return self._total

    def _count(self) -> int:
        base = self.base_total()
        if base == 0 or (self.words and not self.number):
            return 0
        if self.words:
            return self._count_matches()
        if self.filters.since or self.filters.until:
            statement = sa.select(sa.func.count()).select_from(problems_table)
            return int(self.db_session.scalar(statement.where(*self._where())) or 0)
        return base

    def base_total(self) -> int:
        """Problems matching the state, severity and impact filters, from the kept counts."""
        if self._base_total is None:
            self._base_total = self._kept_count(self._equalities())
        return self._base_total

    def _kept_count(self, equalities: list[tuple[str, str]]) -> int:
        statement = sa.select(sa.func.coalesce(sa.func.sum(counts_table.c.count), 0)).where(
            counts_table.c.workspace_id == self.workspace_id,
            *(counts_table.c[name] == value for name, value in equalities),
        )
        return int(self.db_session.scalar(statement) or 0)

    def _narrowed(self) -> bool:
        return bool(self._equalities() or self.filters.since or self.filters.until)

    def _count_matches(self) -> int:
        if len(self.words) == 1 and not self._narrowed():
            return self._count_one_word(self.words[0])
        for word in self.words:
            word.size = self._count_postings(word.text, cap=_SIZE_CAP)
        self.words.sort(key=lambda word: word.size)
        rarest, others = self.words[0], self.words[1:]
        if rarest.size == 0:
            return 0
        if not self._narrowed():
            # Distinct problems among the rarest word's postings that have every other word.
            ids = search.matching(self.number, rarest.text).where(
                *(search.has_word(terms_table.c.problem_id, word.text) for word in others)
            )
            return self._count_rows(ids.group_by(terms_table.c.problem_id))
        if self._equalities() and self.base_total() < 2 * self._exact_size(rarest):
            # Few problems under state/severity/impact next to the word's postings: check their
            # words (one seek each) rather than look up every posting's problem (a row read each).
            conditions = [*self._where(), *self._has_words(self.words)]
        else:
            conditions = self._candidates(rarest, others)
        return self._count_rows(sa.select(_id).where(*conditions))

    def _count_one_word(self, word: _Word) -> int:
        """A lone word: the count of its postings when they all have one term (no problem can
        repeat), else of the distinct problems among them."""
        first, last = self._range_ends(word.text)
        if first is None:
            return 0
        if first == last:
            word.size = self._count_postings(word.text)
            return word.size
        # Its postings are at least as many as the problems: enough to plan the page.
        word.size = self._count_rows(
            search.matching(self.number, word.text).group_by(terms_table.c.problem_id)
        )
        return word.size

    def _exact_size(self, word: _Word) -> int:
        """The word's number of postings, counted in full only when the cap was reached and the
        answer matters (more problems under the other filters than the cap)."""
        if word.size >= _SIZE_CAP and self.base_total() >= 2 * _SIZE_CAP:
            word.size = self._count_postings(word.text)
        return word.size

    def _count_postings(self, word: str, cap: int | None = None) -> int:
        postings = search.matching(self.number, word)
        return self._count_rows(postings if cap is None else postings.limit(cap))

    def _count_rows(self, statement: sa.Select[Any]) -> int:
        counted = sa.select(sa.func.count()).select_from(statement.subquery())
        return int(self.db_session.scalar(counted) or 0)

    def _range_ends(self, word: str) -> tuple[str | None, str | None]:
        """The first and last term beginning with the word (two seeks)."""
        low, high = search.prefix_range(word)
        ranged = sa.select(terms_table.c.term).where(
            terms_table.c.workspace_number == self.number,
            terms_table.c.term >= low,
            terms_table.c.term < high,
        )
        first = self.db_session.scalar(ranged.order_by(terms_table.c.term).limit(1))
        last = self.db_session.scalar(ranged.order_by(terms_table.c.term.desc()).limit(1))
        return first, last

    # --- the page ---------------------------------------------------------------------------------

    def page(self, *, limit: int, offset: int, after: tuple[datetime, int] | None) -> list[dict[str, Any]]:
        """The rows of one page (the total is known and the page is not past it)."""
        total = self.total()
        descending = True
        if after is None and offset > total // 2:
            # Nearer the oldest end: read from there and turn the rows around.
            descending = False
            end = total - offset
            offset, limit = max(end - limit, 0), min(limit, end)
        keyset = []
        if after is not None:
            keyset.append(sa.tuple_(_activity, _id) < sa.tuple_(*after))

        if not self.words:
            rows = self._fetch([*self._where(), *keyset], descending, limit, offset)
        else:
            rows = self._search_page(keyset, descending, limit, offset)
        return rows if descending else rows[::-1]

    def _search_page(
        self, keyset: list[Any], descending: bool, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        rarest, others = self.words[0], self.words[1:]
        # Rows a walk of the newest problems expects to read, if matches are spread evenly.
        expected = (offset + limit) * self.base_total() // max(self.total(), 1)
        if expected < rarest.size:
            reach = _WALK_SLACK * expected + _WALK_MARGIN
            boundary = self._boundary(keyset, descending, reach)
            bounds = [] if boundary is None else [_within(boundary, descending)]
            checks = self._has_words(self.words)
            if self._dialect() == "sqlite" and rarest.size <= _LIST_FACTOR * expected:
                checks[0] = search.in_list_of(_id, self.number, rarest.text)
            rows = self._fetch([*self._where(), *keyset, *bounds, *checks], descending, limit, offset)
            if len(rows) == limit or boundary is None:
                return rows
        conditions = [*self._candidates(rarest, others), *keyset]
        return self._fetch(conditions, descending, limit, offset)

    def _boundary(self, keyset: list[Any], descending: bool, reach: int) -> tuple[datetime, int] | None:
        """The (activity, id) ``reach`` rows into the walk, or None when the walk is shorter."""
        statement = (
            sa.select(_activity, _id)
            .where(*self._where(), *keyset)
            .order_by(*_order(descending))
            .offset(reach)
            .limit(1)
        )
        row = self.db_session.execute(statement).first()
        return None if row is None else (row[0], row[1])

    def _fetch(
        self, conditions: list[Any], descending: bool, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        order = _order(descending)
        if offset:
            # Step over the skipped rows on ids alone (in the index), then read only the page.
            ids = sa.select(_id).where(*conditions).order_by(*order).limit(limit).offset(offset)
            statement = sa.select(*_SELECT).where(_id.in_(ids)).order_by(*order)
        else:
            statement = sa.select(*_SELECT).where(*conditions).order_by(*order).limit(limit)
        return [dict(zip(COLUMNS, row, strict=True)) for row in self.db_session.execute(statement).all()]

    # --- conditions -------------------------------------------------------------------------------

    def _equalities(self) -> list[tuple[str, str]]:
        return [
            (name, value)
            for name, value in (
                ("state", self.filters.state),
                ("severity", self.filters.severity),
                ("impact", self.filters.impact),
            )
            if value
        ]

    def _where(self) -> list[Any]:
        """The filters other than ``q``, written so the walk follows the rarest value's index."""
        if self._conditions is None:
            self._conditions = self._filter_conditions()
        return self._conditions

    def _filter_conditions(self) -> list[Any]:
        table = problems_table
        conditions: list[Any] = [table.c.workspace_id == self.workspace_id]
        equalities = self._equalities()
        walked = None
        if len(equalities) > 1:
            walked = min(equalities, key=lambda item: self._kept_count([item]))
        for name, value in equalities:
            column = table.c[name]
            if walked is not None and (name, value) != walked:
                column = _unindexed(column)
            conditions.append(column == value)
        if self.filters.since:
            conditions.append(_activity >= self.filters.since)
        if self.filters.until:
            conditions.append(_activity <= self.filters.until)
        return conditions

    def _candidates(self, rarest: _Word, others: list[_Word]) -> list[Any]:
        """The problems of the rarest word, looked up by id, with every other filter checked on the
        row (no index for those, so the plan is driven by the candidate ids)."""
        table = problems_table
        conditions: list[Any] = [
            search.among_matching(_id, self.number, rarest.text, dialect=self._dialect()),
            _unindexed(table.c.workspace_id) == self.workspace_id,
            *self._has_words(others),
        ]
        for name, value in self._equalities():
            conditions.append(_unindexed(table.c[name]) == value)
        if self.filters.since:
            conditions.append(_unindexed_time(_activity) >= self.filters.since)
        if self.filters.until:
            conditions.append(_unindexed_time(_activity) <= self.filters.until)
        return conditions

    def _dialect(self) -> str:
        return self.db_session.get_bind().dialect.name

    @staticmethod
    def _has_words(words: list[_Word]) -> list[Any]:
        return [search.has_word(_id, word.text) for word in words]


def _order(descending: bool) -> list[Any]:
    return [_activity.desc(), _id.desc()] if descending else [_activity.asc(), _id.asc()]


def _within(boundary: tuple[datetime, int], descending: bool) -> Any:
    pair = sa.tuple_(_activity, _id)
    return pair >= sa.tuple_(*boundary) if descending else pair <= sa.tuple_(*boundary)


def _unindexed(column: Any) -> Any:
    """The column's value in a form no index answers, so the planner leaves that index alone."""
    return column.concat("")


def _unindexed_time(column: Any) -> Any:
    return sa.func.coalesce(column, column)
