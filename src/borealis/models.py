"""Every table, imported in one place so Alembic and the schema test see the whole metadata."""

from borealis.audit.models import AuditEntry
from borealis.auth.models import ApiKey, LoginThrottle, User, UserSession
from borealis.db import Base
from borealis.dynatrace.models import CachedEntity, Connection, EntityRelation
from borealis.incidents.models import (
    CorrelationSettingsRow,
    Incident,
    IncidentEvent,
    IncidentKey,
    IncidentNote,
    IncidentNoteRevision,
    IncidentProblem,
)
from borealis.jobstore.models import Job, JobSchedule
from borealis.notifications.models import Destination, DispatchCursor, NotificationDelivery
from borealis.problems.models import (
    FollowUp,
    Notification,
    Problem,
    ProblemCount,
    ProblemTerm,
    RejectedDelivery,
    SearchWorkspace,
)
from borealis.rca.models import RcaEvidence, RcaRun
from borealis.sync.models import ProblemEnrichment, SyncState
from borealis.workspaces.models import Membership, Workspace
from borealis.writeback.models import DynatraceComment

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "CachedEntity",
    "Connection",
    "CorrelationSettingsRow",
    "Destination",
    "DispatchCursor",
    "DynatraceComment",
    "EntityRelation",
    "FollowUp",
    "Incident",
    "IncidentEvent",
    "IncidentKey",
    "IncidentNote",
    "IncidentNoteRevision",
    "IncidentProblem",
    "Job",
    "JobSchedule",
    "LoginThrottle",
    "Membership",
    "Notification",
    "NotificationDelivery",
    "Problem",
    "ProblemCount",
    "ProblemEnrichment",
    "ProblemTerm",
    "RcaEvidence",
    "RcaRun",
    "RejectedDelivery",
    "SearchWorkspace",
    "SyncState",
    "User",
    "UserSession",
    "Workspace",
]
