"""Durations and sizes as people write them."""

from __future__ import annotations

import pytest

from mullama.core import units
from mullama.core.units import FOREVER, format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    (300, 300.0), ("300", 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5h", 5400.0),
    ("2d", 172800.0), (0, 0.0), ("0", 0.0), ("0s", 0.0), (-1, FOREVER), ("-1", FOREVER), ("-5m", FOREVER),
    (" 10s ", 10.0), (2.5, 2.5), ("1H", 3600.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "m5", "5x", "5 m", "five", "1h-30m", True, None, [], float("nan"),
                                 float("inf"), 10**400, "--5m"])
def test_parse_duration_refuses_with_value_error(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text, size", [
    (1024, 1024), ("12", 12), ("512MB", 512 * 10**6), ("8GiB", 8 << 30), ("1.5g", 1_500_000_000), ("4 KiB", 4096),
    ("2t", 2 * 10**12), ("100b", 100), ("1mi", 1 << 20),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "-1", -1, "8XB", "GiB", True, None, float("nan"), "1e9"])
def test_parse_size_refuses_with_value_error(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (300 << 20, "300.0 MiB"),
                                     (5 << 40, "5.0 TiB")])
def test_format_size(n, text):
    assert format_size(n) == text


@pytest.mark.parametrize("s, text", [(-1, "forever"), (0.25, "250 ms"), (1, "1 second"), (59, "59 seconds"),
                                     (300, "5 minutes"), (3600, "1 hour"), (86400 * 3, "3 days")])
def test_format_duration(s, text):
    assert format_duration(s) == text


@pytest.mark.parametrize("value,seconds", [("5m", 300.0), (1e308, units.FOREVER), ("100000000h", units.FOREVER),
                                           (units.MAX_KEEP_ALIVE_S, units.MAX_KEEP_ALIVE_S), ("-1", units.FOREVER)])
def test_parse_keep_alive_reads_absurd_durations_as_forever(value, seconds) -> None:
    assert units.parse_keep_alive(value) == seconds
