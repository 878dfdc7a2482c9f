"""Notifications out: a workspace's destinations (Slack, Microsoft Teams, a signed generic webhook), the
incident events they choose, and a durable, logged delivery of each."""
