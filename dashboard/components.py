"""UI pieces every page shares: the freshness banner, the "unreachable" message, the legend,
the alerts panel."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import streamlit as st

from dashboard import alert_queries, kpi_queries, queries, theme
from dashboard.filters import Filters
from dashboard.formatting import age, clock, duration, escape_markdown, number

STALE_AFTER = dt.timedelta(seconds=30)  # no batch stored for this long: the data is stale
REACHABLE_KEY = "worker_reachable"
FILTERS_KEY = "filters"
NAV_PAGES_KEY = "nav_pages"  # app.py: paths of the pages this session's navigation holds
ALERTS_PAGE = "app_pages/alerts.py"


def current_filters() -> Filters:
    """The sidebar's filters of this run (app.py sets them before the page runs)."""
    filters = st.session_state.get(FILTERS_KEY)
    return filters if isinstance(filters, Filters) else Filters()


@dataclass(frozen=True)
class FreshnessLine:
    level: str  # "live", "stale" or "empty"
    text: str


def describe_freshness(fresh: queries.Freshness) -> FreshnessLine:
    """What the banner says, from the worker's own clock (pure)."""
    now = fresh.checked_at
    if fresh.last_batch_at is None:
        return FreshnessLine("empty", "No data yet: the worker has not stored any event so far.")
    newest = f"newest event {age(fresh.last_event_at, now)}"
    if fresh.source == "file":
        return FreshnessLine(
            "stale",
            f"Stale since {clock(fresh.last_batch_at, seconds=True)}: the worker is not running, "
            f"showing the database file as it was left ({newest}).",
        )
    idle = now - fresh.last_batch_at
    if idle > STALE_AFTER:
        return FreshnessLine(
            "stale",
            f"Stale since {clock(fresh.last_batch_at, seconds=True)}: no new events for "
            f"{duration(idle.total_seconds() / 60)} ({newest}).",
        )
    return FreshnessLine("live", f"Live · {newest} · last batch {age(fresh.last_batch_at, now)}")


def unavailable(error: queries.DataUnavailable) -> None:
    """The plain message for a worker that cannot be reached (never a traceback)."""
    st.error(
        f"**Worker unreachable since {clock(error.since, seconds=True)}.** "
        f"The dashboard retries every {queries.REFRESH_SECONDS} s and recovers by itself.  \n"
        f"{escape_markdown(error.reason)}",
        icon="⚠️",
    )


@st.fragment(run_every=queries.REFRESH_SECONDS)
def freshness_banner() -> None:
    """Live / stale / unreachable, refreshed on its own; a change of reachability reruns the
    whole app so the page appears again (or gives way to the message)."""
    before = st.session_state.get(REACHABLE_KEY)
    try:
        line = describe_freshness(queries.freshness())
    except queries.DataUnavailable as e:
        reachable = False
        unavailable(e)
    else:
        reachable = True
        if line.level == "live":
            st.caption(f":green[●] {line.text}")
        elif line.level == "stale":
            st.warning(line.text, icon="⏸️")
        else:
            st.info(line.text, icon="⏳")
    st.session_state[REACHABLE_KEY] = reachable
    if before is not None and before != reachable:
        st.rerun(scope="app")


def check_worker() -> bool:
    """Show the banner; False when the worker cannot be reached (the page should not run)."""
    st.session_state[REACHABLE_KEY] = None  # a full run: no reachability change to react to
    freshness_banner()
    return bool(st.session_state.get(REACHABLE_KEY))


def status_legend() -> None:
    """The delivery-status palette with what each colour means."""
    parts = [f"{s.marker}: {s.meaning}" for s in theme.DELIVERY_STATUSES]
    st.caption("  \n".join(parts))


def period_control(label: str, key: str, help_text: str) -> kpi_queries.Period:
    """A "Last N" period picker kept in the URL under `key` (KPIs, inventory flows)."""
    chosen = st.segmented_control(
        label,
        [p.key for p in kpi_queries.PERIODS],
        default=kpi_queries.DEFAULT_PERIOD.key,
        format_func=lambda k: f"Last {kpi_queries.PERIOD_BY_KEY[k].label}",
        key=key,
        required=True,
        bind="query-params",
        help=help_text,
    )
    return kpi_queries.PERIOD_BY_KEY.get(str(chosen), kpi_queries.DEFAULT_PERIOD)


def empty_state(text: str) -> None:
    st.info(text, icon="ℹ️")


def _swatch(hex_colour: str) -> str:
    return (
        f'<span style="display:inline-block;width:11px;height:11px;border-radius:50%;'
        f"background:{hex_colour};margin:0 5px -1px 0;border:1px solid #fff;"
        f'box-shadow:0 0 0 1px rgba(0,0,0,.18)"></span>'
    )


def _item(swatch: str, label: str, title: str = "") -> str:
    return f'<span style="white-space:nowrap" title="{title}">{swatch}{label}</span>'


def map_legend() -> None:
    """Legend of the map, built from theme constants only (no data reaches this HTML)."""
    trucks = [
        _item(_swatch(s.hex), s.label, s.meaning) for s in (*theme.DELIVERY_STATUSES, theme.NO_PLAN)
    ]
    sites = [
        _item(_swatch(theme.hex_colour(rgb)), theme.SITE_KIND_LABEL[kind])
        for kind, rgb in theme.SITE_KIND_RGB.items()
    ]
    lane_bar = (
        '<span style="display:inline-block;width:22px;height:4px;margin:0 5px 2px 0;'
        f'border-radius:2px;background:{theme.hex_colour(theme.LANE_SOURCE_RGB)}"></span>'
    )
    groups = [
        ("Trucks", trucks),
        ("Sites, sized by tires on hand", sites),
        ("Lanes", [_item(lane_bar, "width = tires in transit")]),
    ]
    body = "".join(
        f'<span style="display:inline-flex;gap:14px;align-items:center;margin-right:28px">'
        f"<b>{title}</b>{''.join(items)}</span>"
        for title, items in groups
    )
    st.html(f'<div style="font-family:inherit;font-size:0.85rem;line-height:2">{body}</div>')


@st.fragment(run_every=queries.REFRESH_SECONDS)
def alerts_panel() -> None:
    """Open alerts by severity under the sidebar's filters, with a link to the Alerts page;
    nothing for a role without that page, or for a database from before alerts."""
    pages = st.session_state.get(NAV_PAGES_KEY)
    if pages is not None and ALERTS_PAGE not in pages:
        return
    try:
        if not alert_queries.alerts_available():
            return
        counts = alert_queries.open_counts(current_filters())
    except queries.DataUnavailable:
        return  # the freshness banner already says so
    total = sum(c.alerts for c in counts)
    badges = " ".join(
        f":{theme.SEVERITY_COLOR_NAME[c.severity]}-badge[{number(c.alerts)} {c.severity}]"
        for c in counts
    )
    waiting = sum(c.unacknowledged for c in counts)
    text, link = st.columns([4, 1], vertical_alignment="center")
    text.markdown(
        f"🔔 **{number(total)} open alert{'' if total == 1 else 's'}** {badges}"
        + (f" · {number(waiting)} not acknowledged" if total else ""),
        help="Open alerts for the sidebar's filters, by severity.",
    )
    if pages is not None:  # a page run on its own (tests) has no navigation to link into
        link.page_link(ALERTS_PAGE, label="Alerts page", icon="➡️")
