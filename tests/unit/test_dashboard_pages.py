"""Every dashboard page under Streamlit's AppTest, over a database built from a known simulation:
the numbers shown equal the database's (and the oracle's), and a missing worker is a message."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from ingest.network import DATA_DIR
from ingest.store import Batch, DeadLetter, Store
from tests import oracle
from tests.browser.dashboard_db import DashboardDb, build_dashboard_db

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


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


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
