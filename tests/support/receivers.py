"""A loopback HTTP receiver for outgoing notifications: it records what arrives and answers as told."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.server import serve_in_thread


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    # Status codes to answer with, in turn; then 200 for good.
    script: list[int] = field(default_factory=list)
    retry_after: str | None = None
    received: list[Received] = field(default_factory=list)
    # What it answered 2xx to.
    accepted: list[Received] = field(default_factory=list)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    async def hook(request: Request) -> Response:
        item = Received(
            {name.lower(): value for name, value in request.headers.items()}, await request.body()
        )
        receiver.received.append(item)
        status = receiver.script.pop(0) if receiver.script else 200
        if status < 300:
            receiver.accepted.append(item)
            return JSONResponse({"ok": True}, status_code=status)
        headers = {"Retry-After": receiver.retry_after} if receiver.retry_after else {}
        return JSONResponse({"error": "not now"}, status_code=status, headers=headers)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_in_thread(app, lifespan="off") as server:
        receiver.url = f"{server.url}/hook"
        yield receiver
