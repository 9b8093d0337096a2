"""Live map: trucks by delivery status, sites by stock, lanes by tires in transit; replayable."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from dashboard import components, maps, queries, theme
from dashboard.filters import Filters
from dashboard.formatting import clock, number

LIVE, REPLAY = "Live", "Replay"
REPLAY_DEFAULT_BACK = dt.timedelta(minutes=30)  # where the slider starts when replay is chosen


def replay_instant() -> dt.datetime | None:
    """None for the live view, else the instant the replay slider points at (UTC)."""
    mode = st.segmented_control(
        "View", [LIVE, REPLAY], default=LIVE, key="map_mode", label_visibility="collapsed"
    )
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


def network_map(filters: Filters, as_of: dt.datetime | None) -> None:
    try:
        trucks = queries.trucks(filters, as_of)
        sites = queries.sites(filters, as_of)
        lanes = queries.lanes(filters, as_of)
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
    st.pydeck_chart(
        maps.live_map_deck(trucks, sites, lanes),
        height=640,
        key="network_map",
        alt="Map of the tire network: trucks, sites and lanes",
    )
    if trucks.empty:
        components.empty_state(
            "No truck on the road matches the filters"
            + (f" as of {clock(as_of)}." if as_of else ".")
        )


st.title("Live map")
filters = components.current_filters()
as_of = replay_instant()
if as_of is None:
    st.caption(f"The network now; refreshes every {queries.REFRESH_SECONDS} s.")
else:
    st.caption(f"The network as it was on {clock(as_of)} (replay: positions, statuses, stock).")
# Live: a fragment on a timer, so only the map refreshes and zoom and pan survive.
st.fragment(run_every=queries.REFRESH_SECONDS if as_of is None else None)(network_map)(
    filters, as_of
)
components.map_legend()
