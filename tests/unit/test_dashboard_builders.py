"""The dashboard's pure parts: map and chart builders, formatting, filters, SQL, theme, basemap."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from dashboard import charts, maps, queries, theme
from dashboard.components import describe_freshness
from dashboard.filters import Filters, filter_options, from_query_params, to_query_params
from dashboard.formatting import clock, delay_text, duration, escape_markdown, number
from ingest.network import load_network
from ingest.store import Store

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
    ):
        assert "'x'') OR TRUE OR ('''" in sql or "'a''b'" in sql
        store.con.execute(sql).fetchall()
    store.close()


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
