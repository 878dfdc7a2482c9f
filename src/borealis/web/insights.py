"""The insights page: the on-call figures as charts drawn on the server (SVG) and as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from borealis.api.deps import CorrelatedCaller, DbSession
from borealis.errors import InvalidInput
from borealis.insights import service
from borealis.insights.schemas import DayCount
from borealis.web.routing import PageRoute
from borealis.web.security import verify_csrf
from borealis.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])

CHART_WIDTH = 720
CHART_HEIGHT = 160
CHART_FLOOR = 20  # room for the axis labels


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    count: int


def day_bars(days: list[DayCount]) -> list[Bar]:
    """One bar per day, scaled to the busiest day."""
    top = max((day.incidents for day in days), default=0) or 1
    step = CHART_WIDTH / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        height = (CHART_HEIGHT - CHART_FLOOR) * day.incidents / top
        bars.append(
            Bar(
                x=round(index * step + step * 0.1, 1),
                y=round(CHART_HEIGHT - CHART_FLOOR - height, 1),
                width=round(step * 0.8, 1),
                height=round(height, 1),
                label=day.day.isoformat(),
                count=day.incidents,
            )
        )
    return bars


@router.get("/insights")
def insights_page(
    request: Request, caller: CorrelatedCaller, db_session: DbSession, days: str = "30"
) -> Response:
    if days not in ("7", "30", "90"):
        raise InvalidInput(f"The window is 7, 30 or 90 days; the link has {days!r}.")
    figures = service.compute(db_session=db_session, workspace_id=caller.workspace_id, days=int(days))
    context: dict[str, Any] = {
        "title": "Insights",
        "active": "insights",
        "user": caller.user,
        "me": caller,
        "figures": figures,
        "bars": day_bars(figures.incidents_per_day),
        "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT, "floor": CHART_FLOOR},
        "windows": service.WINDOWS,
    }
    return render(request, "insights.html", context)
