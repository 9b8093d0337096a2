"""The dashboard's pure parts: map and chart builders, formatting, filters, SQL, theme, basemap."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from dashboard import charts, inventory_queries, kpi_queries, maps, queries, theme, timeline
from dashboard.components import describe_freshness
from dashboard.filters import (
    Filters,
    filter_options,
    from_query_params,
    matching_sites,
    matching_skus,
    to_query_params,
)
from dashboard.formatting import clock, delay_text, duration, escape_markdown, number
from ingest.network import load_network
from ingest.store import Store
from tests.browser.dashboard_db import store_events
from tests.unit.test_dashboard_kpis import EventLog, read_sql

REPO = Path(__file__).resolve().parents[2]
NOW = pd.Timestamp("2026-03-02 10:00", tz="UTC")


def trucks_frame(statuses: list[str | None]) -> pd.DataFrame:
    n = len(statuses)
    return pd.DataFrame(
        {
            "shipment_id": [f"S{i}" for i in range(n)],
            "status": ["IN_TRANSIT"] * n,
            "delivery_status": statuses,
            "carrier_id": ["CAR-NWS"] * n,
            "carrier_name": ["Nordwind Spedition GmbH"] * n,
            "mode": ["road"] * n,
            "origin_site_id": ["PLT-DE-HAN"] * n,
            "origin_city": ["Hannover"] * n,
            "destination_site_id": ["DC-DE-KSL"] * n,
            "destination_city": ["Kassel"] * n,
            "planned_arrival": [NOW] * n,
            "eta": [NOW + pd.Timedelta(minutes=75)] * n,
            "delay_minutes": [75.0] * n,
            "last_lat": [51.0 + i / 10 for i in range(n)],
            "last_lon": [9.5] * n,
            "last_position_at": [NOW] * n,
            "last_speed_kmh": [72.0] * n,
            "last_exception_code": (["BREAKDOWN"] + [None] * n)[:n],
            "last_exception_severity": (["critical"] + [None] * n)[:n],
            "last_exception_message": (["brake defect"] + [None] * n)[:n],
            "planned_quantity": [800] * n,
        }
    )


def sites_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "site_id": ["PLT-DE-HAN", "DC-DE-KSL", "DST-X"],
            "name": ["Hannover Plant", "Kassel DC", "Empty distributor"],
            "kind": ["plant", "dc", "distributor"],
            "city": ["Hannover", "Kassel", "Nowhere"],
            "country": ["DE", "DE", "DE"],
            "region": ["DACH"] * 3,
            "lat": [52.4, 51.3, 50.0],
            "lon": [9.7, 9.5, 8.0],
            "on_hand": [40_000, 10_000, 0],
            "skus": [12, 8, 0],
        }
    )


def lanes_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "origin_site_id": ["PLT-DE-HAN", "PLT-DE-HAN"],
            "destination_site_id": ["DC-DE-KSL", "DC-NL-VNL"],
            "origin_city": ["Hannover", "Hannover"],
            "destination_city": ["Kassel", "Venlo"],
            "origin_lat": [52.4, 52.4],
            "origin_lon": [9.7, 9.7],
            "destination_lat": [51.3, 51.4],
            "destination_lon": [9.5, 6.2],
            "in_transit": [4000, 1000],
            "shipments": [5, 1],
            "late_shipments": [1, 0],
        }
    )


# --- map ----------------------------------------------------------------------------------------


def test_trucks_are_coloured_by_delivery_status() -> None:
    keys = ["on_time", "at_risk", "late", "exception", None]
    records = maps.truck_records(trucks_frame(keys))
    expected = [theme.ON_TIME, theme.AT_RISK, theme.LATE, theme.EXCEPTION, theme.NO_PLAN]
    assert [r["color"] for r in records] == [[*s.rgb, 255] for s in expected]
    assert [r["status"] for r in records] == [s.key for s in expected]


def test_status_colours_are_distinct() -> None:
    colours = [s.rgb for s in theme.STATUS_BY_KEY.values()]
    assert len(set(colours)) == len(colours)


def test_truck_tooltip_says_shipment_carrier_eta_delay_and_exception() -> None:
    record = maps.truck_records(trucks_frame(["late"]))[0]
    assert record["title"] == "S0"
    detail = record["detail"]
    assert "Late · +75 min" in detail
    assert "Hannover → Kassel" in detail
    assert "Nordwind Spedition GmbH" in detail
    assert "ETA: 02 Mar 11:15 UTC (planned 02 Mar 10:00 UTC)" in detail
    assert "Exception: BREAKDOWN (critical) brake defect" in detail
    assert "800 tires" in detail


def test_deck_has_basemap_lanes_sites_and_trucks_offline() -> None:
    deck = maps.live_map_deck(trucks_frame(["on_time", "late"]), sites_frame(), lanes_frame())
    spec = json.loads(deck.to_json())
    assert [layer["id"] for layer in spec["layers"]] == list(maps.LAYER_IDS)
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert layers["countries"]["@@type"] == "GeoJsonLayer"
    assert layers["countries"]["data"] == "app/static/europe_countries.geojson"
    assert layers["lanes"]["@@type"] == "ArcLayer"
    assert layers["trucks"]["@@type"] == layers["sites"]["@@type"] == "ScatterplotLayer"
    assert len(layers["trucks"]["data"]) == 2
    assert len(layers["sites"]["data"]) == 3
    # No tile provider, and Streamlit's Carto substitution is off (the pydeck placeholder).
    assert "mapProvider" not in spec
    assert spec.get("mapStyle") == "__MAP_STYLE__"
    # Units must reach deck.gl as literals, not as "@@=pixels" accessor expressions.
    assert layers["trucks"]["radiusUnits"] == "pixels"
    assert layers["lanes"]["widthUnits"] == "pixels"
    assert layers["countries"]["lineWidthUnits"] == "pixels"
    assert spec["initialViewState"]["zoom"] == maps.EUROPE_VIEW.zoom
    assert "{title}" in maps.TOOLTIP["html"] and "{detail}" in maps.TOOLTIP["html"]


def test_sites_grow_with_stock_and_lanes_with_tires_in_transit() -> None:
    sites = maps.site_records(sites_frame())
    radii = [s["radius"] for s in sites]
    assert radii[0] == maps.SITE_RADIUS_PX[1] > radii[1] > radii[2] == maps.SITE_RADIUS_PX[0]
    assert "On hand: 40,000 tires in 12 SKUs" in sites[0]["detail"]
    lanes = maps.lane_records(lanes_frame())
    assert lanes[0]["width"] == maps.LANE_WIDTH_PX[1] > lanes[1]["width"] > maps.LANE_WIDTH_PX[0]
    assert lanes[0]["title"] == "Hannover → Kassel"
    assert "In transit: 4,000 tires on 5 shipments" in lanes[0]["detail"]


def test_empty_frames_make_an_empty_but_valid_map() -> None:
    deck = maps.live_map_deck(trucks_frame([]), sites_frame().iloc[0:0], lanes_frame().iloc[0:0])
    layers = {layer["id"]: layer for layer in json.loads(deck.to_json())["layers"]}
    assert layers["trucks"]["data"] == [] and layers["lanes"]["data"] == []


# --- one shipment: path, timeline, lanes ------------------------------------------------------


def shipment_events_frame() -> pd.DataFrame:
    """A shipment's events out of order: plan, departure with a position, three pings, an
    exception, an ETA, a re-plan, an ETA against the new plan, the arrival."""
    at = [NOW + pd.Timedelta(minutes=m) for m in range(10)]
    rows = [
        ("e3", "shipment.position", at[3], 51.9, 9.65),
        ("e0", "shipment.created", at[0], None, None),
        ("e1", "shipment.departed", at[1], 52.4, 9.7),
        ("e2", "shipment.position", at[2], 52.1, 9.68),
        ("e4", "shipment.exception", at[4], None, None),
        ("e5", "shipment.eta_updated", at[5], None, None),
        ("e6", "shipment.created", at[6], None, None),
        ("e7", "shipment.eta_updated", at[7], None, None),
        ("e8", "shipment.position", at[8], 51.5, 9.6),
        ("e9", "shipment.arrived", at[9], None, None),
    ]
    frame = pd.DataFrame(rows, columns=["event_id", "event_type", "occurred_at", "lat", "lon"])
    for column in [
        "origin_site_id",
        "destination_site_id",
        "carrier_id",
        "mode",
        "lines",
        "reason",
        "code",
        "severity",
        "message",
        "damaged_quantity",
        "estimated_delay_minutes",
        "speed_kmh",
        "heading_deg",
    ]:
        frame[column] = pd.Series([None] * len(frame), dtype=object)
    for column in ("planned_departure", "planned_arrival", "eta"):
        frame[column] = pd.Series([pd.NaT] * len(frame), dtype="datetime64[ns, UTC]")
    plans = {"e0": 60, "e6": 90}  # minutes after NOW: the re-plan moves arrival 30 min later
    for event_id, arrival in plans.items():
        i = frame.index[frame["event_id"] == event_id][0]
        for column, value in (
            ("origin_site_id", "PLT-DE-HAN"),
            ("destination_site_id", "DC-DE-KSL"),
            ("carrier_id", "CAR-NWS"),
            ("mode", "road"),
        ):
            frame.at[i, column] = value
        frame.at[i, "planned_departure"] = NOW
        frame.at[i, "planned_arrival"] = NOW + pd.Timedelta(minutes=arrival)
        frame.at[i, "lines"] = [{"sku": "P-A", "quantity": 500}, {"sku": "P-B", "quantity": 300}]
    etas = {"e5": 75, "e7": 85}  # +15 min against the first plan, -5 min against the second
    for event_id, eta in etas.items():
        i = frame.index[frame["event_id"] == event_id][0]
        frame.at[i, "eta"] = NOW + pd.Timedelta(minutes=eta)
    i = frame.index[frame["event_id"] == "e4"][0]
    for column, value in (
        ("code", "BREAKDOWN"),
        ("severity", "critical"),
        ("message", "brake defect"),
        ("estimated_delay_minutes", 45),
    ):
        frame.at[i, column] = value
    return frame


def shipment_summary_row(**changes: object) -> pd.Series:
    row = {
        "shipment_id": "S1",
        "delivery_status": "late",
        "origin_name": "Hannover Plant",
        "origin_city": "Hannover",
        "origin_lat": 52.4,
        "origin_lon": 9.7,
        "destination_name": "Kassel DC",
        "destination_city": "Kassel",
        "destination_lat": 51.3,
        "destination_lon": 9.5,
    }
    return pd.Series(row | changes)


def focus_layers(focus: maps.ShipmentFocus) -> dict[str, dict]:
    deck = maps.live_map_deck(trucks_frame(["late"]), sites_frame(), lanes_frame(), focus=focus)
    return {layer["id"]: layer for layer in json.loads(deck.to_json())["layers"]}


def test_selected_shipment_draws_its_path_in_event_time() -> None:
    events = shipment_events_frame()
    focus = maps.shipment_focus(shipment_summary_row(), events)
    trucks = trucks_frame(["late", "on_time"])  # S0 and S1, the selected one
    deck = maps.live_map_deck(trucks, sites_frame(), lanes_frame(), focus=focus)
    spec = json.loads(deck.to_json())
    assert [layer["id"] for layer in spec["layers"]] == list(maps.FOCUS_LAYER_IDS)
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert layers["path"]["@@type"] == "PathLayer"
    path = layers["path"]["data"][0]["path"]
    # Every event with a position, the departure's included, ordered by occurred_at.
    assert path == [[9.7, 52.4], [9.68, 52.1], [9.65, 51.9], [9.6, 51.5]]
    assert layers["path"]["widthUnits"] == "pixels"
    assert layers["path"]["getColor"] == [*theme.LATE.rgb, 230]
    assert "4 position reports" in layers["path"]["data"][0]["detail"]
    assert layers["selected"]["data"][0]["position"] == [9.6, 51.5], "ring on the last position"
    alpha = {t["title"]: t["color"][3] for t in layers["trucks"]["data"]}
    assert alpha == {"S0": maps.FADED_TRUCK_ALPHA, "S1": 255}, "the others fade"
    assert [s["title"] for s in layers["stops"]["data"]] == [
        "Origin: Hannover Plant",
        "Destination: Kassel DC",
    ]
    # The view frames origin and destination, closer than Europe, and stays put as it moves.
    view = spec["initialViewState"]
    assert 51.3 < view["latitude"] < 52.4 and 9.5 < view["longitude"] < 9.7
    assert view["zoom"] > maps.EUROPE_VIEW.zoom
    earlier = maps.shipment_focus(shipment_summary_row(), events.iloc[:5])
    assert earlier.view.to_json() == focus.view.to_json()
    assert len(earlier.path) < len(focus.path)


def test_a_shipment_without_positions_or_plan_still_draws() -> None:
    events = shipment_events_frame().iloc[[1]]  # the plan only
    focus = maps.shipment_focus(shipment_summary_row(delivery_status=None), events)
    layers = focus_layers(focus)
    assert layers["path"]["data"] == [] and layers["selected"]["data"] == []
    assert focus.rgb == theme.NO_PLAN.rgb
    no_plan = shipment_summary_row(
        origin_lat=None, origin_lon=None, destination_lat=None, destination_lon=None
    )
    assert maps.shipment_focus(no_plan, events.iloc[0:0]).view == maps.EUROPE_VIEW


def test_fit_view_zooms_out_for_long_lanes() -> None:
    short = maps.fit_view([[9.7, 52.4], [9.5, 51.3]])
    long = maps.fit_view([[-3.7, 42.3], [20.5, 53.8]])  # Burgos -> Olsztyn
    assert maps.FIT_ZOOM[0] <= long.zoom < short.zoom <= maps.FIT_ZOOM[1]
    assert 42.3 < long.latitude < 53.8 and -3.7 < long.longitude < 20.5


def test_timeline_figure_has_an_event_row_per_kind_and_units_on_its_axes() -> None:
    events = shipment_events_frame()
    fig = timeline.timeline_figure(
        events,
        planned_departure=NOW,
        planned_arrival=NOW + pd.Timedelta(minutes=90),
        tolerance_minutes=60,
        eta=NOW + pd.Timedelta(minutes=85),
        revision="S1",
    )
    assert fig.layout.xaxis2.title.text == "Event time (UTC)"
    assert fig.layout.yaxis.title.text == "Event"
    assert fig.layout.yaxis2.title.text == "ETA vs plan (minutes)"
    rows = {trace.name: trace for trace in fig.data if trace.yaxis in (None, "y")}
    assert list(fig.layout.yaxis.categoryarray) == [
        "Arrived", "Exception", "ETA update", "Position", "Departed", "Planned",
    ]  # fmt: skip
    assert len(rows["Position"].x) == 3 and len(rows["Planned"].x) == 2
    assert rows["Exception"].marker.color == (theme.SEVERITY_HEX["critical"],)
    assert "BREAKDOWN" in rows["Exception"].hovertext[0]
    # Naive UTC on the axis (plotly.js has no time zones): 10:00 UTC stays 10:00.
    assert pd.Timestamp(rows["Planned"].x[0]) == pd.Timestamp("2026-03-02 10:00")
    eta_line = next(trace for trace in fig.data if trace.name == "ETA vs plan")
    assert list(eta_line.y) == [0.0, 15.0, 0.0, -5.0, -81.0]
    assert fig.layout.shapes[0].y0 == 60, "the tolerance line"
    assert fig.layout.uirevision == "S1"


def test_eta_history_follows_the_plan_in_force() -> None:
    history = timeline.eta_history(shipment_events_frame())
    assert list(history["kind"]) == ["plan", "ETA update", "plan", "ETA update", "arrival"]
    # Arrived at NOW+9 min, planned (re-plan) for NOW+90 min: 81 min early.
    assert list(history["minutes"]) == [0.0, 15.0, 0.0, -5.0, -81.0]


def test_events_table_reads_like_a_log_newest_first() -> None:
    table = timeline.events_table(shipment_events_frame())
    assert list(table.columns) == ["Time", "Event", "Details", "Severity", "Event id"]
    assert list(table["Event id"]) == [f"e{i}" for i in range(9, -1, -1)]
    details = dict(zip(table["Event id"], table["Details"], strict=True))
    assert details["e0"].startswith("PLT-DE-HAN → DC-DE-KSL with CAR-NWS by road")
    assert "800 tires: P-A × 500, P-B × 300" in details["e0"]
    assert details["e1"] == "Left the origin at 52.4000, 9.7000"
    assert details["e4"] == "CRITICAL BREAKDOWN: brake defect · est. delay 45 min"
    assert details["e5"] == "ETA 02 Mar 11:15 UTC (+15 min vs plan)"
    assert details["e7"] == "ETA 02 Mar 11:25 UTC (−5 min vs plan)", "against the re-plan"
    assert table.set_index("Event id").loc["e4", "Severity"] == "critical"


def test_delivered_lines_are_spelled_out_and_counted() -> None:
    lines = [{"sku": f"P-{i}", "quantity": 10} for i in range(6)]
    assert timeline.lines_text(lines) == (
        "60 tires: P-0 × 10, P-1 × 10, P-2 × 10, P-3 × 10, +2 more SKUs"
    )
    assert timeline.lines_text(None) == "no lines"
    event = {"event_type": "shipment.delivered", "lines": lines[:1], "damaged_quantity": 2}
    assert timeline.event_details(event) == "Received 10 tires: P-0 × 10 · 2 damaged"


def lane_history_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "origin_site_id": ["PLT-DE-HAN", "DC-DE-KSL", "DC-NL-VNL"],
            "destination_site_id": ["DC-DE-KSL", "DIS-DE-MUC-01", "DIS-BE-BRU-01"],
            "mode": ["road", "road", "road"],
            "origin_city": ["Hannover", "Kassel", None],
            "destination_city": ["Kassel", "München", "Bruxelles"],
            "delivered": [14, 7, 6],
            "p50_hours": [3.5, 8.3, 3.3],
            "p90_hours": [3.8, 9.0, 5.0],
            "planned_hours": [3.5, 9.0, 3.5],
            "on_time": [13, 5, 3],
            "on_time_share": [13 / 14, 5 / 7, 0.5],
        }
    )


def test_lane_confidence_chart_ranges_plans_and_on_time_bands() -> None:
    fig = timeline.lane_confidence_figure(lane_history_frame())
    assert fig.layout.xaxis.title.text == "Transit time (hours)"
    assert fig.layout.xaxis2.title.text == "Arrived on time (%)"
    labels = ["Hannover → Kassel · road", "Kassel → München · road", "DC-NL-VNL → Bruxelles · road"]
    ranges, _p50, planned, on_time = fig.data
    assert list(ranges.y) == labels
    assert list(ranges.base) == [3.5, 8.3, 3.3]
    assert list(ranges.x) == pytest.approx([0.3, 0.7, 1.7])
    assert list(planned.x) == [3.5, 9.0, 3.5]
    assert list(on_time.marker.color) == [theme.ON_TIME.hex, theme.AT_RISK.hex, theme.LATE.hex]
    assert list(on_time.text) == ["93 %", "71 %", "50 %"]


# --- charts -------------------------------------------------------------------------------------


def test_delay_chart_has_a_box_per_carrier_and_minutes_on_the_axis() -> None:
    stats = pd.DataFrame(
        {
            "carrier_id": ["CAR-A", "CAR-B"],
            "carrier_name": ["Alpha", None],
            "shipments": [10, 4],
            "p05": [-5.0, 0.0],
            "q1": [0.0, 2.0],
            "median": [3.0, 8.0],
            "q3": [9.0, 20.0],
            "p95": [30.0, 90.0],
            "mean": [6.0, 15.0],
            "late_share": [0.1, 0.5],
        }
    )
    fig = charts.delay_by_carrier(stats, tolerance_minutes=60)
    assert fig.layout.xaxis.title.text == "Delay at arrival (minutes)"
    assert fig.layout.yaxis.title.text == "Carrier"
    box = fig.data[0]
    assert list(box.y) == ["Alpha", "CAR-B"]
    assert list(box.median) == [3.0, 8.0] and list(box.upperfence) == [30.0, 90.0]
    assert fig.layout.shapes[0].x0 == 60, "the tolerance line"


def test_exception_chart_stacks_severities_with_the_shared_colours() -> None:
    summary = pd.DataFrame(
        {
            "code": ["TRAFFIC", "TRAFFIC", "STRIKE"],
            "severity": ["warning", "critical", "critical"],
            "exceptions": [4, 1, 2],
            "shipments": [4, 1, 2],
        }
    )
    fig = charts.exceptions_by_code(summary)
    assert fig.layout.yaxis.title.text == "Exceptions (count)"
    assert fig.layout.barmode == "stack"
    colours = {trace.name: trace.marker.color for trace in fig.data}
    assert colours["Critical"] == theme.LATE.hex and colours["Warning"] == theme.AT_RISK.hex


def test_partition_chart_counts_messages() -> None:
    positions = pd.DataFrame(
        {"topic": ["t", "t"], "partition": [0, 1], "next_offset": [10, 20], "lag": [0, None]}
    )
    fig = charts.partition_progress(positions)
    assert fig.layout.yaxis.title.text == "Messages (Kafka offset)"
    assert list(fig.data[0].x) == ["t[0]", "t[1]"]
    assert list(fig.data[1].y) == [0, 0]


# --- formatting and freshness ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "text"),
    [(0.25, "15 s"), (12.4, "12 min"), (125, "2 h 05 min"), (3000, "2 d 02 h"), (None, "—")],
)
def test_duration(minutes: float | None, text: str) -> None:
    assert duration(minutes) == text


def test_delay_text_and_numbers() -> None:
    assert delay_text(32) == "+32 min"
    assert delay_text(-4) == "4 min early"
    assert delay_text(0.0) == "on schedule"
    assert delay_text(None) == "no plan"
    assert number(1234567) == "1,234,567"
    assert clock(pd.Timestamp("2026-03-02 10:05:09+01:00"), seconds=True) == "02 Mar 09:05:09 UTC"


def test_escape_markdown_keeps_text_literal() -> None:
    assert escape_markdown("a_b *c* [d](e) `f`") == r"a\_b \*c\* \[d\]\(e\) \`f\`"


def fresh(batch_age_s: float | None, source: str = "worker") -> queries.Freshness:
    now = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    batch = None if batch_age_s is None else now - dt.timedelta(seconds=batch_age_s)
    return queries.Freshness(batch, batch, now, source)


def test_freshness_live_stale_file_and_empty() -> None:
    assert describe_freshness(fresh(3)).level == "live"
    stale = describe_freshness(fresh(600))
    assert stale.level == "stale" and stale.text.startswith("Stale since 02 Mar 09:50:00 UTC")
    assert "no new events for 10 min" in stale.text
    from_file = describe_freshness(fresh(3, source="file"))
    assert from_file.level == "stale" and "worker is not running" in from_file.text
    assert describe_freshness(fresh(None)).level == "empty"


# --- filters and SQL ----------------------------------------------------------------------------


def test_url_filters_are_whitelisted() -> None:
    options = filter_options(load_network())
    filters = from_query_params(
        {"carrier": ["CAR-GAL", "CAR-NWS", "'; DROP TABLE events; --"], "mode": ["ROAD", "sea"]},
        options,
    )
    assert filters == Filters(carrier=("CAR-GAL", "CAR-NWS"), mode=("sea",))
    assert to_query_params(filters) == {"carrier": ["CAR-GAL", "CAR-NWS"], "mode": ["sea"]}


def test_live_and_replay_read_different_relations() -> None:
    as_of = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
    live, replay = queries.trucks_sql(Filters()), queries.trucks_sql(Filters(), as_of)
    assert "shipments_now" in live and "shipments_asof" not in live
    assert "shipments_asof(TIMESTAMPTZ '2026-03-02 09:30:00.000000+00'" in replay
    assert "inventory_asof(TIMESTAMPTZ" in queries.sites_sql(Filters(), as_of)
    assert "inventory_now" in queries.sites_sql(Filters())


def test_exception_queue_lists_every_exception_of_the_open_shipments(tmp_path: Path) -> None:
    """Open shipments' exceptions only, however long ago the shipment began (the scan starts at
    the oldest open shipment's first event), critical first, then the oldest first."""

    def hour(h: float) -> dt.datetime:
        return dt.datetime(2026, 3, 2, tzinfo=dt.UTC) + dt.timedelta(hours=h)

    log = EventLog()
    log.shipment("OLD", hour(30), departed=hour(5), planned_hours=26)  # open since 03:00
    log.shipment("NEW", hour(12), carrier="CAR-GAL", departed=hour(9))
    delivered = (hour(10.5), [("P-1756514-82T-S", 10)], 0)
    log.shipment("DONE", hour(11), departed=hour(8), arrived=hour(10), delivered=delivered)
    log.shipment("GONE", hour(12), departed=hour(8), cancelled=hour(9.5))
    exceptions = [  # (shipment, hours, severity, code)
        ("OLD", 5.5, "warning", "TRAFFIC"),
        ("OLD", 6, "critical", "BREAKDOWN"),
        ("NEW", 9.75, "critical", "STRIKE"),
        ("NEW", 9.5, "info", "WEATHER"),
        ("DONE", 9, "critical", "DAMAGE"),
        ("GONE", 9, "critical", "OTHER"),
    ]
    for shipment_id, hours, severity, code in exceptions:
        log.add("shipment.exception", hour(hours), shipment_id=shipment_id, code=code,
                severity=severity, message=f"{code.lower()} on the way")  # fmt: skip
    path = tmp_path / "q.duckdb"
    store_events(path, log.events)

    def queue(filters: Filters) -> list[tuple[str, str, str]]:
        frame = read_sql(path, queries.exception_queue_sql(filters))
        return list(zip(frame["shipment_id"], frame["severity"], frame["code"], strict=True))

    assert queue(Filters()) == [
        ("OLD", "critical", "BREAKDOWN"),
        ("NEW", "critical", "STRIKE"),
        ("OLD", "warning", "TRAFFIC"),
        ("NEW", "info", "WEATHER"),
    ]
    assert queue(Filters(carrier=("CAR-GAL",))) == [
        ("NEW", "critical", "STRIKE"),
        ("NEW", "info", "WEATHER"),
    ]
    assert queue(Filters(carrier=("CAR-XXX",))) == [], "no open shipment: no bound, no rows"
    summary = read_sql(path, queries.exception_summary_sql(Filters()))
    assert summary["exceptions"].sum() == 4 and set(summary["code"]) == {
        "BREAKDOWN", "STRIKE", "TRAFFIC", "WEATHER"
    }  # fmt: skip


