"""How the console writes times and sizes (pure rules, no server)."""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup

from tether.server.console.formats import size, when


def test_when_writes_a_time_element_in_utc_to_the_minute() -> None:
    iso = when("2026-12-07T19:28:50.975820Z")
    assert iso == '<time datetime="2026-12-07T19:28:50Z">2026-12-07 19:28 UTC</time>'
    assert when(1_700_000_000.5) == when("2023-11-14T22:13:20Z")
    assert when(dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)).startswith(
        '<time datetime="2026-01-02T03:04:00Z">'
    )


def test_when_leaves_what_is_no_time_as_text() -> None:
    assert when(None) == ""
    assert when("") == ""
    assert when("soon") == "soon"
    assert when(True) == "True"
    assert not isinstance(when("<b>"), Markup), "plain text, which the template escapes"


def test_size_reads_as_people_read_sizes() -> None:
    assert [size(n) for n in (0, 512, 2100, 1536 * 1024, 12 * 1024**3)] == [
        "0 B",
        "512 B",
        "2.1 KB",
        "1.5 MB",
        "12 GB",
    ]
    assert size(None) == ""
