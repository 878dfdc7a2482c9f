"""``GET /insights``: the workspace's on-call figures."""

from __future__ import annotations

import enum

from fastapi import APIRouter

from borealis.api.deps import CorrelatedCaller, DbSession
from borealis.insights import service
from borealis.insights.schemas import Insights
from borealis.schemas import API_ERRORS


class Window(enum.StrEnum):
    """The windows offered, in days (a query string's text, so a string enum)."""

    WEEK = "7"
    MONTH = "30"
    QUARTER = "90"


router = APIRouter(prefix="/insights", tags=["insights"], responses=API_ERRORS)


@router.get("", response_model=Insights)
def get_insights(caller: CorrelatedCaller, db_session: DbSession, days: Window = Window.MONTH) -> Insights:
    """Over the last ``days`` (7, 30 or 90, today included): incidents per day; time to acknowledge and
    to resolve (median, and the 90th percentile by nearest rank, in seconds); the most frequent root-cause
    entities; RCA verdict counts; and RCA precision from the responders' marks (right / marked), per
    verdict and overall. Each incident counts once, by the day it started and its newest finished RCA."""
    return service.compute(db_session=db_session, workspace_id=caller.workspace_id, days=int(days.value))
