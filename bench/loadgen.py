"""A lean HTTP/1.1 keep-alive load generator (asyncio streams), so the client is not the bottleneck.

Each of ``concurrency`` connections sends one request, waits for the answer, and sends the next, until
``duration`` seconds have passed or ``total`` requests were sent. Latency is measured per request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Result:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    # (request index, status) of every answer, to check acknowledgements against the database.
    answered: list[tuple[int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)


def request_bytes(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _worker(
    host: str, port: int, requests: Iterator[tuple[int, bytes]], result: Result, deadline: float
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            try:
                index, payload = next(requests)
            except StopIteration:
                return
            started = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.answered.append((index, status))
    finally:
        writer.close()


async def run(
    host: str,
    port: int,
    payloads: list[bytes],
    *,
    concurrency: int,
    duration: float,
    total: int | None = None,
    cycle: bool = True,
) -> Result:
    """Send ``payloads`` (complete requests) over ``concurrency`` connections."""
    source = itertools.cycle(enumerate(payloads)) if cycle else iter(enumerate(payloads))
    if total is not None:
        source = itertools.islice(source, total)
    result = Result()
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(_worker(host, port, source, result, deadline) for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result
