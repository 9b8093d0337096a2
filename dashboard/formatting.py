"""How numbers, instants and durations read on the dashboard (pure, locale-free, UTC)."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import pandas as pd

MISSING = "—"


def missing(value: Any) -> bool:
    """None, NaN, NaT and pandas NA: a scalar with no value."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar
        return False


def text(value: Any, default: str = MISSING) -> str:
    return default if missing(value) else str(value)


def number(value: Any) -> str:
    """An integer count with thousands separators: 12,345."""
    return MISSING if missing(value) else f"{round(float(value)):,}"


def rate(value: Any, unit: str = "/s") -> str:
    return MISSING if missing(value) else f"{float(value):,.1f}{unit}"


def percent(share: Any) -> str:
    return MISSING if missing(share) else f"{100 * float(share):.0f} %"


def clock(value: Any, *, seconds: bool = False) -> str:
    """An instant as '26 Nov 10:42 UTC' (the dashboard speaks UTC everywhere)."""
    if missing(value):
        return MISSING
    instant = pd.Timestamp(value)
    instant = instant.tz_localize("UTC") if instant.tzinfo is None else instant.tz_convert("UTC")
    return instant.strftime("%d %b %H:%M:%S UTC" if seconds else "%d %b %H:%M UTC")


def duration(minutes: Any) -> str:
    """A span of minutes as '45 s', '12 min', '3 h 05 min' or '2 d 04 h'."""
    if missing(minutes):
        return MISSING
    total = abs(float(minutes))
    if total < 1:
        return f"{round(total * 60)} s"
    if total < 120:
        return f"{round(total)} min"
    whole = round(total)
    if whole < 48 * 60:
        return f"{whole // 60} h {whole % 60:02d} min"
    return f"{whole // 1440} d {whole % 1440 // 60:02d} h"


def delay_text(minutes: Any) -> str:
    """A shipment's delay against its plan: '+32 min', '4 min early', 'on schedule'."""
    if missing(minutes):
        return "no plan"
    value = float(minutes)
    if math.isclose(value, 0.0, abs_tol=0.5 / 60):
        return "on schedule"
    return f"+{duration(value)}" if value > 0 else f"{duration(value)} early"


def age(since: dt.datetime | None, now: dt.datetime) -> str:
    """How long ago, from the worker's clock: '12 s ago', '3 min ago'."""
    if since is None:
        return "never"
    return f"{duration(max((now - since).total_seconds(), 0.0) / 60)} ago"


# Every ASCII punctuation character with a meaning in Streamlit's markdown (`&` starts an
# entity, `=` a setext heading, `:` and `[` colours and icons, `$` LaTeX).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:&=])")


def escape_markdown(value: str) -> str:
    """Text that Streamlit's markdown shows literally (for our own messages with paths)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", value)
