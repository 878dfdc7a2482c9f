"""Writing back to Dynatrace: each incident's RCA as one comment on each of its problems, and closing
problems when a responder asks."""
