"""KPIs for managers: on-time rate, OTIF, in transit, throughput, transit vs plan, carriers."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import components, flows, kpi_queries, queries
from dashboard.filters import Filters
from dashboard.formatting import clock, delay_text, escape_markdown, missing, number
from dashboard.kpi_queries import Period

MEASURED_AT_KEY = "kpi_measured_at"  # T of the numbers shown (read by tests, kept for reuse)


def headline(filters: Filters, period: Period, as_of: dt.datetime) -> pd.Series:
    kpis = kpi_queries.period_kpis(filters, period, as_of).set_index("period")
    now, before = kpis.loc["current"], kpis.loc["previous"]
    road = kpi_queries.in_transit(filters, period, as_of).set_index("moment")
    ago = f"vs {period.label} ago"
    prior = f"vs the {period.label} before"
    # Counts compare only with a moment the stored events cover (not "+275 vs nothing yet").
    road_before = road.loc["earlier"] if road.loc["earlier", "covered"] else None
    counts_before = before if before["covered"] else None

    first = st.columns(4)
    tile(
        first[0],
        "On-time rate",
        flows.rate_text(now["on_time_rate"]),
        flows.rate_delta(now["on_time_rate"], before["on_time_rate"]),
        prior,
        explain=(
            f"{number(now['on_time'])} on time of {number(now['judged'])} judged: "
            f"{number(now['arrived'])} arrived + {number(now['overdue_open'])} overdue and "
            f"still open. Tolerance {now['tolerance_minutes']:g} min."
        ),
    )
    tile(
        first[1],
        "OTIF",
        flows.rate_text(now["otif_rate"]),
        flows.rate_delta(now["otif_rate"], before["otif_rate"]),
        prior,
        explain=(
            f"{number(now['otif'])} delivered on time and in full of {number(now['judged'])} "
            "judged (the on-time rate's denominator)."
        ),
    )
    tile(
        first[2],
        "Shipments in transit",
        number(road.loc["now", "shipments"]),
        flows.count_delta(road.loc["now", "shipments"], _get(road_before, "shipments")),
        ago,
        explain="Departed (or arrived at the gate) and not yet received or cancelled, now.",
        delta_color="off",
    )
    tile(
        first[3],
        "Tires in transit",
        number(road.loc["now", "tires"]),
        flows.count_delta(road.loc["now", "tires"], _get(road_before, "tires")),
        ago,
        explain="The planned lines of the shipments in transit, now.",
        delta_color="off",
    )
    second = st.columns(4)
    tile(
        second[0],
        "Shipments delivered",
        number(now["delivered_shipments"]),
        flows.count_delta(now["delivered_shipments"], _get(counts_before, "delivered_shipments")),
        prior,
        explain="Received at the destination in the period (by delivery time).",
    )
    tile(
        second[1],
        "Tires delivered",
        number(now["delivered_tires"]),
        flows.count_delta(now["delivered_tires"], _get(counts_before, "delivered_tires")),
        prior,
        explain="Tires received in good condition in the period (damaged tires not counted).",
    )
    over_now = _minutes(now["transit_over_plan_hours"])
    tile(
        second[2],
        "Transit vs plan",
        delay_text(over_now) if over_now is not None else "—",
        flows.minutes_delta(over_now, _minutes(before["transit_over_plan_hours"])),
        prior,
        explain=(
            "Average of actual transit (departure to arrival) minus planned transit (planned "
            "departure to planned arrival) over the period's arrived shipments."
        ),
        delta_color="inverse",
    )
    tile(
        second[3],
        "Exceptions per 100 shipments",
        flows.per_100_text(now["exceptions_per_100"]),
        flows.per_100_delta(now["exceptions_per_100"], before["exceptions_per_100"]),
        prior,
        explain="Exception events reported for the period's shipments, per 100 shipments.",
        delta_color="inverse",
    )
    if now["judged"] == 0:
        components.empty_state(
            f"No shipment was due in {period.words} (planned arrival between "
            f"{clock(now['starts'])} and {clock(now['ends'])}) and none is overdue, so there "
            "is no on-time rate or OTIF yet. Choose a longer period or clear the filters."
        )
    elif before["judged"] == 0 or not before["covered"]:
        st.caption(
            f"The stored events do not cover the whole {period.label} before "
            f"({clock(before['starts'])} to {clock(before['ends'])}): changes are shown only "
            "where there is something to compare with."
        )
    return now


def tile(
    column: DeltaGenerator,
    label: str,
    value: str,
    delta: str | None,
    compared_with: str,
    explain: str,
    delta_color: Literal["normal", "inverse", "off"] = "normal",
) -> None:
    """A bordered KPI tile; the change says what it compares with, or is left out."""
    column.metric(
        label,
        value,
        delta,
        delta_color=delta_color,
        help=explain,
        delta_description=compared_with if delta is not None else None,
        border=True,
        height="stretch",  # tiles of a row as tall as the tallest (some have no change)
    )


def _get(row: pd.Series | None, column: str) -> object:
    return None if row is None else row[column]


def _minutes(hours: Any) -> float | None:
    return None if missing(hours) else float(hours) * 60


def throughput(filters: Filters, period: Period, as_of: dt.datetime) -> None:
    st.subheader("Throughput")
    st.caption(f"Shipments and tires received per {period.bucket_label}, by delivery time.")
    buckets = kpi_queries.throughput(filters, period, as_of)
    if buckets["shipments"].sum() == 0:
        components.empty_state(
            f"Nothing was delivered in {period.words}: no throughput to show yet."
        )
        return
    st.plotly_chart(
        flows.throughput(buckets, period.bucket, period.bucket_label),
        width="stretch",
        key="kpi_throughput",
    )


def lane_transit(filters: Filters, period: Period, as_of: dt.datetime, tolerance: float) -> None:
    st.subheader("Transit time vs plan per lane")
    lanes = kpi_queries.lane_transit(filters, period, as_of)
    if lanes.empty:
        components.empty_state(
            f"No shipment due in {period.words} has arrived yet: no transit time to compare."
        )
        return
    st.caption(
        f"The {min(flows.TOP_LANES, len(lanes))} lanes furthest over plan of {len(lanes)}: "
        "average and P90 of departure to arrival, against planned departure to planned arrival."
    )
    st.plotly_chart(flows.lane_transit(lanes, tolerance), width="stretch", key="kpi_lanes")
    with st.expander(f"All {len(lanes)} lanes"):
        unit = flows.lane_duration_unit(lanes)
        scale = unit.per_hour
        view = pd.DataFrame(
            {
                "Lane": [
                    flows.lane_label(o, d)
                    for o, d in zip(lanes["origin_city"], lanes["destination_city"], strict=True)
                ],
                "Mode": lanes["mode"],
                "Arrived": lanes["shipments"],
                "On time": lanes["on_time"],
                "Average": lanes["avg_hours"] * scale,
                "P90": lanes["p90_hours"] * scale,
                "Plan": lanes["planned_hours"] * scale,
                "Over plan": lanes["over_plan_hours"] * 60,
            }
        )
        st.dataframe(
            view,
            hide_index=True,
            column_config={
                "Arrived": st.column_config.NumberColumn("Arrived", format="%d"),
                "On time": st.column_config.NumberColumn("On time", format="%d"),
                "Average": st.column_config.NumberColumn(f"Average ({unit.label})", format="%.2f"),
                "P90": st.column_config.NumberColumn(f"P90 ({unit.label})", format="%.2f"),
                "Plan": st.column_config.NumberColumn(f"Plan ({unit.label})", format="%.2f"),
                "Over plan": st.column_config.NumberColumn("Over plan (min)", format="%+.1f"),
            },
        )


def scorecard(filters: Filters, period: Period, as_of: dt.datetime) -> None:
    st.subheader("Carrier scorecard")
    cards = kpi_queries.carrier_scorecard(filters, period, as_of)
    if cards.empty:
        components.empty_state(f"No carrier had a shipment due in {period.words}.")
        return
    st.caption(
        f"Shipments due in {period.words}, the lowest on-time rate first. Judged = arrived + "
        "overdue and still open (the rates' denominator)."
    )
    change = (cards["on_time_rate"] - cards["previous_on_time_rate"]) * 100
    view = pd.DataFrame(
        {
            "Carrier": cards["carrier_name"].fillna(cards["carrier_id"]),
            "Shipments": cards["shipments"],
            "Judged": cards["judged"],
            "On-time rate": cards["on_time_rate"] * 100,
            "Change": change,
            "OTIF": cards["otif_rate"] * 100,
            "Avg delay": cards["avg_delay_minutes"],
            "Exceptions / 100": cards["exceptions_per_100"],
        }
    )
    st.dataframe(
        view,
        hide_index=True,
        width="stretch",
        column_config={
            "Shipments": st.column_config.NumberColumn("Shipments", format="%d"),
            "Judged": st.column_config.NumberColumn("Judged", format="%d"),
            "On-time rate": st.column_config.ProgressColumn(
                "On-time rate", format="%.1f %%", min_value=0, max_value=100
            ),
            "Change": st.column_config.NumberColumn(
                "Change (pts)",
                format="%+.1f",
                help=f"Against the {period.label} before.",
            ),
            "OTIF": st.column_config.ProgressColumn(
                "OTIF", format="%.1f %%", min_value=0, max_value=100
            ),
            "Avg delay": st.column_config.NumberColumn(
                "Avg delay (min)", format="%+.1f", help="At arrival, of the arrived shipments."
            ),
            "Exceptions / 100": st.column_config.NumberColumn(
                "Exceptions / 100", format="%.1f", help="Exceptions per 100 shipments."
            ),
        },
    )


st.title("KPIs")
filters = components.current_filters()
period = components.period_control(
    "Period",
    "period",
    "Shipments count in a period by their planned arrival; see the definitions below.",
)
try:
    as_of = kpi_queries.measured_at(queries.freshness().checked_at)
    st.session_state[MEASURED_AT_KEY] = as_of
    note = " The status filter does not apply here: KPIs measure status." if filters.status else ""
    if filters.segment or filters.sku:
        note += " Segment and SKU keep shipments with a line of a chosen SKU, counted whole."
    st.caption(
        f"Shipments due in {period.words} up to {clock(as_of, seconds=True)}, compared with "
        f"the {period.label} before.{escape_markdown(note)}",
        help=kpi_queries.PERIOD_DEFINITION,
    )
    now = headline(filters, period, as_of)
    left, right = st.columns(2)
    with left:
        throughput(filters, period, as_of)
    with right:
        lane_transit(filters, period, as_of, float(now["tolerance_minutes"]))
    scorecard(filters, period, as_of)
    with st.expander("How these KPIs are defined"):
        st.markdown(kpi_queries.PERIOD_DEFINITION)
except queries.DataUnavailable as e:
    components.unavailable(e)
