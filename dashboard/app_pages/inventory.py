"""Inventory flows: tires between sites, stock over time, tires on the road, distributors' cover."""

from __future__ import annotations

import datetime as dt
import zlib

import pandas as pd
import streamlit as st

from dashboard import components, flows, inventory_queries, kpi_queries, queries, theme
from dashboard.filters import Filters, matching_skus, site_matches
from dashboard.formatting import clock, duration, number
from dashboard.kpi_queries import Period
from ingest.network import Network

MEASURED_AT_KEY = "inventory_measured_at"  # T of the numbers shown (read by tests)


def flow_section(filters: Filters, window: Period, as_of: dt.datetime) -> None:
    st.subheader("Flows: plant → distribution centre → distributor")
    key = st.segmented_control(
        "Count",
        [m.key for m in inventory_queries.FLOW_MEASURES],
        default="delivered",
        format_func=lambda k: inventory_queries.FLOW_MEASURE_BY_KEY[k].label,
        key="flow_measure",
        required=True,
        label_visibility="collapsed",
    )
    measure = inventory_queries.FLOW_MEASURE_BY_KEY.get(
        str(key), inventory_queries.FLOW_MEASURES[0]
    )
    links = inventory_queries.flows(filters, window, as_of, measure)
    st.caption(
        f"Link width: {measure.meaning}, in {window.words} (to {clock(as_of)}). "
        "Filters: region (origin or destination), plant (origin), distributor (destination), "
        "carrier, mode; segment and SKU keep shipments with a line of a chosen SKU, counted "
        "whole."
    )
    if links.empty:
        components.empty_state(
            f"No tires were {measure.label.lower()} in {window.words}"
            + ("" if filters.is_empty() else " for these filters")
            + ". Choose a longer window or clear the filters."
        )
        return
    inbound = links[links["destination_kind"] == "dc"]
    outbound = links[links["destination_kind"] == "distributor"]
    columns = st.columns(4)
    columns[0].metric(f"Tires {measure.label.lower()}", number(links["tires"].sum()), border=True)
    columns[1].metric("Plants → DCs", number(inbound["tires"].sum()), border=True)
    columns[2].metric("DCs → distributors", number(outbound["tires"].sum()), border=True)
    columns[3].metric("Shipments", number(links["shipments"].sum()), border=True)
    st.plotly_chart(flows.sankey(links, measure.label), width="stretch", key="inventory_sankey")


def _site_label(network: Network, site_id: str) -> str:
    site = network.sites.get(site_id)
    if site is None:
        return site_id
    return f"{site.name} · {theme.SITE_KIND_LABEL.get(site.kind, site.kind)}, {site.city}"


def sku_choice_key(site_id: str, filters: Filters) -> str:
    """Each site remembers its own SKU choice, once per set of SKUs the filters offer (a
    widget's remembered values must stay among its options)."""
    if not (filters.segment or filters.sku):
        return f"stock_skus_{site_id}"
    offered = ",".join((*filters.segment, *filters.sku))
    return f"stock_skus_{site_id}_{zlib.crc32(offered.encode()):08x}"