def test_filter_values_reach_sql_only_as_quoted_literals(tmp_path: Path) -> None:
    """Even a value that slipped past the whitelist stays a string literal."""
    store = Store(tmp_path / "t.duckdb")
    store.load_reference(REPO / "data")
    hostile = Filters(carrier=("x') OR TRUE OR ('",), region=("a'b",), status=("late",))
    for sql in (
        queries.trucks_sql(hostile),
        queries.lanes_sql(hostile),
        queries.sites_sql(hostile),
        queries.exception_queue_sql(hostile),
        queries.late_shipments_sql(hostile),
        queries.delay_by_carrier_sql(hostile),
        queries.open_shipments_sql(hostile),
        queries.stale_trackers_sql(hostile, 60.0),
        queries.lane_transit_sql(hostile),
    ):
        assert "'x'') OR TRUE OR ('''" in sql or "'a''b'" in sql
        store.con.execute(sql).fetchall()
    # A shipment id from a link (user input) reaches SQL only as a literal.
    for sql in (queries.shipment_sql("x' OR '1'='1"), queries.shipment_events_sql("x' OR '1'='1")):
        assert "'x'' OR ''1''=''1'" in sql
        assert store.con.execute(sql).fetchall() == []
    store.close()


def test_one_shipment_queries_read_up_to_the_replay_instant() -> None:
    as_of = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
    assert "occurred_at <= now()" in queries.shipment_events_sql("S1")
    replay = queries.shipment_events_sql("S1", as_of)
    assert "occurred_at <= TIMESTAMPTZ '2026-03-02 09:30:00.000000+00'" in replay
    assert "shipments_asof(TIMESTAMPTZ" in queries.shipment_sql("S1", as_of)
    assert "shipments_asof(TIMESTAMPTZ" in queries.stale_trackers_sql(Filters(), 5, as_of)
    with pytest.raises(ValueError):
        queries.stale_trackers_sql(Filters(), float("nan"))


