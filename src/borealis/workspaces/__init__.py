"""Workspaces: what a team shares (a Dynatrace connection, its problems and incidents, settings, keys)
and who belongs to it, with which role."""
