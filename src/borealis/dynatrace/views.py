"""The seed's /dynatrace endpoints."""

from __future__ import annotations

from fastapi import APIRouter

from borealis.deps import CurrentUser, DbSession
from borealis.dynatrace.schemas import RcaSettings

router = APIRouter(prefix="/dynatrace", tags=["dynatrace"])


@router.get("/rca-settings", response_model=RcaSettings)
def get_rca_settings(user: CurrentUser) -> RcaSettings:
    """Whether new incidents of this user get an automatic RCA."""
    return RcaSettings(rca_enabled=user.rca_enabled)


@router.put("/rca-settings", response_model=RcaSettings)
def put_rca_settings(settings_in: RcaSettings, user: CurrentUser, db_session: DbSession) -> RcaSettings:
    """Turn automatic RCA on or off for this user only."""
    user.rca_enabled = settings_in.rca_enabled
    db_session.commit()
    return RcaSettings(rca_enabled=user.rca_enabled)
