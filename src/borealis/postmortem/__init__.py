"""The postmortem of an incident: what happened, when, who did what, the cause and the figures."""
