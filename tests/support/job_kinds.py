"""Job kinds for worker subprocesses (``borealis worker --import tests.support.job_kinds``).

``test.record`` appends a ``start`` and an ``end`` line (job id, attempt, process id) to the file named
in the payload, with an optional sleep in between, so a test can tell from the file which process ran
what, how often and in which order. Lines are written with one ``write`` on an ``O_APPEND`` descriptor,
so lines from concurrent processes never interleave. ``until_pids`` in the payload holds a job until
jobs from that many processes have started, so a test knows every worker process took work.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from borealis.jobs.registry import register
from borealis.jobstore import JobContext
from tests.support.waiting import wait_until


def append_event(path: str, event: str, ctx: JobContext) -> None:
    line = json.dumps(
        {"event": event, "job": ctx.job_id, "key": ctx.key, "attempt": ctx.attempt, "pid": os.getpid()}
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record(ctx: JobContext) -> dict[str, Any]:
    append_event(ctx.payload["log"], "start", ctx)
    # A rendezvous: hold this job until jobs from that many processes have started (at most a minute).
    wanted_pids = int(ctx.payload.get("until_pids", 0))
    with suppress(
        AssertionError
    ):  # past the minute the job goes on: the test's assertions say what was missed
        wait_until(
            lambda: (
                len(
                    {
                        event["pid"]
                        for event in read_events(Path(ctx.payload["log"]))
                        if event["event"] == "start"
                    }
                )
                >= wanted_pids
            ),
            what="jobs started in the other processes",
        )
    seconds = float(ctx.payload.get("seconds", 0))
    if ctx.payload.get("stoppable"):
        ctx.stopping.wait(seconds)
    else:
        time.sleep(seconds)
    append_event(ctx.payload["log"], "end", ctx)
    return {"pid": os.getpid()}


register("test.record")(record)
register("test.record.other")(record)
