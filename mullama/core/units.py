"""Durations and byte sizes as people write them ("5m", "1h30m", "8GiB", "512MB").

Pure parsing and formatting shared by the config, the APIs and the CLI.
"""

from __future__ import annotations

import math
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}

FOREVER = -1.0


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``300``, ``"300"``, ``"5m"``, ``"1h30m"``, ``"250ms"``; any negative value means forever (-1.0).

    Raises ValueError with a message that quotes the input.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '5m' or 300, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"duration {str(value)[:40]}... is too large") from None
        if math.isnan(seconds) or math.isinf(seconds) and seconds > 0:
            raise ValueError(f"expected a finite duration, got {value!r}")
        return FOREVER if seconds < 0 else seconds
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '5m' or 300, got {value!r}")
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return parse_duration(number)
    negative = text.startswith("-")
    body = text[1:] if negative else text
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f"expected a duration such as '5m', '1h30m', '250ms' or seconds, got {value!r}")
    return FOREVER if negative and total > 0 else total


#: A keep-alive beyond this (ten years) is forever: an expiry date that far out cannot be written.
MAX_KEEP_ALIVE_S = 10 * 365 * 86400.0


def parse_keep_alive(value: str | int | float) -> float:
    """``parse_duration``, with durations beyond ``MAX_KEEP_ALIVE_S`` read as forever (-1)."""
    seconds = parse_duration(value)
    return FOREVER if seconds > MAX_KEEP_ALIVE_S else seconds


def parse_size(value: str | int | float) -> int:
    """Bytes from ``1024``, ``"512MB"``, ``"8GiB"``, ``"1.5g"`` (k/m/g/t decimal, ki/mi/gi/ti binary)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '8GiB' or a byte count, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value) or math.isinf(value):
            raise ValueError(f"expected a non-negative size, got {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as '8GiB' or a byte count, got {value!r}")
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"expected a size such as '8GiB', '512MB' or a byte count, got {value!r}")
    unit = (match.group(2) or "").lower()
    if unit.endswith("b"):
        unit = unit[:-1]
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit in {value!r} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units, as ``ollama ps`` and ``free -h`` show them."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``300`` -> ``"5 minutes"``; ``-1`` -> ``"forever"``."""
    if seconds < 0:
        return "forever"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = round(seconds)
    return f"{count} second{'s' if count != 1 else ''}"