def test_database_path_from_argv_then_env_then_default(tmp_path: Path) -> None:
    assert queries.database_path(["--db", "/x/a.duckdb"], {"TIRETRACK_DB": "/y"}) == Path(
        "/x/a.duckdb"
    )
    assert queries.database_path(["-k", "x"], {"TIRETRACK_DB": "/y/b.duckdb"}) == Path(
        "/y/b.duckdb"
    )
    assert queries.database_path([], {}) == queries.DEFAULT_DB


# --- theme and static files ---------------------------------------------------------------------


def test_streamlit_theme_uses_the_status_palette() -> None:
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["enableStaticServing"] is True
    assert config["browser"]["gatherUsageStats"] is False
    for status in theme.STATUS_BY_KEY.values():
        assert config["theme"][f"{status.color_name}Color"] == status.hex, status.key
    assert config["theme"]["blueColor"] == theme.INFO_HEX


def test_basemap_is_a_small_geojson_of_europe() -> None:
    path = REPO / "dashboard" / "static" / "europe_countries.geojson"
    assert path.stat().st_size < 1_000_000
    collection = json.loads(path.read_text(encoding="utf-8"))
    names = {f["properties"]["name"] for f in collection["features"]}
    assert {"Germany", "France", "Spain", "Poland", "Sweden", "United Kingdom", "Italy"} <= names
    for site in load_network().sites.values():
        assert -32 < site.lon < 50 and 27 < site.lat < 72, "every site lies inside the basemap"


