"""Carrying out durable work: the worker, the registered job kinds, and the follow-ups of ingest.

Work is recorded with ``borealis.jobstore`` (by any layer); this package, above every domain, runs it.
"""
