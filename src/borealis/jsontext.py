"""JSON text in and out, fast where that gives the standard library's answer.

orjson parses and writes several times faster than ``json``, which matters on the webhook's hot path
(every delivery is parsed, and its problem's JSON columns are read and written). Where orjson would
answer differently, the standard library decides: integers beyond 64 bits (orjson turns them into
floats or refuses them), ``NaN``/``Infinity`` (orjson refuses them), text that is not valid JSON (so
errors keep the standard library's message and position).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

# 19 digits in a row may be an integer beyond 64 bits (or a long fraction): leave those to ``json``.
# Found by mapping every digit to "0" and everything else to " " (far cheaper than a regex scan).
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19
_OPTIONS = orjson.OPT_NON_STR_KEYS
# What the digits of a number follow in JSON text: where a value starts (None: the text's start), a
# point or an exponent, or a sign (which itself follows where a value starts, or an exponent).
_BEFORE_DIGITS = frozenset([*b" \t\n\r[,:.eE+", None])
_BEFORE_SIGN = frozenset([*b" \t\n\r[,:eE", None])
# Text with at most this many arrays and objects is shallow enough for ``json`` (which stops at the
# recursion limit, where orjson reads on).
_SHALLOW = 256


def _has_long_number(text: str | bytes | bytearray) -> bool:
    """Whether a number in the text may have 19 digits in a row (then ``json`` must read it).

    A run after a quote or a letter (as in the PIDs of most notifications) cannot belong to a number: in
    valid JSON it is inside a string, which orjson reads as ``json`` does. Text that is not valid JSON
    fails in orjson and goes to ``json`` anyway; deep text goes there too, which may refuse it.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(raw) < len(_LONG_RUN):
        return False
    digits = raw.translate(_DIGITS_AS_ZEROS)
    start = digits.find(_LONG_RUN)
    if start != -1 and raw.count(b"[") + raw.count(b"{") > _SHALLOW:
        return True
    while start != -1:
        if _may_be_number(raw, start):
            return True
        end = digits.find(b" ", start)
        start = digits.find(_LONG_RUN, end) if end != -1 else -1
    return False


def _may_be_number(raw: bytes | bytearray, start: int) -> bool:
    """Whether the digits from ``start`` may belong to a number, judged by what they follow."""
    before = raw[start - 1] if start > 0 else None
    if before == 0x2D:  # "-"
        return (raw[start - 2] if start > 1 else None) in _BEFORE_SIGN
    return before in _BEFORE_DIGITS


def loads(text: str | bytes | bytearray, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads``, faster (``parse_constant`` as there: what ``NaN`` and ``Infinity`` become)."""
    # orjson reads UTF-8: encode text once, for the scan and the parse (else orjson encodes it again).
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if not _has_long_number(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text, parse_constant=parse_constant)


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (what ``json.dumps`` accepts, and datetimes)."""
    try:
        # Without options first: keys are nearly always text, and OPT_NON_STR_KEYS costs on every key.
        return orjson.dumps(value).decode()
    except TypeError:
        pass
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


# How much of a JSON document Borealis keeps: enough for any real notification, few enough that every
# stored document can be read back and serialized (orjson stops at 255 levels, ``json`` at the stack).
MAX_DEPTH = 64
MAX_NODES = 100_000
DEPTH_MARKER = f"[cut: nested deeper than {MAX_DEPTH} levels]"
NODES_MARKER = f"[cut: more than {MAX_NODES} values]"


def bounded(value: Any) -> tuple[Any, str | None]:
    """The document cut to ``MAX_DEPTH`` levels and ``MAX_NODES`` values, and why it was cut (None: it
    is returned as is). A container past the depth becomes ``DEPTH_MARKER``; past the count, the rest of
    a container is left out and ``NODES_MARKER`` stands in its place."""
    if _within_bounds(value):
        return value, None
    budget = [MAX_NODES]
    reasons: set[str] = set()

    def cut(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if not isinstance(node, dict | list):
            return node
        if depth >= MAX_DEPTH:
            reasons.add(DEPTH_MARKER)
            return DEPTH_MARKER
        items = node.items() if isinstance(node, dict) else enumerate(node)
        kept: list[tuple[Any, Any]] = []
        for key, item in items:
            if budget[0] <= 0:
                reasons.add(NODES_MARKER)
                kept.append(("…", NODES_MARKER))
                break
            kept.append((key, cut(item, depth + 1)))
        return dict(kept) if isinstance(node, dict) else [item for _, item in kept]

    result = cut(value, 0)
    return result, "; ".join(sorted(reasons))


def _within_bounds(value: Any) -> bool:
    """Whether the document is inside both bounds: one pass without recursion, cheap on the hot path."""
    stack = [(value, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        children = node.values() if type(node) is dict else node if type(node) is list else ()
        if children and depth >= MAX_DEPTH:
            return False
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
            else:
                nodes += 1
        if nodes > MAX_NODES:
            return False
    return True
