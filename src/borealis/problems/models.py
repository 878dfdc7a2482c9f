"""Problems (one per connection and Dynatrace PID), their notifications, and rejected deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, JSONType, UTCDateTime, utcnow

OPEN = "OPEN"
RESOLVED = "RESOLVED"
MERGED = "MERGED"
ENDED_STATES = frozenset({RESOLVED, MERGED})
PRIORITIES = ("critical", "high", "medium", "low", "info")
# Longer words are kept (and searched) by their beginning.
MAX_TERM_LENGTH = 64
# Terms compare by code point on both databases ("C" on PostgreSQL), so a prefix is a key range.
TermType = sa.String(MAX_TERM_LENGTH).with_variant(sa.String(MAX_TERM_LENGTH, collation="C"), "postgresql")


class Problem(Base):
    """The current picture of one Dynatrace problem, kept from the newest information received.

    ``pid_key`` is the identity: the PID with any ``_<start>V2`` suffix removed, so the webhook's
    ``{PID}`` and the API's ``problemId`` land on the same row whichever form a cluster sends.
    """

    __tablename__ = "problems"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "pid_key"),
        # The alerts list: newest activity first, per workspace, optionally by state, severity or impact.
        sa.Index("ix_problems_workspace_activity", "workspace_id", "last_received_at", "id"),
        sa.Index("ix_problems_workspace_state_activity", "workspace_id", "state", "last_received_at", "id"),
        sa.Index(
            "ix_problems_workspace_severity_activity", "workspace_id", "severity", "last_received_at", "id"
        ),
        sa.Index("ix_problems_workspace_impact_activity", "workspace_id", "impact", "last_received_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    pid_key: Mapped[str] = mapped_column(sa.String(200))
    # As Dynatrace sent it: {PID} of the webhook or problemId of the API.
    pid: Mapped[str] = mapped_column(sa.String(200))
    # {ProblemID} / displayId ("P-22011"); can change for the same PID.
    display_id: Mapped[str | None] = mapped_column(sa.String(200))
    # The API's problemId ("-123_1578561060000V2") once seen in details or a sync.
    api_problem_id: Mapped[str | None] = mapped_column(sa.String(200))
    title: Mapped[str | None] = mapped_column(sa.Text)
    # OPEN, RESOLVED, MERGED, or an unknown value verbatim.
    state: Mapped[str] = mapped_column(sa.String(64))
    severity: Mapped[str | None] = mapped_column(sa.String(100))
    impact: Mapped[str | None] = mapped_column(sa.String(100))
    priority: Mapped[str] = mapped_column(sa.String(16))
    problem_url: Mapped[str | None] = mapped_column(sa.Text)
    # {ImpactedEntity}: a sentence, not an id.
    impacted_entity: Mapped[str | None] = mapped_column(sa.Text)
    # [{"entityId", "name", "type"}]
    impacted_entities: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    root_cause_entity_id: Mapped[str | None] = mapped_column(sa.String(200))
    root_cause_entity_name: Mapped[str | None] = mapped_column(sa.Text)
    root_cause_entity_type: Mapped[str | None] = mapped_column(sa.String(200))
    # [{"context", "key", "value"}] and the {Tags} string as sent.
    tags: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    tags_raw: Mapped[str | None] = mapped_column(sa.Text)
    # [{"id", "name"}] from the v2 details.
    management_zones: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Dynatrace's own times, from the details when present.
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The latest problem details document and its kind ("v2", "v1", "api").
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    details_format: Mapped[str | None] = mapped_column(sa.String(16))
    # Lower-case title, ids and entity names: the source of the problem's search terms.
    search_text: Mapped[str] = mapped_column(sa.Text, default="")
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Distinct notifications stored, and identical redeliveries counted on top.
    notification_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Order-independent bookkeeping of the lifecycle (see problems/lifecycle.py).
    lifecycle: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def is_open(self) -> bool:
        return self.state not in ENDED_STATES

    @property
    def impacted_entity_ids(self) -> list[str]:
        return [item["entityId"] for item in self.impacted_entities or [] if item.get("entityId")]


class Notification(Base):
    """One delivery about a problem (or a test notification), kept for history and troubleshooting.

    An identical redelivery (same ``content_hash`` for the same problem) is counted in
    ``delivery_count`` instead of stored again.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        sa.UniqueConstraint("problem_id", "content_hash"),
        sa.Index("ix_notifications_connection_received", "connection_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # NULL for a test notification, which is a connection check, not a problem.
    problem_id: Mapped[int | None] = mapped_column(sa.ForeignKey("problems.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(sa.String(16))  # webhook | api
    # created | updated | duplicate | stale | test (of the first delivery)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    pid: Mapped[str | None] = mapped_column(sa.String(200))
    display_id: Mapped[str | None] = mapped_column(sa.String(200))
    # Normalized state of this delivery and the value Dynatrace sent.
    state: Mapped[str | None] = mapped_column(sa.String(64))
    state_raw: Mapped[str | None] = mapped_column(sa.String(200))
    title: Mapped[str | None] = mapped_column(sa.Text)
    # The newest Dynatrace timestamp found in the delivery: how its age is judged.
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivery_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    # Unreplaced placeholders, fields that could not be read.
    warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    raw_body: Mapped[str] = mapped_column(sa.Text)


class RejectedDelivery(Base):
    """An authenticated delivery that could not be used, kept (a bounded number per connection) so a
    user can see what Dynatrace actually sent."""

    __tablename__ = "rejected_deliveries"
    __table_args__ = (sa.Index("ix_rejected_deliveries_connection_received", "connection_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(sa.Text)
    content_type: Mapped[str | None] = mapped_column(sa.String(200))
    raw_body: Mapped[str] = mapped_column(sa.Text)


class ProblemCount(Base):
    """How many problems a workspace has per (state, severity, impact), kept with every change so the alerts
    list can give its ``total`` without counting a million rows. '' stands for "not known"."""

    __tablename__ = "problem_counts"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    severity: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    impact: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer, default=0)


class SearchWorkspace(Base):
    """A workspace's number in the search index: ``problem_terms`` has a dozen rows per problem, and a
    small number in each instead of the 36-character workspace id halves the index."""

    __tablename__ = "search_workspaces"

    number: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"), unique=True)


class ProblemTerm(Base):
    """One word a problem can be found by with the alerts ``q`` filter (see problems/search.py).

    Kept in step with ``Problem.search_text`` by the lifecycle write. Keyed by problem for upkeep
    (rows leave with their problem); the (workspace number, term) index answers "which of my problems have
    a word beginning with ..." as a key range. ``workspace_number`` is the problem's workspace's
    ``SearchWorkspace.number``, written with the row; it has no foreign key, which would cost a lookup per
    row written and protect nothing the problem's own cascade does not.
    """

    __tablename__ = "problem_terms"
    __table_args__ = (
        sa.Index("ix_problem_terms_workspace_term", "workspace_number", "term", "problem_id"),
        {"sqlite_with_rowid": False},
    )

    problem_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("problems.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    term: Mapped[str] = mapped_column(TermType, primary_key=True)
    workspace_number: Mapped[int] = mapped_column(sa.Integer)


class FollowUp(Base):
    """A problem change that is stored and acknowledged but not yet followed up: correlation into
    incidents, an analysis for a new incident, enrichment from the API (see ``borealis.jobs.follow_ups``).

    Written in the transaction that changed the problem, so a follow-up is never lost; appended, one row
    per change (the writer inserts and never waits on a row the follow-up job holds), and merged per
    problem by the step that carries them out (a burst of deliveries about one problem is correlated
    once), which removes them. ``previous_keys`` are the problem's candidate-index keys as its incident
    last saw them (None for a new problem); ``version`` is the problem's notification count the change
    left, so the step knows which rows the problem it read already includes.
    """

    __tablename__ = "follow_ups"
    __table_args__ = (sa.Index("ix_follow_ups_workspace_next", "workspace_id", "next_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    problem_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("problems.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    created: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    correlate: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    enrich: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    previous_keys: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    # The states the problem took while this waited, in order, from the one its incident last saw
    # (from its first, for a new problem): correlation replays them, as if each had come alone.
    states: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # When the first of those states not replayed yet arrived (microseconds since the epoch; when the
    # follow-up was queued if none): follow-ups are carried out in this order.
    next_at: Mapped[int] = mapped_column(sa.BigInteger)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
