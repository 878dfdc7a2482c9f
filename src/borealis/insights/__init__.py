"""On-call figures of a workspace over a window: incidents per day, how fast they were acknowledged and
resolved, what caused them, and how often the RCA was right by the responders' own marks."""
