"""Live map: trucks by delivery status, sites by stock, lanes by tires in transit; replayable;
one shipment's path, summary and event timeline on demand."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import components, maps, queries, theme, timeline
from dashboard.filters import Filters
from dashboard.formatting import age, clock, delay_text, duration, escape_markdown, number, text

LIVE, REPLAY = "Live", "Replay"
REPLAY_DEFAULT_BACK = dt.timedelta(minutes=30)  # where the slider starts when replay is chosen
SHIPMENT_PARAM = "shipment"  # ?shipment=ID opens the map on that shipment
SHIPMENT_KEY = "map_shipment"
CONTRACT_STATUS = {
    "PLANNED": "Planned",
    "IN_TRANSIT": "In transit",
    "ARRIVED": "Arrived, not yet received",
    "DELIVERED": "Delivered",
    "CANCELLED": "Cancelled",
}


def replay_instant(mode: str | None) -> dt.datetime | None:
    """None for the live view, else the instant the replay slider points at (UTC)."""
    if mode != REPLAY:
        return None
    window = queries.replay_window()
    if window is None:
        components.empty_state("Nothing to replay yet: no events have been stored.")
        return None
    # The slider works in naive UTC; a minute's resolution is what a planner scrubs through.
    first = window.first.astimezone(dt.UTC).replace(tzinfo=None, second=0, microsecond=0)
    last = window.last.astimezone(dt.UTC).replace(tzinfo=None, second=0, microsecond=0)
    last = max(last, first + dt.timedelta(minutes=1))
    chosen = st.slider(
        "Replay as of (UTC)",
        min_value=first,
        max_value=last,
        value=max(first, last - REPLAY_DEFAULT_BACK),
        step=dt.timedelta(minutes=1),
        format="DD MMM HH:mm",
        key="replay_as_of",
    )
    st.caption(f"Events stored from {clock(window.first)} to {clock(window.last)}.")
    return chosen.replace(tzinfo=dt.UTC)


LABEL_SEPARATOR = " · "


def choice_label(row: pd.Series) -> str:
    """What the search box shows and matches: id, lane and carrier. Only plan fields, so that
    the label stays the same while the shipment moves (the box remembers a choice by label)."""
    return LABEL_SEPARATOR.join(
        [
            str(row["shipment_id"]),
            f"{text(row['origin_city'])} → {text(row['destination_city'])}",
            text(row["carrier_name"], text(row["carrier_id"])),
        ]
    )


def chosen_id(value: object) -> str | None:
    """The shipment id of the box's value. When a label changes after the choice (a re-plan),
    the browser hands back the old label instead of the option: its first part is the id."""
    if not isinstance(value, str) or not value:
        return None
    return value.split(LABEL_SEPARATOR, 1)[0]


def choose_shipment(filters: Filters, as_of: dt.datetime | None) -> str | None:
    """A searchable box of the shipments open at T, kept in the URL (`?shipment=`). A shipment
    opened by a link stays selectable while it exists, open or not, filtered or not."""
    try:
        choices = queries.open_shipments(filters, as_of)
        labels = {str(row["shipment_id"]): choice_label(row) for _, row in choices.iterrows()}
        if SHIPMENT_KEY not in st.session_state:  # first run of this page: seed from the URL
            wanted = st.query_params.get(SHIPMENT_PARAM)
            if wanted and wanted not in labels and queries.shipment(wanted) is None:
                st.warning(f"No shipment {escape_markdown(wanted)} in the database.", icon="🔎")
                wanted = None
            st.session_state[SHIPMENT_KEY] = wanted or None
        current = chosen_id(st.session_state.get(SHIPMENT_KEY))
        if current != st.session_state.get(SHIPMENT_KEY):
            st.session_state[SHIPMENT_KEY] = current
        if current is not None and current not in labels:  # not open at T, or filtered out
            row = queries.shipment(current, as_of)
            row = queries.shipment(current) if row is None else row
            labels = {current: current if row is None else choice_label(row)} | labels
    except queries.DataUnavailable as e:
        components.unavailable(e)
        return None
    chosen = chosen_id(
        st.selectbox(
            "Shipment",
            list(labels),
            key=SHIPMENT_KEY,
            index=None,
            format_func=lambda shipment_id: labels.get(shipment_id, shipment_id),
            placeholder=f"Find one of {number(len(choices))} open shipments: id, city or carrier",
            filter_mode="contains",
            label_visibility="collapsed",
        )
    )
    if chosen:
        if st.query_params.get(SHIPMENT_PARAM) != chosen:
            st.query_params[SHIPMENT_PARAM] = chosen
    elif SHIPMENT_PARAM in st.query_params:
        del st.query_params[SHIPMENT_PARAM]
    return chosen


def network_map(filters: Filters, as_of: dt.datetime | None, shipment_id: str | None) -> None:
    try:
        trucks = queries.trucks(filters, as_of)
        sites = queries.sites(filters, as_of)
        lanes = queries.lanes(filters, as_of)
        summary = events = None
        if shipment_id is not None:
            summary = queries.shipment(shipment_id, as_of)
            events = queries.shipment_events(shipment_id, as_of) if summary is not None else None
    except queries.DataUnavailable as e:
        components.unavailable(e)
        return
    counts = trucks["delivery_status"].value_counts()
    columns = st.columns(6)
    columns[0].metric("Trucks on the road", number(len(trucks)))
    statuses = (theme.ON_TIME, theme.AT_RISK, theme.LATE, theme.EXCEPTION)
    for column, status in zip(columns[1:5], statuses, strict=True):
        column.metric(status.marker, number(counts.get(status.key, 0)), help=status.meaning)
    columns[5].metric("Tires in transit", number(lanes["in_transit"].sum() if len(lanes) else 0))
    focus = (
        maps.shipment_focus(summary, events) if summary is not None and events is not None else None
    )
    st.pydeck_chart(
        maps.live_map_deck(trucks, sites, lanes, focus=focus),
        height=640,
        key="network_map",
        alt="Map of the tire network: trucks, sites and lanes",
    )
    if trucks.empty:
        components.empty_state(
            "No truck on the road matches the filters"
            + (f" as of {clock(as_of)}." if as_of else ".")
        )
    components.map_legend()
    if shipment_id is None:
        st.caption("Choose a shipment above to see its path, its summary and every event.")
    elif summary is None or events is None:
        components.empty_state(
            f"Shipment {escape_markdown(shipment_id)} has no event yet"
            + (f" as of {clock(as_of)}." if as_of else ".")
        )
    else:
        shipment_detail(summary, events, as_of)


def short_time(value: object, reference: dt.datetime) -> str:
    """'10:38', or '27 Nov 10:38' on another day than the reference (UTC; metric-sized)."""
    if pd.isna(value):
        return "—"
    instant = pd.Timestamp(value).tz_convert("UTC")
    same_day = instant.date() == reference.astimezone(dt.UTC).date()
    return instant.strftime("%H:%M" if same_day else "%d %b %H:%M")


def versus_plan(instant: object, planned: object) -> str | None:
    """'+9 min vs plan' or '-4 min vs plan' (the sign drives the metric's arrow)."""
    if pd.isna(instant) or pd.isna(planned):
        return None
    minutes = (pd.Timestamp(instant) - pd.Timestamp(planned)).total_seconds() / 60
    if abs(minutes) < 0.5 / 60:
        return None
    return f"{'+' if minutes > 0 else '-'}{duration(minutes)} vs plan"


def shipment_summary(summary: pd.Series, as_of: dt.datetime | None) -> None:
    """Who, what and how late: status, carrier, lane, lines, ETA against the plan, delay."""
    at = as_of or dt.datetime.now(dt.UTC)
    status = theme.STATUS_BY_KEY.get(text(summary["delivery_status"], "no_plan"), theme.NO_PLAN)
    contract_status = text(summary["status"], "")
    st.subheader(
        f"{escape_markdown(str(summary['shipment_id']))}: "
        f"{escape_markdown(text(summary['origin_city']))} → "
        f"{escape_markdown(text(summary['destination_city']))}",
        anchor=False,
    )
    badges = [f":gray-badge[{CONTRACT_STATUS.get(contract_status, 'No plan yet')}]"]
    if contract_status != "CANCELLED":
        badges.insert(0, f":{status.color_name}-badge[● {status.label}]")
    carrier = text(summary["carrier_name"], text(summary["carrier_id"]))
    st.markdown(
        " ".join(badges) + f" {escape_markdown(carrier)} · {escape_markdown(text(summary['mode']))}"
    )
    arrived = not pd.isna(summary["arrived_at"])
    expected = summary["arrived_at"] if arrived else summary["eta"]
    delivered = summary["delivered_quantity"]
    columns = st.columns(4)
    columns[0].metric(
        "Arrived (UTC)" if arrived else "ETA (UTC)",
        short_time(expected, at),
        versus_plan(expected, summary["planned_arrival"]),
        delta_color="inverse",
        help=f"{clock(expected)}"
        + (
            ""
            if arrived or pd.isna(summary["eta_reason"])
            else f" · {escape_markdown(str(summary['eta_reason']))}"  # a tooltip is markdown
        ),
    )
    columns[1].metric(
        "Planned arrival (UTC)",
        short_time(summary["planned_arrival"], at),
        help=clock(summary["planned_arrival"]),
    )
    columns[2].metric(
        "Delay",
        delay_text(summary["delay_minutes"]),
        help="The contract's delay: arrival, else the later of ETA and now, minus planned arrival.",
    )
    columns[3].metric(
        "Tires delivered" if not pd.isna(delivered) else "Tires planned",
        number(delivered if not pd.isna(delivered) else summary["planned_quantity"]),
    )
    facts = [
        f"**From** {escape_markdown(text(summary['origin_name']))}"
        f" **to** {escape_markdown(text(summary['destination_name']))}",
        f"**Load** {escape_markdown(timeline.lines_text(summary['planned_lines']))}",
    ]
    if not pd.isna(delivered):
        damaged = summary["damaged_quantity"]
        facts.append(
            f"**Received** {escape_markdown(timeline.lines_text(summary['delivered_lines']))}"
            + ("" if pd.isna(damaged) else f", {number(damaged)} damaged")
        )
    if pd.isna(summary["last_position_at"]):
        facts.append("**Last position** none reported yet")
    else:
        speed = summary["last_speed_kmh"]
        facts.append(
            f"**Last position** {age(summary['last_position_at'].to_pydatetime(), at)} "
            f"({clock(summary['last_position_at'])}) at "
            f"{float(summary['last_lat']):.4f}, {float(summary['last_lon']):.4f}"
            + ("" if pd.isna(speed) else f", {float(speed):.0f} km/h")
        )
    if not pd.isna(summary["last_exception_code"]):
        severity = text(summary["last_exception_severity"], "info")
        colour = theme.SEVERITY_COLOR_NAME.get(severity, "gray")
        message = text(summary["last_exception_message"], "")
        facts.append(
            f"**Latest exception** :{colour}[**{escape_markdown(severity.upper())}** "
            f"{escape_markdown(text(summary['last_exception_code']))}]"
            + (f" {escape_markdown(message)}" if message else "")
            + f" ({clock(summary['last_exception_at'])}; "
            f"{number(summary['exception_count'])} in all)"
        )
    st.markdown("  \n".join(facts))


def shipment_detail(summary: pd.Series, events: pd.DataFrame, as_of: dt.datetime | None) -> None:
    """Summary, then every event: on a time axis over the ETA's drift, and in a table."""
    st.divider()
    shipment_summary(summary, as_of)
    st.plotly_chart(
        timeline.timeline_figure(
            events,
            planned_departure=summary["planned_departure"],
            planned_arrival=summary["planned_arrival"],
            tolerance_minutes=None
            if pd.isna(summary["tolerance_minutes"])
            else float(summary["tolerance_minutes"]),
            eta=summary["eta"] if pd.isna(summary["arrived_at"]) else None,
            revision=str(summary["shipment_id"]),
        ),
        width="stretch",
        key="shipment_timeline",
    )
    table = timeline.events_table(events)
    st.caption(
        f"{number(len(table))} events up to {clock(as_of) if as_of else 'now'}, newest first "
        "(duplicates are stored once; order is event time, whatever the arrival order)."
    )
    st.dataframe(
        table.style.map(theme.cell_css, subset=["Severity"]),
        hide_index=True,
        height=320,
        column_config={
            "Time": st.column_config.DatetimeColumn("Time (UTC)", format="DD MMM HH:mm:ss"),
            "Details": st.column_config.TextColumn("Details", width="large"),
        },
    )


st.title("Live map")
components.alerts_panel()
filters = components.current_filters()
view_column, search_column = st.columns([1, 3], vertical_alignment="center")
mode = view_column.segmented_control(
    "View", [LIVE, REPLAY], default=LIVE, key="map_mode", label_visibility="collapsed"
)
as_of = replay_instant(mode)
with search_column:  # filled after the slider: the choice depends on the replay instant
    shipment_id = choose_shipment(filters, as_of)
if as_of is None:
    caption = f"The network now; refreshes every {queries.REFRESH_SECONDS} s."
else:
    caption = f"The network as it was on {clock(as_of)} (replay: positions, statuses, stock)."
if filters.plant or filters.distributor:
    caption += " Plant and distributor keep trucks by origin and destination, sites of their kind."
if filters.segment or filters.sku:
    caption += (
        " Segment and SKU keep trucks with a line of a chosen SKU (lanes count their whole "
        "load); site sizes count only those SKUs."
    )
st.caption(caption)
# Live: a fragment on a timer, so only the map refreshes and zoom and pan survive.
st.fragment(run_every=queries.REFRESH_SECONDS if as_of is None else None)(network_map)(
    filters, as_of, shipment_id
)
