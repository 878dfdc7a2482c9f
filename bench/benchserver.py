"""The server as ``borealis serve`` runs it (``make run``), plus a bare ASGI endpoint for comparison.

Run: ``python bench/benchserver.py --port N`` with the usual BOREALIS_* environment. ``POST /__bare``
answers 200 straight from the outermost ASGI layer, on the same uvicorn, loop and process as the app.
``POST /__fastapi`` is the reference DESIGN 10 quotes: a minimal FastAPI application of its own whose one
route only parses the JSON body.

With ``--without-storage`` the webhook does everything up to the hand-off to the writer (reading,
parsing, the wire form) and answers at once: what the server's side of a delivery costs on its own, an
upper bound for the webhook on this machine. Nothing is stored then.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request

from borealis import migrate
from borealis.app import create_app, make_secret_box
from borealis.config import load_settings
from borealis.db import Database
from borealis.jobs.registry import register_handlers
from borealis.jobs.worker import Worker
from borealis.server import uvicorn_config

BARE_ANSWER = b'{"received":true}'


def minimal_fastapi() -> FastAPI:
    reference = FastAPI()

    @reference.post("/__fastapi")
    async def parse_only(request: Request) -> dict[str, bool]:
        await request.json()
        return {"received": True}

    return reference


def with_bare_endpoint(app):  # type: ignore[no-untyped-def]
    reference = minimal_fastapi()

    async def outer(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and scope["path"] == "/__fastapi":
            await reference(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/__bare":
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(BARE_ANSWER)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BARE_ANSWER})
            return
        await app(scope, receive, send)

    return outer


def without_storage() -> None:
    """Answer each parsed delivery at once instead of handing it to the writer."""
    from borealis.ingest.delivery import Answer, Job, error, to_wire
    from borealis.ingest.intake import IngestResult
    from borealis.ingest.writer import WriterClient

    async def submit(self: WriterClient, job: Job) -> Answer:
        to_wire(job)
        notification = job.notification
        if notification is None:
            return error(422, "invalid_payload", job.rejection or "unusable body")
        result = IngestResult("updated", 0, notification.display_id, notification.pid, notification.state)
        return Answer(200, result.as_answer())

    WriterClient.submit = submit  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--without-storage", action="store_true")
    args = parser.parse_args()
    if args.without_storage:
        without_storage()
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.effective_database_url)
    if database.is_sqlite:
        migrate.upgrade(database.url)
    config = uvicorn_config(
        create_app(settings, database),
        settings,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
    )
    config.app = with_bare_endpoint(config.app)
    # In-process workers, as `borealis serve` runs them: they carry out the follow-ups the burst records.
    register_handlers()
    worker = Worker(database=database, settings=settings, secret_box=make_secret_box(settings))
    worker.start()
    try:
        uvicorn.Server(config).run()
    finally:
        worker.stop(grace_seconds=5)


if __name__ == "__main__":
    main()
