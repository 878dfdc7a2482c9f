"""The words the alerts ``q`` filter finds a problem by, kept in ``problem_terms`` so a search looks up
words in an index instead of reading every problem.

A problem's words come from its ``search_text`` (title, display id, PID, the impacted-entity sentence,
root-cause and impacted entity names and ids), lower-cased and split at whitespace. Punctuation at
either end of a word is dropped, and each part that follows punctuation inside a word starts a word of
its own: ``easytravel-frontend`` is found by ``easytravel``, ``easytravel-front`` and ``frontend``;
``P-22011`` by ``p-22011`` and ``22011``; ``host.prod.example.com`` by ``prod.example`` and ``example``.
A query matches a problem when each of its words is the beginning of one of the problem's words.

Index rows name their workspace by a small number (``search_workspaces``) rather than the 36-character workspace id:
there are a dozen rows per problem, so this halves the index and makes every write and search cheaper.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from borealis.driver import Driver
from borealis.problems.models import MAX_TERM_LENGTH, ProblemTerm, SearchWorkspace

# Enough for any real title and entity list; bounds the work one oversized payload can cause.
MAX_TERMS_PER_PROBLEM = 500
# Each word costs a lookup per candidate problem; more than this is a sentence, not a search.
MAX_QUERY_WORDS = 8

_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_PART = re.compile(r"[^\W_]+")

terms_table: sa.Table = ProblemTerm.__table__  # type: ignore[assignment]
workspaces_table: sa.Table = SearchWorkspace.__table__  # type: ignore[assignment]


def words(text: str) -> list[str]:
    """The whitespace-separated words of ``text``, lower-cased, without punctuation at either end."""
    found = []
    for raw in text.lower().split():
        word = _EDGES.sub("", raw)
        if word:
            found.append(word)
    return found


def terms(search_text: str | None) -> list[str]:
    """The terms stored for a problem with this ``search_text``: each word and each of its parts
    that follows punctuation (to its end), cut to MAX_TERM_LENGTH, without repeats."""
    if not search_text:
        return []
    found: dict[str, None] = {}
    for word in search_text.lower().split():
        if not word.isalnum():  # most words are plain; only the others need the expressions
            word = _EDGES.sub("", word)
            if not word.isalnum():
                for part in _PART.finditer(word):
                    found.setdefault(word[part.start() :][:MAX_TERM_LENGTH])
                continue
        found.setdefault(word[:MAX_TERM_LENGTH])
    return list(found)[:MAX_TERMS_PER_PROBLEM]


def query_words(q: str) -> list[str]:
    """The words a problem must all begin one of its terms with to match ``q``; a word already implied
    by a longer one (``svc`` beside ``svc-42``) is left out."""
    candidates = sorted({word[:MAX_TERM_LENGTH] for word in words(q)}, key=len, reverse=True)
    kept: list[str] = []
    for word in candidates:
        if not any(longer.startswith(word) for longer in kept):
            kept.append(word)
    return kept


def prefix_range(word: str) -> tuple[str, str]:
    """Bounds ``low <= term < high`` of the terms that begin with ``word``, in code point order (how
    both databases compare the ``term`` column)."""
    return word, word + "\U0010ffff"


@dataclass(slots=True)
class TextChange:
    """A problem whose searchable text changed in this transaction."""

    problem_id: int
    workspace_id: str
    before: str
    after: str


def update_terms(*, db_session: Session, changes: Sequence[TextChange]) -> int:
    """Bring ``problem_terms`` in line with the changed texts (only the terms that differ are
    written); returns the number of rows inserted and deleted."""
    changes = [change for change in changes if change.before != change.after]
    if not changes:
        return 0
    numbers = _numbers_for(db_session, sorted({change.workspace_id for change in changes}))
    removed: list[dict[str, object]] = []
    added: list[dict[str, object]] = []
    for change in changes:
        old = set(terms(change.before))
        new = terms(change.after)
        removed.extend({"problem_id": change.problem_id, "term": term} for term in old.difference(new))
        number = numbers[change.workspace_id]
        added.extend(
            {"problem_id": change.problem_id, "term": term, "workspace_number": number}
            for term in new
            if term not in old
        )
    # Through the driver: the webhook writes terms inside a ``Driver.pipeline``.
    driver = Driver.of(db_session)
    if removed:
        delete = driver.statement(terms_table, _DELETE_TERM, ("problem_id", "term"))
        driver.execute_many(db_session, delete.sql, delete.params(removed))
    if added:
        insert = driver.writer(terms_table, ("problem_id", "term", "workspace_number"))
        driver.execute_many(db_session, insert.sql, insert.params(added))
    return len(removed) + len(added)


_DELETE_TERM = "DELETE FROM problem_terms WHERE problem_id = {mark} AND term = {mark}"
_NEW_USER = (
    "INSERT INTO search_workspaces (workspace_id) VALUES ({mark}) ON CONFLICT (workspace_id) DO NOTHING"
)


def workspace_number(*, db_session: Session, workspace_id: str) -> int | None:
    """The workspace's number in the search index, or None if no problem of theirs was indexed yet."""
    return db_session.scalar(
        sa.select(workspaces_table.c.number).where(workspaces_table.c.workspace_id == workspace_id)
    )


