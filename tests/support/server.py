"""Run an ASGI app on a real loopback socket in a background thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from borealis.config import Settings
from borealis.server import RunningServer, running_in_thread, uvicorn_config


@contextmanager
def serve_in_thread(
    app: object, *, host: str = "127.0.0.1", lifespan: str = "on", config: uvicorn.Config | None = None
) -> Iterator[RunningServer]:
    """Serve ``app`` until the block ends; the port is chosen by the kernel. A Borealis application
    runs with the server configuration ``borealis serve`` uses (its timeouts and webhook fast path
    included), unless ``config`` is given."""
    settings = getattr(getattr(app, "state", None), "settings", None)
    if config is None and isinstance(settings, Settings):
        config = uvicorn_config(app, settings, log_level="warning", lifespan=lifespan)
    elif config is None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
    with running_in_thread(config, host=host) as server:
        yield server
