"""Delays and exceptions: what needs a planner now, and which carriers run late."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, components, queries, theme
from dashboard.filters import Filters
from dashboard.formatting import number


def status_label(key: object) -> str:
    status = theme.STATUS_BY_KEY.get(key) if isinstance(key, str) else None
    return status.label if status else ""


def coloured(view: pd.DataFrame, columns: list[str]) -> pd.io.formats.style.Styler:
    """Status and severity cells in the shared palette (cells stay plain text)."""
    return view.style.map(theme.cell_css, subset=columns)


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
            "Shipment": queue["shipment_id"],
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
            "Shipment": late["shipment_id"],
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
            "Delay": st.column_config.NumberColumn("Delay (min)", format="%.0f"),
            "Planned arrival": st.column_config.DatetimeColumn(
                "Planned arrival (UTC)", format="DD MMM HH:mm"
            ),
            "ETA": st.column_config.DatetimeColumn("ETA (UTC)", format="DD MMM HH:mm"),
            "Tires": st.column_config.NumberColumn("Tires", format="%d"),
        },
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
filters = components.current_filters()
try:
    headline(filters)
    components.status_legend()
    exception_queue(filters)
    late_table(filters)
    distributions(filters)
except queries.DataUnavailable as e:
    components.unavailable(e)
