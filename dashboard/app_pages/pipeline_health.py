"""Pipeline health: freshness, throughput, Kafka positions, rejected messages and data quality."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, components, queries
from dashboard.formatting import age, duration, number, rate


def freshness_metrics(stats: pd.Series, positions: pd.DataFrame) -> None:
    now = stats["checked_at"]
    last_event = None if pd.isna(stats["last_event_at"]) else stats["last_event_at"]
    last_batch = None if pd.isna(stats["last_batch_at"]) else stats["last_batch_at"]
    columns = st.columns(4)
    columns[0].metric(
        "Freshness",
        duration((now - last_event).total_seconds() / 60) if last_event is not None else "—",
        help="Worker clock minus the newest event time stored.",
    )
    columns[1].metric("Last batch", age(last_batch, now))
    columns[2].metric(
        "Ingest rate",
        rate(stats["accepted_per_s"], " ev/s"),
        help="Accepted events per second over the last minute.",
    )
    columns[3].metric(
        "Kafka lag",
        number(positions["lag"].sum() if len(positions) else 0),
        help="Messages not yet read, summed over partitions (as far as the broker reports it).",
    )


def counters(stats: pd.Series) -> None:
    columns = st.columns(6)
    columns[0].metric("Messages", number(stats["messages"]))
    columns[1].metric("Accepted", number(stats["accepted"]))
    columns[2].metric("Duplicates", number(stats["duplicates"]))
    columns[3].metric("Rejected", number(stats["rejected"]))
    columns[4].metric("Out of order", number(stats["out_of_order"]))
    columns[5].metric("Unknown references", number(stats["unknown_references"]))


def partitions(positions: pd.DataFrame) -> None:
    st.subheader("Kafka positions")
    if positions.empty:
        components.empty_state("The worker has not read any partition yet.")
        return
    left, right = st.columns([1, 1])
    left.plotly_chart(charts.partition_progress(positions), width="stretch")
    right.dataframe(
        positions,
        hide_index=True,
        column_config={
            "topic": "Topic",
            "partition": st.column_config.NumberColumn("Partition", format="%d"),
            "next_offset": st.column_config.NumberColumn("Next offset", format="%d"),
            "high_watermark": st.column_config.NumberColumn("High watermark", format="%d"),
            "lag": st.column_config.NumberColumn("Lag (messages)", format="%d"),
            "at_end_since": st.column_config.DatetimeColumn(
                "At end since (UTC)", format="HH:mm:ss"
            ),
            "updated_at": st.column_config.DatetimeColumn("Updated (UTC)", format="HH:mm:ss"),
        },
    )


def rejected() -> None:
    st.subheader("Rejected messages")
    reasons = queries.dead_letter_reasons()
    if reasons.empty:
        components.empty_state("No message has been rejected.")
        return
    st.caption("Most frequent reasons")
    st.dataframe(
        reasons,
        hide_index=True,
        column_config={
            "reason": st.column_config.TextColumn("Reason", width="large"),
            "messages": st.column_config.NumberColumn("Messages", format="%d"),
            "latest": st.column_config.DatetimeColumn("Latest (UTC)", format="DD MMM HH:mm:ss"),
        },
    )
    st.caption("Latest dead letters (the original value as received, shown as plain text)")
    # st.dataframe renders every cell as text: a message can never inject HTML or markdown.
    st.dataframe(
        queries.dead_letters(),
        hide_index=True,
        column_config={
            "received_at": st.column_config.DatetimeColumn("Received (UTC)", format="HH:mm:ss"),
            "topic": "Topic",
            "partition": st.column_config.NumberColumn("Partition", format="%d"),
            "offset": st.column_config.NumberColumn("Offset", format="%d"),
            "reason": st.column_config.TextColumn("Reason", width="medium"),
            "value_text": st.column_config.TextColumn("Value", width="large"),
            "value_bytes": st.column_config.NumberColumn("Bytes", format="%d"),
        },
    )


def data_quality() -> None:
    st.subheader("Unknown references")
    issues = queries.data_quality_issues()
    if issues.empty:
        components.empty_state("Every site, SKU and carrier referenced so far is known.")
        return
    st.caption("Accepted events naming a site, SKU or carrier missing from the reference data.")
    st.dataframe(
        issues,
        hide_index=True,
        column_config={
            "field": "Field",
            "value": st.column_config.TextColumn("Value"),
            "events": st.column_config.NumberColumn("Events", format="%d"),
            "latest": st.column_config.DatetimeColumn("Latest (UTC)", format="DD MMM HH:mm:ss"),
        },
    )


@st.fragment(run_every=queries.REFRESH_SECONDS)
def live_figures() -> None:
    try:
        stats = queries.ingest_stats()
        positions = queries.kafka_positions()
    except queries.DataUnavailable as e:
        components.unavailable(e)
        return
    freshness_metrics(stats, positions)
    counters(stats)
    partitions(positions)


st.title("Pipeline health")
components.alerts_panel()
live_figures()
try:
    rejected()
    data_quality()
except queries.DataUnavailable as e:
    components.unavailable(e)
