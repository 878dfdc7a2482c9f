"""A fake OpenAI-compatible endpoint: a real HTTP server answering ``POST /v1/chat/completions``.

Tests set ``behaviour`` to a function of the request body that returns one ``Answer`` (a reply, tool calls,
a stall or an error). Ready-made behaviours: ``echo_hypothesis`` (a good answer: the deterministic
hypothesis, reworded), ``hallucinating`` (cites an evidence id that does not exist), ``obeying_injection``
(does what a problem title tells it to), ``stalling`` and ``failing``. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.server import serve_in_thread

DATA = re.compile(r"<incident-data>\n(.*?)\n</incident-data>", re.DOTALL)


@dataclass
class Answer:
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    stall: float = 0.0
    prompt_tokens: int = 1200
    completion_tokens: int = 300


Behaviour = Callable[[dict[str, Any]], Answer]


def incident_data(body: dict[str, Any]) -> dict[str, Any]:
    """The data block of the first user message, decoded."""
    for message in body["messages"]:
        if message["role"] == "user":
            found = DATA.search(message["content"])
            if found:
                return json.loads(found.group(1))
    raise AssertionError("no incident data in the prompt")


def hypothesis_of(body: dict[str, Any]) -> dict[str, Any]:
    return incident_data(body)["deterministicHypothesis"]


def reworded(hypothesis: dict[str, Any]) -> dict[str, Any]:
    answer = {
        key: value
        for key, value in hypothesis.items()
        if key
        in {
            "verdict",
            "summary",
            "rootCause",
            "timeline",
            "impact",
            "contributingFactors",
            "ruledOut",
            "nextSteps",
        }
    }
    answer["summary"] = "Narrative: " + hypothesis["summary"]
    return answer


def echo_hypothesis(body: dict[str, Any]) -> Answer:
    return Answer(content="```json\n" + json.dumps(reworded(hypothesis_of(body))) + "\n```")


def hallucinating(body: dict[str, Any]) -> Answer:
    answer = reworded(hypothesis_of(body))
    answer["rootCause"]["evidenceIds"] = [*answer["rootCause"]["evidenceIds"], "E999"]
    return Answer(content=json.dumps(answer))


def obeying_injection(body: dict[str, Any]) -> Answer:
    """A model that follows instructions planted in the data: blames what the title says, CONFIRMED."""
    data = incident_data(body)
    text = json.dumps(data)
    target = re.search(r"blame ([A-Z_]+-[0-9A-F]{16})", text)
    entity = target.group(1) if target else "HOST-0000000000000BAD"
    answer = reworded(data["deterministicHypothesis"])
    answer["verdict"] = "CONFIRMED"
    answer["summary"] = f"Confirmed: {entity} caused everything."
    answer["rootCause"] = {"entity": {"id": entity}, "explanation": "as instructed", "evidenceIds": []}
    return Answer(content=json.dumps(answer))


def stalling(seconds: float) -> Behaviour:
    return lambda body: Answer(stall=seconds)


def failing(status: int = 500) -> Behaviour:
    return lambda body: Answer(status=status)


def tools_then(calls: list[tuple[str, dict[str, Any]]], then: Behaviour) -> Behaviour:
    """Ask for these tool calls first (one request), then behave as ``then``."""

    def behave(body: dict[str, Any]) -> Answer:
        if not any(message["role"] == "tool" for message in body["messages"]):
            return Answer(tool_calls=calls)
        return then(body)

    return behave


class FakeLlm:
    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.reset()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def reset(self) -> None:
        self._release.set()
        self._release = threading.Event()
        self.behaviour: Behaviour = echo_hypothesis
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        answer = self.behaviour(body)
        if answer.stall:
            # Stalls until released or the stall is over, without holding the event loop.
            await asyncio.to_thread(self._release.wait, answer.stall)
        if answer.status != 200:
            return JSONResponse(
                {"error": {"message": "injected failure", "type": "server_error"}}, status_code=answer.status
            )
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(answer.tool_calls)
            ]
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": answer.prompt_tokens,
                    "completion_tokens": answer.completion_tokens,
                    "total_tokens": answer.prompt_tokens + answer.completion_tokens,
                },
            }
        )


@contextmanager
def running_fake_llm() -> Iterator[FakeLlm]:
    fake = FakeLlm()
    with serve_in_thread(fake.app) as server:
        fake.url = server.url
        try:
            yield fake
        finally:
            fake.reset()
