"""Start-up: what every process installs before it ingests, and the webhook writer's entry point.

The layers import only downward. Where a lower one must reach up (ingest records follow-ups that
correlation, RCA and enrichment carry out; see ``borealis.ingest.hooks``), the entry points install the
hook here: the application (``borealis.app.create_app``), the CLI, and the webhook writer's own process,
which runs this module::

    python -m borealis.assembly FD
"""

from __future__ import annotations

import sys

from borealis.jobs import follow_ups


def install() -> None:
    """Install the start-up hooks of this process (idempotent)."""
    follow_ups.install()


if __name__ == "__main__":
    from borealis.ingest import writer

    install()
    writer.main(int(sys.argv[1]))
