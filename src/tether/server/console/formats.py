"""How the console writes times and sizes: a time as a `<time>` element the browser shows in
its own zone (UTC, to the minute, until the page's script rewrites it), a size in B, KB, MB or
GB. Templates use them as the `when` and `size` filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

from markupsafe import Markup, escape


def when(value: Any) -> Markup | str:
    """A time given as ISO 8601 text or Unix seconds, as `<time datetime=...>`; "" for none."""
    moment = _moment(value)
    if moment is None:
        return "" if value in (None, "") else str(value)
    iso = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    shown = moment.strftime("%Y-%m-%d %H:%M UTC")
    return Markup(f'<time datetime="{escape(iso)}">{escape(shown)}</time>')


def _moment(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


_UNITS = ("B", "KB", "MB", "GB", "TB")


def size(value: Any) -> str:
    """Bytes as people read them: 512 B, 1.5 KB, 12 MB (powers of 1,024, as file managers)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "" if value is None else str(value)
    amount = float(value)
    for unit in _UNITS:
        if abs(amount) < 1024 or unit == _UNITS[-1]:
            break
        amount /= 1024
    if unit == "B":
        return f"{int(amount)} B"
    return f"{amount:.1f} {unit}" if amount < 10 else f"{amount:.0f} {unit}"


FILTERS = {"when": when, "size": size}
