"""The simulated environment's problem writes: comments (list, read, add, update, delete) and closing a
problem, as the Environment API v2 spec describes them. Adding answers 201 with no body, as the spec
says, so a client learns a new comment's id by listing the comments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from borealis.simulation.selectors import to_millis
from borealis.simulation.server import dt_error, endpoint, json_body

if TYPE_CHECKING:
    from borealis.simulation.store import FakeDynatrace

# The spec's largest pageSize for comments.
MAX_COMMENTS_PAGE = 500


def _problem(fake: FakeDynatrace, request: Request) -> dict[str, Any] | Response:
    problem_id = request.path_params["problemId"]
    problem = fake.problems.get(problem_id)
    if problem is None:
        return dt_error(404, f"The problem {problem_id} does not exist")
    return problem


async def _comment_request(request: Request) -> dict[str, Any] | Response:
    """A ``CommentRequestDtoImpl``: a required string ``message`` and an optional string ``context``."""
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    message, context = body.get("message"), body.get("context")
    if not isinstance(message, str) or (context is not None and not isinstance(context, str)):
        return dt_error(
            400,
            "Constraints violated.",
            constraintViolations=[
                {"path": "message", "message": "must not be null", "parameterLocation": "PAYLOAD_BODY"}
            ],
        )
    return body


def _comment(fake: FakeDynatrace, request: Request) -> tuple[dict[str, Any], dict[str, Any]] | Response:
    """The problem and the comment the path names, or Dynatrace's 404 for whichever is missing."""
    problem = _problem(fake, request)
    if isinstance(problem, Response):
        return problem
    comment = fake.comment(problem["problemId"], request.path_params["commentId"])
    if comment is None:
        return dt_error(404, f"The comment {request.path_params['commentId']} does not exist")
    return problem, comment


def _token_owner(fake: FakeDynatrace, request: Request) -> str:
    secret = request.headers.get("authorization", "").removeprefix("Api-Token ").strip()
    token = fake.tokens.get(secret)
    return token.owner if token is not None else "unknown"


@endpoint("GET", "/api/v2/problems/{problemId}/comments", scope="problems.read")
def list_comments(fake: FakeDynatrace, request: Request) -> Response:
    problem = _problem(fake, request)
    if isinstance(problem, Response):
        return problem
    comments = sorted(
        fake.comments_of(problem["problemId"]), key=lambda c: c["createdAtTimestamp"], reverse=True
    )
    return fake.page(request, comments, "comments", max_size=MAX_COMMENTS_PAGE)


@endpoint("GET", "/api/v2/problems/{problemId}/comments/{commentId}", scope="problems.read")
def get_comment(fake: FakeDynatrace, request: Request) -> Response:
    found = _comment(fake, request)
    if isinstance(found, Response):
        return found
    return JSONResponse(found[1])


@endpoint("POST", "/api/v2/problems/{problemId}/comments", scope="problems.write")
async def add_comment(fake: FakeDynatrace, request: Request) -> Response:
    problem = _problem(fake, request)
    if isinstance(problem, Response):
        return problem
    body = await _comment_request(request)
    if isinstance(body, Response):
        return body
    fake.add_comment(
        problem["problemId"], body["message"], context=body.get("context"), author=_token_owner(fake, request)
    )
    return Response(status_code=201)


@endpoint("PUT", "/api/v2/problems/{problemId}/comments/{commentId}", scope="problems.write")
async def update_comment(fake: FakeDynatrace, request: Request) -> Response:
    found = _comment(fake, request)
    if isinstance(found, Response):
        return found
    body = await _comment_request(request)
    if isinstance(body, Response):
        return body
    _, comment = found
    with fake.lock:
        comment["content"] = body["message"]
        comment["context"] = body.get("context")
    return Response(status_code=204)


@endpoint("DELETE", "/api/v2/problems/{problemId}/comments/{commentId}", scope="problems.write")
def delete_comment(fake: FakeDynatrace, request: Request) -> Response:
    found = _comment(fake, request)
    if isinstance(found, Response):
        return found
    problem, comment = found
    with fake.lock:
        fake.comments[problem["problemId"]].remove(comment)
    return Response(status_code=204)


@endpoint("POST", "/api/v2/problems/{problemId}/close", scope="problems.write")
async def close_problem(fake: FakeDynatrace, request: Request) -> Response:
    """Closing adds the message as a comment; a problem closed already answers 204 and changes nothing."""
    problem = _problem(fake, request)
    if isinstance(problem, Response):
        return problem
    body = await _comment_request(request)  # a closing comment: the same shape, context unused
    if isinstance(body, Response):
        return body
    if problem["status"] == "CLOSED":
        return Response(status_code=204)
    now = to_millis(datetime.now(UTC))
    with fake.lock:
        problem["status"] = "CLOSED"
        problem["endTime"] = now
    comment = fake.add_comment(
        problem["problemId"], body["message"], context=None, author=_token_owner(fake, request)
    )
    return JSONResponse(
        {"problemId": problem["problemId"], "closing": True, "closeTimestamp": now, "comment": comment}
    )