def _numbers_for(db_session: Session, workspace_ids: list[str]) -> dict[str, int]:
    """The workspaces' numbers, created for those without one (once in a workspace's life). Read through the
    driver: the webhook writes terms inside a ``Driver.pipeline``."""
    driver = Driver.of(db_session)
    select = f"SELECT workspace_id, number FROM {workspaces_table.name} WHERE workspace_id IN ({driver.marks(len(workspace_ids))})"  # noqa: S608 (markers only)
    numbers: dict[str, int] = dict(driver.query(db_session, select, workspace_ids))
    missing = [workspace_id for workspace_id in workspace_ids if workspace_id not in numbers]
    if missing:
        insert = driver.statement(workspaces_table, _NEW_USER, ("workspace_id",))
        driver.execute_many(
            db_session,
            insert.sql,
            insert.params([{"workspace_id": workspace_id} for workspace_id in missing]),
        )
        numbers.update(driver.query(db_session, select, workspace_ids))
    return numbers


def matching(number: int, word: str) -> sa.Select[tuple[int]]:
    """The ids of the problems of the workspace with this number having a term beginning with ``word``
    (an id repeats when several of its terms do)."""
    low, high = prefix_range(word)
    return sa.select(terms_table.c.problem_id).where(
        terms_table.c.workspace_number == number, terms_table.c.term >= low, terms_table.c.term < high
    )


def among_matching(
    problem_id: sa.ColumnElement[int], number: int, word: str, *, dialect: str
) -> sa.ColumnElement[bool]:
    """True for the problems having a term beginning with ``word``, written so the database reads
    that (short) list first and fetches each problem by id. On PostgreSQL the list is one array
    built up front: given an IN, the planner may prefer to join it against every problem instead."""
    ids = matching(number, word)
    if dialect != "postgresql":
        return problem_id.in_(ids)
    listed = ids.subquery()
    array = sa.select(sa.func.array_agg(listed.c.problem_id)).scalar_subquery()
    # The cast makes it one array value (ANY of a bare subquery would compare row by row).
    return problem_id == sa.any_(sa.cast(array, postgresql.ARRAY(sa.BigInteger())))


def in_list_of(problem_id: sa.ColumnElement[int], number: int, word: str) -> sa.ColumnElement[bool]:
    """True for the problems having a term beginning with ``word``, for SQLite walking many rows
    against a short list: it builds the list once in memory and probes it per row, cheaper than a
    seek per row. (``+ 0`` keeps it from fetching the list's problems by id instead of walking.)"""
    return (problem_id + 0).in_(matching(number, word))


def has_word(problem_id: sa.ColumnElement[int], word: str) -> sa.ColumnElement[bool]:
    """True for a problem with a term beginning with ``word``: one seek in the primary key per row.

    Written as a one-row subquery rather than EXISTS so that PostgreSQL checks it row by row as the
    query walks its index, instead of turning it into a join and sorting what it found."""
    low, high = prefix_range(word)
    terms = terms_table.alias()  # its own name: the outer query may read problem_terms too
    first = (
        sa.select(sa.literal(1))
        .where(terms.c.problem_id == problem_id, terms.c.term >= low, terms.c.term < high)
        .limit(1)
        .scalar_subquery()
    )
    return first.is_not(None)
