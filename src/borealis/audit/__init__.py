"""The audit log: who changed a workspace's members, roles, connection, settings, keys or secrets,
when, and from where."""
