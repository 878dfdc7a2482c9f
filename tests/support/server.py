"""Run an ASGI app on a real loopback socket in a background thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from borealis.config import Settings
from borealis.server import uvicorn_config
from tests.support.waiting import wait_until


@dataclass
class RunningServer:
    url: str
    port: int


@contextmanager
def serve_in_thread(
    app: object, *, host: str = "127.0.0.1", lifespan: str = "on", config: uvicorn.Config | None = None
) -> Iterator[RunningServer]:
    """Serve ``app`` until the block ends; the port is chosen by the kernel. A Borealis application
    runs with the server configuration ``borealis serve`` uses (its timeouts and webhook fast path
    included), unless ``config`` is given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    settings = getattr(getattr(app, "state", None), "settings", None)
    if config is None and isinstance(settings, Settings):
        config = uvicorn_config(app, settings, log_level="warning", lifespan=lifespan)
    elif config is None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), timeout=15, what="the test server to start")
    if not server.started:
        raise RuntimeError("test server did not start")
    try:
        yield RunningServer(url=f"http://{host}:{port}", port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