def test_site_and_tire_filters_are_whitelisted_from_the_url() -> None:
    options = filter_options(load_network())
    filters = from_query_params(
        {
            "plant": ["PLT-DE-HAN", "DC-DE-KSL", "x' OR '1'='1"],  # a DC is not a plant
            "distributor": ["DIS-FR-PAR-01", "PLT-FR-CFE"],
            "segment": ["van", "Van", "bikes"],
            "sku": ["T-31580225-156L-A", "T-3158"],
        },
        options,
    )
    assert filters == Filters(
        plant=("PLT-DE-HAN",),
        distributor=("DIS-FR-PAR-01",),
        segment=("van",),
        sku=("T-31580225-156L-A",),
    )
    assert to_query_params(filters)["plant"] == ["PLT-DE-HAN"]
    assert options.label("plant", "PLT-DE-HAN") == "Hannover-Stöcken Plant (Hannover)"
    assert options.segment == ("passenger", "van", "truck", "agricultural")


def test_site_filters_narrow_only_their_own_kind() -> None:
    network = load_network()
    filters = Filters(region=("France",), plant=("PLT-FR-CFE",), distributor=("DIS-FR-PAR-01",))
    assert matching_sites(filters, network) == ("DC-FR-LYS", "DIS-FR-PAR-01", "PLT-FR-CFE")
    assert matching_skus(Filters(segment=("truck",), sku=("T-31580225-156L-A",)), network) == (
        "T-31580225-156L-A",
    )
    assert matching_skus(Filters(segment=("truck",), sku=("P-1756514-82T-S",)), network) == ()
    assert len(matching_skus(Filters(), network)) == len(network.skus)


