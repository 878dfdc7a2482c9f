"""Figures as people read them."""

from __future__ import annotations

_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def spoken_duration(seconds: float) -> str:
    """A span of time in its two largest units: "4 min 12 s", "2 h 5 min", "3 d 4 h"."""
    whole = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in _UNITS:
        if whole >= size or (unit == "s" and not parts):
            parts.append(f"{whole // size} {unit}")
            whole %= size
        elif parts:
            break  # "1 h 5 s" would skip the minutes: stop at the first empty unit after the largest
        if len(parts) == 2:
            break
    return " ".join(parts)
