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