def test_new_filters_reach_every_builder_as_quoted_literals(tmp_path: Path) -> None:
    """Plant, distributor, segment and SKU in every builder that takes filters; even values
    that slipped past the whitelist stay string literals, and every SQL runs."""
    store = Store(tmp_path / "t.duckdb")
    store.load_reference(REPO / "data")
    hostile = Filters(
        plant=("p') OR TRUE OR ('",),
        distributor=("d'x",),
        segment=("s') OR TRUE --",),
        sku=("k'y",),
    )
    as_of = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
    period = kpi_queries.PERIOD_BY_KEY["1h"]
    measure = inventory_queries.FLOW_MEASURES[0]
    builders = {
        "trucks": queries.trucks_sql(hostile),
        "trucks_asof": queries.trucks_sql(hostile, as_of),
        "lanes": queries.lanes_sql(hostile),
        "sites": queries.sites_sql(hostile, as_of),
        "open": queries.open_shipments_sql(hostile),
        "queue": queries.exception_queue_sql(hostile),
        "summary": queries.exception_summary_sql(hostile),
        "late": queries.late_shipments_sql(hostile),
        "counts": queries.open_status_counts_sql(hostile),
        "carrier": queries.delay_by_carrier_sql(hostile),
        "stale": queries.stale_trackers_sql(hostile, 60.0),
        "lane_transit": queries.lane_transit_sql(hostile),
        "kpis": kpi_queries.period_kpis_sql(hostile, period, as_of),
        "in_transit": kpi_queries.in_transit_sql(hostile, period, as_of),
        "throughput": kpi_queries.throughput_sql(hostile, period, as_of),
        "kpi_lanes": kpi_queries.lane_transit_sql(hostile, period, as_of),
        "scorecard": kpi_queries.carrier_scorecard_sql(hostile, period, as_of),
        "flows": inventory_queries.flows_sql(hostile, period, as_of, measure),
        "transit_lanes": inventory_queries.in_transit_lanes_sql(hostile),
        "cover": inventory_queries.days_of_supply_sql(hostile, period, 7.0, as_of),
    }
    for name, sql in builders.items():
        assert "'s'') OR TRUE --'" in sql and "'k''y'" in sql, name
        if name != "cover":  # cover: the plant filter does not apply
            assert "'p'') OR TRUE OR ('''" in sql or name == "sites", name
        assert "'d''x'" in sql, name
        store.con.execute(sql).fetchall()
    store.close()


def test_tire_filters_match_any_planned_line_and_stock_by_its_own_sku() -> None:
    both = Filters(segment=("van",), sku=("V-1957015-104R-S",))
    chosen = queries.chosen_skus_sql(both)
    assert chosen == (
        "SELECT sku FROM ref_skus WHERE sku IN ('V-1957015-104R-S') AND segment IN ('van')"
    )
    assert queries.chosen_skus_sql(Filters(plant=("PLT-DE-HAN",))) is None
    cte = queries.shipments_cte(both, None)
    assert "list_has_any(list_transform(sh.planned_lines, lambda l: l.sku)" in cte
    assert f"sku IN ({chosen})" in queries.sites_sql(both)
    assert f"l.line.sku IN ({chosen})" in inventory_queries.in_transit_lanes_sql(both)
    site = queries.site_condition(Filters(plant=("PLT-DE-HAN",)), "r")
    assert site == "(r.kind <> 'plant' OR r.site_id IN ('PLT-DE-HAN'))"
    assert queries.site_condition(Filters(carrier=("CAR-NWS",)), "r") == "TRUE"
