"""Webhook bodies as JSON, whatever a sender did to the text.

Dynatrace fills its template by text substitution, so the JSON can carry what no store accepts: NUL,
unpaired surrogate escapes, duplicate keys, nesting deeper than anything we keep. This module reads such
text as far as it can be read and repairs only what could not be stored; ``PayloadRejected`` when it is
not JSON at all.
"""

from __future__ import annotations

import json
import re
from typing import Any

from borealis import jsontext
from borealis.dynatrace.problem_notification import SUGGESTED_TEMPLATE_HINT, PayloadRejected

# Containers in a text within this count are nested shallowly enough for ``json`` to read them.
_SHALLOW = 256


def load_json(body: bytes) -> tuple[Any, int]:
    """The JSON document of the body, and how many unpaired surrogate escapes were replaced in it."""
    if not body.strip():
        raise PayloadRejected(f"the body is empty; {SUGGESTED_TEMPLATE_HINT}", malformed=True)
    text = _decode(body)
    lone = 0
    if "\\u" in text:
        # NUL cannot be stored in PostgreSQL text or JSONB; it carries no meaning in a notification.
        text = text.replace("\\u0000", "\\ufffd")
        text, lone = lone_surrogates_replaced(text)
    try:
        document = jsontext.loads(text, parse_constant=no_constant)
        if isinstance(document, dict) and _read_every_pair(text, document):
            # Perhaps a key sent twice (json keeps the last silently): parse again, seeing every pair.
            document = json.loads(text, object_pairs_hook=_object, parse_constant=no_constant)
        return document, lone
    except json.JSONDecodeError as exc:
        raise PayloadRejected(
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "placeholders that expand to JSON ({ImpactedEntities}, {ProblemDetailsJSONv2}) must stand "
            f"unquoted and the others inside quotes; {SUGGESTED_TEMPLATE_HINT}",
            malformed=True,
        ) from None
    except RecursionError:
        raise PayloadRejected(
            "the body is nested too deeply to be a Dynatrace notification", malformed=True
        ) from None
    except ValueError as exc:  # say, an integer of more digits than Python converts
        raise PayloadRejected(f"the body cannot be read as JSON: {exc}", malformed=True) from None


def stored_body(raw: str | None) -> Any:
    """A stored delivery body as JSON when it is JSON, else as the text Dynatrace sent: what a read
    shows. Kept as sent, except what no answer can carry: an unpaired surrogate escape becomes U+FFFD
    and nesting past the stored bound is cut, as at intake."""
    if raw is None:
        return None
    try:
        document = json.loads(lone_surrogates_replaced(raw)[0] if "\\u" in raw else raw)
    except (ValueError, RecursionError):
        return raw
    return jsontext.bounded(document)[0]


_SURROGATE_ESCAPE = re.compile(r"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")


def lone_surrogates_replaced(text: str) -> tuple[str, int]:
    """JSON text with each escape of an unpaired surrogate (``\\ud800`` alone) replaced by ``\\ufffd``:
    such a code point is not text, UTF-8 cannot encode it and PostgreSQL refuses it, so a title holding
    one could never be stored. A pair (high then low) is a real character and stays."""
    escapes = [m for m in _SURROGATE_ESCAPE.finditer(text) if len(m.group(1)) % 2 == 1]
    lone = []
    index = 0
    while index < len(escapes):
        escape = escapes[index]
        following = escapes[index + 1] if index + 1 < len(escapes) else None
        if (
            int(escape.group(2), 16) <= 0xDBFF
            and following is not None
            and following.start() == escape.end()
            and len(following.group(1)) == 1
            and int(following.group(2), 16) >= 0xDC00
        ):
            index += 2
            continue
        lone.append(escape)
        index += 1
    if not lone:
        return text, 0
    parts, last = [], 0
    for escape in lone:
        start = escape.end(1) - 1  # the backslash that opens the escape
        parts += [text[last:start], "\\ufffd"]
        last = escape.end()
    parts.append(text[last:])
    return "".join(parts), len(lone)


def _decode(body: bytes) -> str:
    """UTF-8 without a leading byte order mark (what the ``utf-8-sig`` codec gives, at a fraction of its
    cost), else Latin-1: any byte sequence is text."""
    try:
        return body.decode().removeprefix("\ufeff")
    except UnicodeDecodeError:
        return body.decode("latin-1")


def _read_every_pair(text: str, document: dict[str, Any]) -> bool:
    """Whether to parse again seeing every pair: a top-level key quoted more than once in the text may
    have been sent twice.

    Most bodies are settled by counting colons instead of searching for every key. A colon in JSON text
    is inside a string or after a member's name; the document written back has the same strings (when the
    text has no escape) and one name per member it kept. So the same number of colons means no member was
    dropped, no key was sent twice at any depth, and parsing again would give this same document. Not
    for deep text: ``json`` may refuse to parse it again, and that refusal is the answer.
    """
    if (
        "\\" not in text
        and text.count("{") + text.count("[") <= _SHALLOW
        and jsontext.dumps(document).count(":") == text.count(":")
    ):
        return False
    return any(text.count(f'"{key}"') > 1 for key in document)


def no_constant(_name: str) -> None:
    """``NaN`` and ``Infinity`` read as null: they are not JSON and no store keeps them."""
    return None


class _DuplicateKeys(dict):  # type: ignore[type-arg]
    """An object that had a key twice; the parser keeps the most useful value and says so."""

    duplicates: dict[str, list[Any]]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen: dict[str, list[Any]] = {}
    for key, value in pairs:
        seen.setdefault(key, []).append(value)
    marked = _DuplicateKeys(result)
    marked.duplicates = {key: values for key, values in seen.items() if len(values) > 1}
    return marked
