"""Every dashboard page under Streamlit's AppTest, over a database built from a known simulation:
the numbers shown equal the database's (and the oracle's), and a missing worker is a message."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import queries
from dashboard.filters import Filters
from dashboard.formatting import escape_markdown
from ingest.network import DATA_DIR, load_network
from ingest.store import Batch, DeadLetter, Store
from tests import oracle
from tests.apptest import assert_clean
from tests.browser.dashboard_db import (
    TOLERANCE_MINUTES,
    DashboardDb,
    build_dashboard_db,
    store_events,
)

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
MAP_PAGE = "app_pages/live_map.py"
DELAYS_PAGE = "app_pages/delays.py"
HEALTH_PAGE = "app_pages/pipeline_health.py"
PAGES = (MAP_PAGE, DELAYS_PAGE, HEALTH_PAGE)
OPEN = (oracle.PLANNED, oracle.IN_TRANSIT, oracle.ARRIVED)


@pytest.fixture(scope="module")
def network_db(tmp_path_factory: pytest.TempPathFactory) -> DashboardDb:
    return build_dashboard_db(tmp_path_factory.mktemp("dashboard") / "network.duckdb")


@pytest.fixture
def open_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AppTest]]:
    """Run the app against a database path, optionally on a page and with URL parameters."""

    def run(db_path: Path, page: str | None = None, **query: Any) -> AppTest:
        monkeypatch.setenv("TIRETRACK_DB", str(db_path))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(query)
        at.run()
        if page is not None:
            at.switch_page(page)
            at.run()
        return at

    yield run


def deck_layers(at: AppTest) -> dict[str, dict[str, Any]]:
    charts = at.get("deck_gl_json_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.json)
    return {layer["id"]: layer for layer in spec["layers"]}


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label or m.label.endswith("] " + label)]
    assert len(found) == 1, f"metric {label!r}: {[m.label for m in at.metric]}"
    return found[0]


def frame_with(at: AppTest, column: str) -> Any:
    """The one dataframe on the page that has `column`."""
    frames = [df.value for df in at.dataframe if column in df.value.columns]
    assert len(frames) == 1, [list(df.value.columns) for df in at.dataframe]
    return frames[0]


def db_value(path: Path, sql: str) -> Any:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_without_errors(network_db: DashboardDb, open_app, page: str) -> None:
    at = open_app(network_db.path, page)
    assert_clean(at)
    assert at.title, "every page has a title"
    assert any("Stale since" in w.value for w in at.warning), "no worker: the file is stale"


def test_health_page_counts_equal_the_database(network_db: DashboardDb, open_app) -> None:
    at = open_app(network_db.path, HEALTH_PAGE)
    assert_clean(at)
    accepted = db_value(network_db.path, "SELECT accepted FROM ingest_stats")
    assert accepted == network_db.accepted > 0
    assert metric(at, "Accepted") == f"{accepted:,}"
    assert metric(at, "Rejected") == f"{network_db.rejected:,}"
    assert metric(at, "Duplicates") == f"{network_db.duplicates:,}"
    assert len(frame_with(at, "value_text")) == min(50, network_db.rejected)


def test_map_draws_every_truck_on_the_road(network_db: DashboardDb, open_app) -> None:
    at = open_app(network_db.path)
    assert_clean(at)
    layers = deck_layers(at)
    assert list(layers) == ["sea", "countries", "lanes", "sites", "trucks"]
    expected = network_db.trucks()
    trucks = layers["trucks"]["data"]
    assert len(trucks) == len(expected) > 0
    assert {t["title"] for t in trucks} == {row["shipment_id"] for row in expected}
    assert metric(at, "Trucks on the road") == f"{len(expected):,}"
    in_transit = oracle.derive_in_transit(network_db.events, dt.datetime.now(dt.UTC))
    assert metric(at, "Tires in transit") == f"{sum(r['in_transit'] for r in in_transit):,}"
    assert len(layers["sites"]["data"]) == db_value(
        network_db.path, "SELECT count(*) FROM ref_sites"
    )
    assert layers["countries"]["data"] == "app/static/europe_countries.geojson"


def test_map_follows_the_filters_in_the_url(network_db: DashboardDb, open_app) -> None:
    expected = network_db.trucks()
    carrier = max(
        {row["carrier_id"] for row in expected},
        key=lambda c: sum(row["carrier_id"] == c for row in expected),
    )
    at = open_app(network_db.path, carrier=carrier, mode="road", region="Narnia")
    assert_clean(at)
    trucks = deck_layers(at)["trucks"]["data"]
    wanted = {
        r["shipment_id"] for r in expected if r["carrier_id"] == carrier and r["mode"] == "road"
    }
    assert {t["title"] for t in trucks} == wanted
    assert at.multiselect(key="filter_carrier").value == [carrier]
    assert at.multiselect(key="filter_region").value == [], "unknown URL values are dropped"
    assert at.query_params.get("carrier") == [carrier] or at.query_params.get("carrier") == carrier


def test_status_filter_keeps_only_that_colour(network_db: DashboardDb, open_app) -> None:
    at = open_app(network_db.path, status="on_time")
    assert_clean(at)
    trucks = deck_layers(at)["trucks"]["data"]
    assert trucks, "the simulation has trucks on time"
    assert {t["status"] for t in trucks} == {"on_time"}


def test_replay_shows_the_network_as_of_a_past_moment(network_db: DashboardDb, open_app) -> None:
    at = open_app(network_db.path)
    at.segmented_control(key="map_mode").set_value("Replay").run()
    assert_clean(at)
    as_of = (network_db.built_at - dt.timedelta(minutes=6)).replace(second=0, tzinfo=None)
    at.slider(key="replay_as_of").set_value(as_of).run()
    assert_clean(at)
    expected = network_db.trucks(as_of.replace(tzinfo=dt.UTC))
    trucks = deck_layers(at)["trucks"]["data"]
    assert {t["title"] for t in trucks} == {row["shipment_id"] for row in expected}
    assert {t["title"] for t in trucks} != {row["shipment_id"] for row in network_db.trucks()}


# --- one shipment on the map ---

EVENT_NAMES = {  # the table's words for each event type, as a planner reads them
    "shipment.created": "Planned",
    "shipment.departed": "Departed",
    "shipment.position": "Position",
    "shipment.eta_updated": "ETA update",
    "shipment.exception": "Exception",
    "shipment.arrived": "Arrived",
    "shipment.delivered": "Delivered",
    "shipment.cancelled": "Cancelled",
}


def unique_events(db: DashboardDb) -> list[dict[str, Any]]:
    """The accepted events: every valid message once (a duplicate repeats an event_id)."""
    seen: dict[str, dict[str, Any]] = {}
    for event in db.events:
        seen.setdefault(event["event_id"], event)
    return list(seen.values())


def events_of(db: DashboardDb, shipment_id: str, until: dt.datetime) -> list[dict[str, Any]]:
    """One shipment's events at or before `until`, in event time (ties by event_id)."""
    mine = [
        e
        for e in unique_events(db)
        if e.get("shipment_id") == shipment_id and oracle.parse_instant(e["occurred_at"]) <= until
    ]
    return sorted(mine, key=lambda e: (oracle.parse_instant(e["occurred_at"]), e["event_id"]))


