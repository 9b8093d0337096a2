"""Delays and exceptions: what needs a planner now, which carriers run late, which trackers
went quiet, and how far each lane's ETAs can be trusted."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import streamlit as st

from dashboard import charts, components, queries, theme, timeline
from dashboard.filters import Filters
from dashboard.formatting import duration, escape_markdown, number

STALE_DEFAULT_MINUTES = 60
MIN_HISTORY_DEFAULT = 5  # deliveries per lane before its percentiles mean much
FEW_LANES_NAMED = 8
LANES_CHARTED = 12  # a chart a planner reads at a glance; the table lists every lane


def status_label(key: object) -> str:
    status = theme.STATUS_BY_KEY.get(key) if isinstance(key, str) else None
    return status.label if status else ""


def coloured(view: pd.DataFrame, columns: list[str]) -> pd.io.formats.style.Styler:
    """Status and severity cells in the shared palette (cells stay plain text)."""
    return view.style.map(theme.cell_css, subset=columns)


def map_links(shipment_ids: pd.Series) -> pd.Series:
    """Links that open the live map on each shipment (relative: works under a base path)."""
    return "./?shipment=" + shipment_ids.map(lambda shipment_id: quote(str(shipment_id), safe=""))


SHIPMENT_LINK = st.column_config.LinkColumn(
    "Shipment", display_text=r"\?shipment=(.+)$", help="Opens the shipment on the live map"
)


def lane(frame: pd.DataFrame) -> pd.Series:
    return frame["origin_city"].fillna("?") + " → " + frame["destination_city"].fillna("?")


def headline(filters: Filters) -> None:
    counts = queries.open_status_counts(filters)
    summary = queries.exception_summary(filters)
    critical = summary.loc[summary["severity"] == "critical", "exceptions"].sum()
    columns = st.columns(5)
    columns[0].metric("Open shipments", number(sum(counts.values())))
    for column, status in zip(
        columns[1:4], (theme.LATE, theme.AT_RISK, theme.EXCEPTION), strict=True
    ):
        column.metric(status.marker, number(counts.get(status.key, 0)), help=status.meaning)
    columns[4].metric("Open critical exceptions", number(critical))


def exception_queue(filters: Filters) -> None:
    st.subheader("Exception queue")
    st.caption(
        "Exceptions of shipments not yet delivered or cancelled: critical first, oldest first."
    )
    queue = queries.exception_queue(filters)
    if queue.empty:
        components.empty_state("No open exceptions for these filters.")
        return
    view = pd.DataFrame(
        {
            "Severity": queue["severity"],
            "Age": queue["age_minutes"],
            "Code": queue["code"],
            "Message": queue["message"],
            "Est. delay": queue["estimated_delay_minutes"],
            "Shipment": map_links(queue["shipment_id"]),
            "Status": queue["delivery_status"].map(status_label),
            "Carrier": queue["carrier_name"].fillna(queue["carrier_id"]),
            "Lane": lane(queue),
            "Reported": queue["occurred_at"],
        }
    )
    st.dataframe(
        coloured(view, ["Severity", "Status"]),
        hide_index=True,
        height=320,
        column_config={
            "Shipment": SHIPMENT_LINK,
            "Age": st.column_config.NumberColumn("Age (min)", format="%.0f"),
            "Est. delay": st.column_config.NumberColumn("Est. delay (min)", format="%d"),
            "Reported": st.column_config.DatetimeColumn("Reported (UTC)", format="DD MMM HH:mm"),
        },
    )


def late_table(filters: Filters) -> None:
    st.subheader("Late and at-risk shipments")
    st.caption("Open shipments overdue or with an ETA beyond the on-time tolerance, worst first.")
    late = queries.late_shipments(filters)
    if late.empty:
        components.empty_state("No open shipment is late or at risk for these filters.")
        return
    view = pd.DataFrame(
        {
            "Shipment": map_links(late["shipment_id"]),
            "Status": late["delivery_status"].map(status_label),
            "Delay": late["delay_minutes"],
            "Cause": late["cause"].fillna("no cause reported"),
            "Carrier": late["carrier_name"].fillna(late["carrier_id"]),
            "Mode": late["mode"],
            "Lane": lane(late),
            "Planned arrival": late["planned_arrival"],
            "ETA": late["eta"],
            "Tires": late["planned_quantity"],
        }
    )
    st.dataframe(
        coloured(view, ["Status"]),
        hide_index=True,
        height=360,
        column_config={
            "Shipment": SHIPMENT_LINK,
            "Delay": st.column_config.NumberColumn("Delay (min)", format="%.0f"),
            "Planned arrival": st.column_config.DatetimeColumn(
                "Planned arrival (UTC)", format="DD MMM HH:mm"
            ),
            "ETA": st.column_config.DatetimeColumn("ETA (UTC)", format="DD MMM HH:mm"),
            "Tires": st.column_config.NumberColumn("Tires", format="%d"),
        },
    )


def stale_trackers(filters: Filters) -> None:
    st.subheader("Stale trackers")
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    threshold = left.number_input(
        "No position for more than (minutes)",
        min_value=1,
        max_value=30 * 24 * 60,
        value=STALE_DEFAULT_MINUTES,
        step=5,
        key="stale_threshold_minutes",
        help="Wall-clock minutes since the last position report (or since departure when the "
        "tracker never reported).",
    )
    right.caption(
        "Shipments in transit (departed; not arrived, delivered or cancelled) whose tracker "
        "has been quiet for longer than the threshold, the longest silence first. Times are "
        "wall clock, as the events carry them. The demo's simulator runs 60× faster than the "
        "road (a wall minute is a simulated hour), so try 1 to 5 minutes there."
    )
    stale = queries.stale_trackers(filters, float(threshold))
    if stale.empty:
        components.empty_state(
            f"Every shipment in transit reported a position in the last {duration(threshold)}."
        )
        return
    total = int(stale["total"].iloc[0])
    st.caption(
        f"**{number(total)}** shipments silent for more than {duration(threshold)}"
        + (f" (the {number(len(stale))} longest shown)." if total > len(stale) else ".")
    )
    view = pd.DataFrame(
        {
            "Shipment": map_links(stale["shipment_id"]),
            "Silent for": stale["silent_minutes"].map(duration),
            "Wall minutes": stale["silent_minutes"],
            "Last position": stale["last_position_at"],
            "Carrier": stale["carrier_name"].fillna(stale["carrier_id"]),
            "Lane": lane(stale),
            "Mode": stale["mode"],
            "Status": stale["delivery_status"].map(status_label),
            "Departed": stale["departed_at"],
        }
    )
    st.dataframe(
        coloured(view, ["Status"]),
        hide_index=True,
        height=min(360, 38 + 35 * len(view)),
        column_config={
            "Shipment": SHIPMENT_LINK,
            "Wall minutes": st.column_config.NumberColumn(
                "Silent (wall min)", format="%.1f", help="Minutes of wall-clock time"
            ),
            "Last position": st.column_config.DatetimeColumn(
                "Last position (UTC)", format="DD MMM HH:mm:ss", help="Empty: none since departure"
            ),
            "Departed": st.column_config.DatetimeColumn("Departed (UTC)", format="DD MMM HH:mm"),
        },
    )


def eta_confidence(filters: Filters) -> None:
    st.subheader("ETA confidence per lane")
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    min_history = int(
        left.number_input(
            "Deliveries needed per lane",
            min_value=1,
            max_value=1000,
            value=MIN_HISTORY_DEFAULT,
            step=1,
            key="eta_min_history",
            help="Lanes with fewer delivered shipments are listed apart: too few for percentiles.",
        )
    )
    right.caption(
        "From delivered shipments: actual transit time (arrival − departure) as P50 and P90, "
        "against the shipments' own plans (median of planned arrival − planned departure), and "
        "the share that arrived within the on-time tolerance. A wide P50–P90 range or a low "
        "on-time share means an ETA on that lane deserves a buffer."
    )
    lanes = queries.lane_transit(filters)
    if lanes.empty:
        components.empty_state(
            "No delivered shipment for these filters yet: the confidence per lane is learnt from "
            "delivered history, and fills in as shipments are received."
        )
        return
    enough = lanes[lanes["delivered"] >= min_history].reset_index(drop=True)
    few = lanes[lanes["delivered"] < min_history]
    if enough.empty:
        components.empty_state(
            f"Too little history: no lane has {number(min_history)} deliveries yet (the most is "
            f"{number(lanes['delivered'].max())}, on {number(len(lanes))} lanes with any). "
            "Lower the number needed, or wait for more deliveries."
        )
    else:
        charted = enough.head(LANES_CHARTED)
        st.plotly_chart(timeline.lane_confidence_figure(charted), width="stretch")
        st.caption(
            (
                f"The {number(len(charted))} lanes with the most deliveries (all "
                f"{number(len(enough))} in the table). "
                if len(enough) > len(charted)
                else ""
            )
            + "Bars: P50 to P90 of transit time; dot: P50; black tick: plan. On time: green from "
            f"{timeline.CONFIDENT_SHARE:.0%}, orange from {timeline.SHAKY_SHARE:.0%}, red below."
        )
        planned = enough["planned_hours"].where(enough["planned_hours"] > 0)
        view = pd.DataFrame(
            {
                "Lane": timeline.lane_label(enough),
                "Delivered": enough["delivered"],
                "Planned": enough["planned_hours"],
                "P50": enough["p50_hours"],
                "P90": enough["p90_hours"],
                "P50 vs plan": (enough["p50_hours"] / planned - 1) * 100,
                "P90 vs plan": (enough["p90_hours"] / planned - 1) * 100,
                "On time": enough["on_time_share"] * 100,
            }
        )
        hours = "%.2f h"
        st.dataframe(
            view,
            hide_index=True,
            height=min(400, 38 + 35 * len(view)),
            column_config={
                "Delivered": st.column_config.NumberColumn("Delivered", format="%d"),
                "Planned": st.column_config.NumberColumn("Planned (h)", format=hours),
                "P50": st.column_config.NumberColumn("P50 transit (h)", format=hours),
                "P90": st.column_config.NumberColumn("P90 transit (h)", format=hours),
                "P50 vs plan": st.column_config.NumberColumn("P50 vs plan (%)", format="%+.0f %%"),
                "P90 vs plan": st.column_config.NumberColumn("P90 vs plan (%)", format="%+.0f %%"),
                "On time": st.column_config.ProgressColumn(
                    "Arrived on time (%)", format="%.0f %%", min_value=0, max_value=100
                ),
            },
        )
    if not few.empty:
        shown = [
            f"{label} ({number(n)})"
            for label, n in zip(timeline.lane_label(few), few["delivered"], strict=True)
        ][:FEW_LANES_NAMED]
        more = f" and {number(len(few) - len(shown))} more" if len(few) > len(shown) else ""
        st.caption(
            f"{number(len(few))} lanes with fewer than {number(min_history)} deliveries, too "
            f"few to tell: {escape_markdown(', '.join(shown))}{more}."
        )


def distributions(filters: Filters) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Open exceptions by code")
        summary = queries.exception_summary(filters)
        if summary.empty:
            components.empty_state("No open exceptions for these filters.")
        else:
            st.plotly_chart(charts.exceptions_by_code(summary), width="stretch")
    with right:
        st.subheader("Delay at arrival by carrier")
        stats = queries.delay_by_carrier(filters)
        if stats.empty:
            components.empty_state("No shipment has arrived yet for these filters.")
        else:
            st.plotly_chart(
                charts.delay_by_carrier(stats, queries.tolerance_minutes()), width="stretch"
            )
            st.caption("Boxes: quartiles; whiskers: 5th and 95th percentile; dashed: tolerance.")


st.title("Delays & exceptions")
components.alerts_panel()
filters = components.current_filters()
try:
    headline(filters)
    components.status_legend()
    exception_queue(filters)
    late_table(filters)
    stale_trackers(filters)
    distributions(filters)
    eta_confidence(filters)
except queries.DataUnavailable as e:
    components.unavailable(e)
