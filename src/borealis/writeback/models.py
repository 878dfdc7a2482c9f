"""The comment Borealis keeps on each Dynatrace problem, so a rerun updates it instead of adding one."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, UTCDateTime, utcnow


class DynatraceComment(Base):
    __tablename__ = "dynatrace_comments"

    problem_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("problems.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    # Dynatrace's id of the comment.
    comment_id: Mapped[str] = mapped_column(sa.String(200))
    # The RCA run whose report the comment holds now.
    rca_run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rca_runs.id", ondelete="SET NULL"))
    written_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