def busy_shipment(db: DashboardDb) -> str:
    """A shipment on the road with an exception and an ETA update: every kind of detail."""
    kinds: dict[str, set[str]] = {}
    for event in unique_events(db):
        if "shipment_id" in event:
            kinds.setdefault(event["shipment_id"], set()).add(event["event_type"])
    on_road = {r["shipment_id"] for r in db.trucks()}
    wanted = {"shipment.created", "shipment.exception", "shipment.eta_updated"}
    return min(s for s in on_road if wanted <= kinds.get(s, set()))


def test_shipment_detail_shows_its_events_path_and_summary(
    network_db: DashboardDb, open_app
) -> None:
    shipment_id = busy_shipment(network_db)
    at = open_app(network_db.path, shipment=shipment_id)
    assert_clean(at)
    assert at.selectbox(key="map_shipment").value == shipment_id, "the link opened it"
    expected = events_of(network_db, shipment_id, dt.datetime.now(dt.UTC))
    table = frame_with(at, "Event id")  # newest first
    assert list(table["Event id"]) == [e["event_id"] for e in reversed(expected)]
    assert list(table["Event"]) == [EVENT_NAMES[e["event_type"]] for e in reversed(expected)]
    times = [oracle.parse_instant(e["occurred_at"]) for e in reversed(expected)]
    assert [t.to_pydatetime() for t in table["Time"]] == times
    shown = dict(zip(table["Event id"], table["Details"], strict=True))
    for event in expected:
        if event["event_type"] == "shipment.exception":
            assert event["code"] in shown[event["event_id"]]
            assert event["severity"].upper() in shown[event["event_id"]]
        if event["event_type"] == "shipment.eta_updated":
            eta = oracle.parse_instant(event["eta"]).strftime("%d %b %H:%M UTC")
            assert f"ETA {eta}" in shown[event["event_id"]]
    # The map draws its path through every position it reported, in event time.
    layers = deck_layers(at)
    assert list(layers) == ["sea", "countries", "lanes", "sites", "path", "stops", "trucks",
                            "selected"]  # fmt: skip
    located = [e for e in expected if e.get("lat") is not None]
    path = layers["path"]["data"][0]["path"]
    assert path == [[e["lon"], e["lat"]] for e in located]
    assert layers["selected"]["data"][0]["position"] == path[-1]
    row = next(r for r in network_db.shipments() if r["shipment_id"] == shipment_id)
    assert metric(at, "Tires planned") == f"{row['planned_quantity']:,}"
    assert any(h.value.startswith(escape_markdown(shipment_id)) for h in at.subheader)
    # Choosing another one in the search box puts it in the URL; clearing it removes it.
    other = next(r["shipment_id"] for r in network_db.trucks() if r["shipment_id"] != shipment_id)
    at.selectbox(key="map_shipment").set_value(other).run()
    assert_clean(at)
    assert at.query_params["shipment"] in (other, [other])
    assert deck_layers(at)["selected"]["data"][0]["title"] == other
    at.selectbox(key="map_shipment").set_value(None).run()
    assert "shipment" not in at.query_params
    assert "path" not in deck_layers(at)