def history_section(filters: Filters, window: Period, as_of: dt.datetime) -> None:
    st.subheader("Stock on hand over time")
    network = queries.reference_network()
    kind_rank = {"plant": 0, "dc": 1, "distributor": 2}
    sites = sorted(
        (s for s in network.sites.values() if site_matches(filters, s)),
        key=lambda s: (kind_rank.get(s.kind, 3), s.name),
    )
    if not sites:
        components.empty_state("No site matches the chosen region, plant and distributor.")
        return
    site_ids = [s.site_id for s in sites]
    default = next((s.site_id for s in sites if s.kind == "dc"), site_ids[0])
    left, right = st.columns([2, 3])
    chosen_site = left.selectbox(
        "Site",
        site_ids,
        index=site_ids.index(default),
        format_func=lambda sid: _site_label(network, sid),
        key="stock_site",
    )
    site_id = str(chosen_site) if chosen_site in site_ids else default
    stock = inventory_queries.site_stock(site_id)
    all_skus = list(matching_skus(filters, network))
    top = [sku for sku in stock["sku"] if sku in all_skus][: inventory_queries.HISTORY_SKUS]
    skus = right.multiselect(
        "SKUs",
        all_skus,
        default=top,
        key=sku_choice_key(site_id, filters),
        format_func=lambda sku: f"{sku} ({network.skus[sku].segment})",
        placeholder="Choose SKUs",
        help=f"Starts with the site's {inventory_queries.HISTORY_SKUS} largest stocks now.",
    )
    chosen = [sku for sku in all_skus if sku in set(skus)]  # whitelist, stable order
    if not chosen:
        components.empty_state(
            f"No count or stock movement recorded at {_site_label(network, site_id)} yet."
            if stock.empty
            else "Choose at least one SKU to draw its stock over time."
        )
        return
    ends = inventory_queries.history_ends(as_of, window)
    history = inventory_queries.stock_history(site_id, chosen, ends)
    if history.empty or history["on_hand"].isna().all():
        components.empty_state(
            f"No count or stock movement of these SKUs at {_site_label(network, site_id)} "
            f"up to {clock(as_of)}."
        )
        return
    st.plotly_chart(
        flows.stock_history(
            history, {sku: f"{sku} · {network.skus[sku].description}" for sku in chosen}
        ),
        width="stretch",
        key="inventory_history",
    )
    st.caption(
        f"On hand every {duration(window.step.total_seconds() / 60)} over {window.words}: the "
        "latest count plus every movement after it (production, sales, departures, deliveries, "
        "returns). A line starts at the SKU's first count or movement. Filters: region, plant "
        "and distributor narrow the sites; segment and SKU the SKUs offered."
    )


def in_transit_section(filters: Filters) -> None:
    st.subheader("In transit per lane and SKU")
    lanes = inventory_queries.in_transit_lanes(filters)
    if lanes.empty:
        components.empty_state(
            "No tires are on the road right now"
            + ("" if filters.is_empty() else " for these filters")
            + "."
        )
        return
    lane_count = len(lanes[["origin_site_id", "destination_site_id"]].drop_duplicates())
    columns = st.columns(3)
    columns[0].metric("Tires in transit", number(lanes["tires"].sum()), border=True)
    columns[1].metric("Lanes with tires on the road", number(lane_count), border=True)
    columns[2].metric("SKUs on the road", number(lanes["sku"].nunique()), border=True)
    left, right = st.columns(2)
    with left:
        st.caption(
            f"The {min(flows.TOP_LANES, lane_count)} lanes with the most tires on the road now, "
            "by tire segment."
        )
        st.plotly_chart(
            flows.in_transit_by_lane(lanes, flows.TOP_LANES),
            width="stretch",
            key="inventory_transit",
        )
    with right:
        st.caption(
            "Every lane and SKU: planned lines of shipments departed and not received. Every "
            "filter applies; segment and SKU keep only the lines of the chosen SKUs."
        )
        view = pd.DataFrame(
            {
                "Lane": [
                    flows.lane_label(o, d)
                    for o, d in zip(lanes["origin_city"], lanes["destination_city"], strict=True)
                ],
                "SKU": lanes["sku"],
                "Tires": lanes["tires"],
                "Shipments": lanes["shipments"],
            }
        )
        st.dataframe(
            view,
            hide_index=True,
            width="stretch",
            height=440,
            column_config={
                "Tires": st.column_config.NumberColumn("Tires", format="%d"),
                "Shipments": st.column_config.NumberColumn("Shipments", format="%d"),
            },
        )


