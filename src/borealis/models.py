"""Every table, imported in one place so Alembic and the schema test see the whole metadata."""

from borealis.auth.models import ApiKey, User
from borealis.db import Base
from borealis.dynatrace.models import Connection
from borealis.problems.models import Notification, Problem, RejectedDelivery

__all__ = ["ApiKey", "Base", "Connection", "Notification", "Problem", "RejectedDelivery", "User"]