def test_shipment_path_in_replay_ends_at_the_replay_time(network_db: DashboardDb, open_app) -> None:
    shipment_id = busy_shipment(network_db)
    at = open_app(network_db.path, shipment=shipment_id)
    at.segmented_control(key="map_mode").set_value("Replay").run()
    located = [e for e in events_of(network_db, shipment_id, network_db.built_at) if "lat" in e]
    middle = oracle.parse_instant(located[len(located) // 2]["occurred_at"])
    as_of = middle.replace(second=0, microsecond=0)
    at.slider(key="replay_as_of").set_value(as_of.replace(tzinfo=None)).run()
    assert_clean(at)
    assert at.selectbox(key="map_shipment").value == shipment_id
    expected = [e for e in located if oracle.parse_instant(e["occurred_at"]) <= as_of]
    path = deck_layers(at)["path"]["data"][0]["path"]
    assert len(expected) < len(located)
    assert path == [[e["lon"], e["lat"]] for e in expected]
    assert len(frame_with(at, "Event id")) == len(events_of(network_db, shipment_id, as_of))
    at.segmented_control(key="map_mode").set_value("Live").run()  # back to live: still chosen
    assert_clean(at)
    assert at.selectbox(key="map_shipment").value == shipment_id
    assert at.query_params["shipment"] in (shipment_id, [shipment_id])
    assert deck_layers(at)["selected"]["data"][0]["title"] == shipment_id


def test_an_unknown_shipment_in_the_link_is_a_plain_warning(
    network_db: DashboardDb, open_app
) -> None:
    at = open_app(network_db.path, shipment="x') OR TRUE --")
    assert not at.exception and not at.error
    assert any("No shipment" in w.value for w in at.warning)
    assert at.selectbox(key="map_shipment").value is None
    assert list(deck_layers(at)) == ["sea", "countries", "lanes", "sites", "trucks"]


# --- delays: stale trackers and ETA confidence ---


def shipment_events(shipment_id: str, now: dt.datetime, *steps: tuple[str, float]) -> list[dict]:
    """A shipment's events, each `(event_type, minutes before now)`; Hannover -> Kassel by road.
    A position-carrying step ends in '@' (a departed event with a position, say)."""

    def at(minutes: float) -> str:
        return (now - dt.timedelta(minutes=minutes)).isoformat()

    events = []
    for n, (kind, minutes) in enumerate(steps):
        event_type = "shipment." + kind.rstrip("@")
        event: dict[str, Any] = {
            "event_id": f"{shipment_id}-{n}",
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": at(minutes),
            "source": "test",
            "shipment_id": shipment_id,
        }
        if event_type == "shipment.created":
            event |= {
                "origin_site_id": "PLT-DE-HAN",
                "destination_site_id": "DC-DE-KSL",
                "carrier_id": "CAR-NWS",
                "mode": "road",
                "planned_departure": at(minutes - 10),
                "planned_arrival": at(minutes - 400),
                "lines": [{"sku": "P-1756514-82T-S", "quantity": 100}],
            }
        if event_type == "shipment.position" or kind.endswith("@"):
            event |= {"lat": 52.0 + n / 100, "lon": 9.6}
        if event_type == "shipment.delivered":
            event["lines"] = [{"sku": "P-1756514-82T-S", "quantity": 100}]
        events.append(event)
    return events


@pytest.fixture(scope="module")
def stale_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Shipments whose trackers went quiet for known times (minutes before the build)."""
    now = dt.datetime.now(dt.UTC)
    events = [
        *shipment_events("S-QUIET-150", now, ("created", 300), ("departed@", 240),
                         ("position", 200), ("position", 150)),
        *shipment_events("S-NEVER-120", now, ("created", 300), ("departed", 120)),
        *shipment_events("S-NOPLAN-180", now, ("departed", 200), ("position", 180)),
        *shipment_events("S-EDGE-63", now, ("created", 100), ("departed", 90), ("position", 63)),
        *shipment_events("S-EDGE-57", now, ("created", 100), ("departed", 90), ("position", 57)),
        *shipment_events("S-FRESH", now, ("created", 100), ("departed", 90), ("position", 5)),
        *shipment_events("S-ARRIVED", now, ("created", 300), ("departed@", 290),
                         ("position", 200), ("arrived", 100)),
        *shipment_events("S-CANCELLED", now, ("created", 300), ("departed@", 290),
                         ("cancelled", 200)),
        *shipment_events("S-DELIVERED", now, ("created", 300), ("departed@", 290),
                         ("delivered", 150)),
        *shipment_events("S-PLANNED", now, ("created", 300)),
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("stale") / "stale.duckdb"
    store_events(path, events, tolerance_minutes=60.0)
    return path, events


def stale_expected(events: list[dict], threshold: float, at: dt.datetime) -> dict[str, float]:
    """Independently: in transit, minutes since the last position (else since departure)."""
    silent = {}
    for row in oracle.derive_shipments(events, at, 60.0):
        if row["status"] != oracle.IN_TRANSIT:
            continue
        last = row["last_position_at"] or row["departed_at"]
        minutes = (at - last).total_seconds() / 60
        if minutes > threshold:
            silent[row["shipment_id"]] = minutes
    return silent


@pytest.mark.parametrize("threshold", [60, 100])
def test_stale_trackers_equal_an_independent_count(
    stale_db: tuple[Path, list[dict]], open_app, threshold: int
) -> None:
    path, events = stale_db
    at = open_app(path, DELAYS_PAGE)
    at.number_input(key="stale_threshold_minutes").set_value(threshold).run()
    assert_clean(at)
    expected = stale_expected(events, threshold, dt.datetime.now(dt.UTC))
    table = frame_with(at, "Wall minutes")
    # Each shipment links to the live map opened on it.
    assert all(link.startswith("./?shipment=") for link in table["Shipment"])
    table.index = [unquote(link.split("shipment=", 1)[1]) for link in table["Shipment"]]
    assert list(table.index) == sorted(expected, key=lambda s: -expected[s])
    assert set(expected) == (
        {"S-QUIET-150", "S-NEVER-120", "S-NOPLAN-180", "S-EDGE-63"}
        if threshold == 60
        else {"S-QUIET-150", "S-NEVER-120", "S-NOPLAN-180"}
    ), "the scenario's own arithmetic"
    for shipment_id, minutes in table["Wall minutes"].items():
        assert abs(minutes - expected[shipment_id]) < 1.0  # the page ran moments earlier
    assert pd.isna(table.loc["S-NEVER-120", "Last position"]), "never reported one"
    assert table.loc["S-QUIET-150", "Lane"] == "Hannover → Kassel"


def test_stale_trackers_sql_at_a_given_instant(network_db: DashboardDb) -> None:
    """The builder against the scenario database at a fixed T: equal to the oracle's list."""
    at = network_db.built_at
    silences = sorted(stale_expected(network_db.events, 0.0, at).values())
    k = len(silences) // 2  # half of them quiet for longer than the threshold
    assert silences[k] - silences[k - 1] > 1e-4, "a threshold clear of every silence"
    threshold = (silences[k - 1] + silences[k]) / 2
    con = duckdb.connect(str(network_db.path), read_only=True)
    try:
        rows = con.execute(queries.stale_trackers_sql(Filters(), threshold, at)).fetchall()
        columns = [c[0] for c in con.description]
    finally:
        con.close()
    got = {r[columns.index("shipment_id")]: r[columns.index("silent_minutes")] for r in rows}
    expected = stale_expected(network_db.events, threshold, at)
    assert 0 < len(expected) < len(silences)
    assert got.keys() == expected.keys()
    for shipment_id, minutes in got.items():
        assert minutes == pytest.approx(expected[shipment_id], abs=1e-6)


def test_eta_confidence_for_the_busiest_lane(network_db: DashboardDb, open_app) -> None:
    at = open_app(network_db.path, DELAYS_PAGE)
    assert_clean(at)
    lanes: dict[tuple[str, str, str], list[dict]] = {}
    for row in network_db.shipments():
        if row["status"] == oracle.DELIVERED and row["origin_site_id"] is not None:
            key = (row["origin_site_id"], row["destination_site_id"], row["mode"])
            lanes.setdefault(key, []).append(row)
    (origin, destination, mode), rows = max(lanes.items(), key=lambda kv: (len(kv[1]), kv[0]))
    assert len(rows) >= 5, "the scenario delivers enough on its busiest lane"
    hours = [
        ((r["arrived_at"] - (r["departed_at"] or r["arrived_at"])).total_seconds() / 3600)
        for r in rows
    ]
    planned = [(r["planned_arrival"] - r["planned_departure"]).total_seconds() / 3600 for r in rows]
    on_time = sum(r["delay_minutes"] <= TOLERANCE_MINUTES for r in rows) / len(rows)
    sites = load_network().sites
    label = f"{sites[origin].city} → {sites[destination].city} · {mode}"
    table = frame_with(at, "P90").set_index("Lane")
    shown = table.loc[label]
    assert shown["Delivered"] == len(rows)
    assert shown["P50"] == pytest.approx(np.percentile(hours, 50), rel=1e-9)
    assert shown["P90"] == pytest.approx(np.percentile(hours, 90), rel=1e-9)
    assert shown["Planned"] == pytest.approx(float(np.median(planned)), rel=1e-9)
    assert shown["On time"] == pytest.approx(100 * on_time)
    chart = [c for c in at.get("plotly_chart") if "Transit time (hours)" in c.proto.spec]
    assert len(chart) == 1, "the lane chart is drawn"


def test_eta_confidence_explains_too_little_history(network_db: DashboardDb, open_app) -> None:
    at = open_app(network_db.path, DELAYS_PAGE)
    at.number_input(key="eta_min_history").set_value(1000).run()
    assert_clean(at)
    assert any("Too little history" in i.value for i in at.info)
    assert not any("Transit time (hours)" in c.proto.spec for c in at.get("plotly_chart"))


def test_delays_page_lists_the_late_and_at_risk(network_db: DashboardDb, open_app) -> None:
    def late_open(at: dt.datetime) -> tuple[int, int]:
        rows = [r for r in network_db.shipments(at) if r["status"] in OPEN]
        return sum(bool(r["is_late"]) for r in rows), len(rows)

    # An open shipment's delay grows with the clock: count before and after the page ran.
    late_before, open_before = late_open(dt.datetime.now(dt.UTC))
    at = open_app(network_db.path, DELAYS_PAGE)
    late_after, open_after = late_open(dt.datetime.now(dt.UTC))
    assert_clean(at)
    assert open_before == open_after
    assert metric(at, "Open shipments") == f"{open_before:,}"
    # "Late" (overdue) and "At risk" (ETA beyond tolerance) split the open shipments is_late.
    shown = int(metric(at, "Late").replace(",", "")) + int(metric(at, "At risk").replace(",", ""))
    assert late_before <= shown <= late_after
    assert late_before > 0, "the scenario has late shipments"


def test_unreachable_database_shows_a_plain_message(tmp_path: Path, open_app) -> None:
    missing = tmp_path / "nowhere.duckdb"
    at = open_app(missing)
    assert not at.exception
    assert len(at.error) == 1
    assert "Worker unreachable since" in at.error[0].value
    assert "does not exist" in at.error[0].value
    assert not at.get("deck_gl_json_chart"), "the page does not run without data"


def test_recovers_by_itself_when_the_database_appears(tmp_path: Path, open_app) -> None:
    path = tmp_path / "later.duckdb"
    at = open_app(path)
    assert at.error
    build_dashboard_db(path, minutes=3, rate=10.0)
    at.run()  # what the banner's timer does every few seconds
    assert_clean(at)
    assert at.get("deck_gl_json_chart")


def test_dead_letters_are_shown_as_plain_text(tmp_path: Path, open_app) -> None:
    hostile = '<img src=x onerror="alert(1)"> **bold** [link](javascript:alert(1)) ü'
    path = tmp_path / "hostile.duckdb"
    store = Store(path)
    store.load_reference(DATA_DIR)
    letters = [
        DeadLetter("shipment-events", 0, 0, "<b>bad</b> _reason_", b"k", hostile.encode()),
        DeadLetter("shipment-events", 0, 1, "not UTF-8", b"k", b"<script>\xff"),
    ]
    store.apply_batch(
        Batch(dead_letters=letters, next_offsets={("shipment-events", 0): 2}, messages=2),
        dt.datetime.now(dt.UTC),
    )
    store.close()
    at = open_app(path, HEALTH_PAGE)
    assert_clean(at)
    texts = [m.value for m in (*at.markdown, *at.caption, *at.info, *at.warning)]
    assert not any("onerror" in text or "<b>bad" in text for text in texts)
    assert all("onerror" not in h.proto.body for h in at.html)
    latest = frame_with(at, "value_text").set_index("offset")
    assert latest.loc[0, "reason"] == "<b>bad</b> _reason_"
    assert latest.loc[0, "value_text"] == hostile, "valid UTF-8 is shown verbatim"
    assert latest.loc[1, "value_text"] == "<script>\\xFF", "invalid bytes are shown escaped"


def test_map_follows_the_plant_filter(network_db: DashboardDb, open_app) -> None:
    network = load_network()
    expected = network_db.trucks()
    plants = [s for s in network.sites.values() if s.kind == "plant"]
    plant = max(plants, key=lambda p: sum(r["origin_site_id"] == p.site_id for r in expected))
    wanted = {r["shipment_id"] for r in expected if r["origin_site_id"] == plant.site_id}
    assert 0 < len(wanted) < len(expected), "the scenario has trucks from several plants"
    at = open_app(network_db.path, plant=plant.site_id)
    assert_clean(at)
    assert at.multiselect(key="filter_plant").value == [plant.site_id]
    layers = deck_layers(at)
    assert {t["title"] for t in layers["trucks"]["data"]} == wanted
    assert metric(at, "Trucks on the road") == f"{len(wanted):,}"
    # The other plants leave the map; distribution centres and distributors stay.
    shown = {s["title"].rsplit("(", 1)[1].rstrip(")") for s in layers["sites"]["data"]}
    assert shown == {s for s in network.sites if s not in {p.site_id for p in plants}} | {
        plant.site_id
    }


def test_map_follows_the_segment_filter(network_db: DashboardDb, open_app) -> None:
    network = load_network()
    expected = network_db.trucks()
    skus = oracle.planned_skus(network_db.events, dt.datetime.now(dt.UTC))

    def trucks_of(segment: str) -> set[str]:
        return {
            r["shipment_id"]
            for r in expected
            if any(network.skus[k].segment == segment for k in skus.get(r["shipment_id"], ()))
        }

    segment = next(s for s in ("truck", "agricultural", "van") if len(trucks_of(s)) > 0)
    wanted = trucks_of(segment)
    assert len(wanted) < len(expected)
    at = open_app(network_db.path, segment=segment, sku="no-such-sku")
    assert_clean(at)
    assert at.multiselect(key="filter_sku").value == [], "unknown URL values are dropped"
    layers = deck_layers(at)
    assert {t["title"] for t in layers["trucks"]["data"]} == wanted
    assert metric(at, "Trucks on the road") == f"{len(wanted):,}"
    # Site sizes count only the segment's stock.
    segment_skus = [k.sku for k in network.skus.values() if k.segment == segment]
    stock = db_value(
        network_db.path,
        f"SELECT sum(on_hand) FROM inventory_now WHERE sku IN {queries.in_list(segment_skus)}",
    )
    shown = [re.search(r"On hand: (-?[\d,]+) tires", s["detail"]) for s in layers["sites"]["data"]]
    assert sum(int(m.group(1).replace(",", "")) for m in shown if m) == (stock or 0)