def cover_section(filters: Filters, as_of: dt.datetime) -> None:
    st.subheader("Days of supply at distributors")
    left, right, _ = st.columns([1, 1, 2])
    window_key = left.selectbox(
        "Average sales over",
        [p.key for p in kpi_queries.PERIODS],
        index=[p.key for p in kpi_queries.PERIODS].index("7d"),
        format_func=lambda k: f"the last {kpi_queries.PERIOD_BY_KEY[k].label}",
        key="cover_sales_window",
    )
    sales_window = kpi_queries.PERIOD_BY_KEY.get(str(window_key), kpi_queries.PERIOD_BY_KEY["7d"])
    threshold = right.number_input(
        "Highlight below (days)",
        min_value=0.0,
        max_value=365.0,
        value=inventory_queries.DEFAULT_COVER_THRESHOLD_DAYS,
        step=0.5,
        format="%.2f",
        key="cover_threshold",
    )
    cover = inventory_queries.days_of_supply(filters, sales_window, float(threshold), as_of)
    if cover.empty:
        components.empty_state(
            "No distributor has stock, tires on the way or sales yet"
            + ("" if filters.is_empty() else " for these filters")
            + "."
        )
        return
    span_days = float(cover["sales_window_days"].iloc[0])
    below = cover[cover["below_threshold"]]
    with_sales = cover[cover["days_of_supply"].notna()]
    columns = st.columns(3)
    columns[0].metric(
        "Below the threshold",
        f"{number(len(below))} of {number(len(with_sales))}",
        help="Distributor-SKU pairs with sales whose days of supply are below the threshold.",
        border=True,
    )
    columns[1].metric(
        "Median days of supply",
        "—" if with_sales.empty else f"{with_sales['days_of_supply'].median():.2f} d",
        help="Over the distributor-SKU pairs with sales in the window.",
        border=True,
    )
    columns[2].metric(
        "Distributors with a SKU below",
        number(below["site_id"].nunique()),
        border=True,
    )
    shorter = span_days * 86400 < sales_window.length.total_seconds() - 1
    st.caption(
        "Days of supply = (on hand + in transit to the distributor) / average daily sales "
        f"(tires sold in {sales_window.words}"
        + (
            f"; the stored history is shorter, so over its {duration(span_days * 1440)}"
            if shorter
            else ""
        )
        + f"). Rows below {threshold:g} days are highlighted; pairs without sales have no days "
        "of supply. Filters: region, distributor, segment, SKU; plant, carrier and mode do not "
        "apply (cover counts every tire on its way)."
    )
    view = pd.DataFrame(
        {
            "Distributor": cover["name"].fillna(cover["site_id"])
            + " ("
            + cover["city"].fillna("?")
            + ")",
            "SKU": cover["sku"],
            "On hand": cover["on_hand"],
            "In transit": cover["in_transit"],
            "Sales / day": cover["daily_sales"],
            "Days of supply": cover["days_of_supply"],
            "Cover": [
                flows.cover_text(days, stock)
                for days, stock in zip(
                    cover["days_of_supply"], cover["on_hand"] + cover["in_transit"], strict=True
                )
            ],
        }
    )
    flagged = cover["below_threshold"].tolist()
    highlight = f"background-color: {flows.rgba(theme.LATE.rgb, 0.12)}; color: {theme.LATE.hex}"
    st.dataframe(
        view.style.apply(lambda row: [highlight if flagged[row.name] else ""] * len(row), axis=1),
        hide_index=True,
        width="stretch",
        height=420,
        column_config={
            "On hand": st.column_config.NumberColumn("On hand", format="%d", help="Tires."),
            "In transit": st.column_config.NumberColumn(
                "In transit", format="%d", help="Tires on their way to the distributor."
            ),
            "Sales / day": st.column_config.NumberColumn(
                "Sales / day", format="%.1f", help="Average tires sold per day."
            ),
            "Days of supply": st.column_config.NumberColumn("Days of supply", format="%.2f"),
            "Cover": st.column_config.TextColumn(
                "Cover", help="Days of supply as a duration at the current sales rate."
            ),
        },
    )


st.title("Inventory flows")
components.alerts_panel()
filters = inventory_queries.site_filters(components.current_filters())
window = components.period_control(
    "Window", "window", "The span of the flows and of the stock history, ending now."
)
try:
    as_of = kpi_queries.measured_at(queries.freshness().checked_at)
    st.session_state[MEASURED_AT_KEY] = as_of
    if components.current_filters().status:
        st.caption("The status filter does not apply here: stock has no delivery status.")
    flow_section(filters, window, as_of)
    history_section(filters, window, as_of)
    in_transit_section(filters)
    cover_section(filters, as_of)
except queries.DataUnavailable as e:
    components.unavailable(e)
