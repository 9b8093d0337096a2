"""The KPI page: its SQL against the oracle on a hand-made scenario and on a simulated network,
its figure and text builders, and the page itself under AppTest.

The period definition checked everywhere is the oracle's (tests/oracle.py, decisions 11-12):
a period [start, end) holds the shipments whose planned arrival lies in it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import flows, kpi_queries, theme
from dashboard.filters import Filters
from ingest.database import configure, timestamp_literal
from ingest.network import load_network
from ingest.store import Store
from tests import oracle
from tests.apptest import assert_clean, run_page
from tests.browser.dashboard_db import (
    TOLERANCE_MINUTES,
    DashboardDb,
    build_dashboard_db,
    store_events,
)

REPO = Path(__file__).resolve().parents[2]
KPI_PAGE = REPO / "dashboard" / "app_pages" / "kpis.py"
T = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
HOUR = kpi_queries.PERIOD_BY_KEY["1h"]
TOLERANCE = 15.0
SKU_A, SKU_B = "P-1756514-82T-S", "P-1856515-88H-S"
DC, DISTRIBUTOR, PLANT = "DC-DE-KSL", "DIS-DE-BER-01", "PLT-DE-HAN"


# --- writing small scenarios by hand (also used by test_dashboard_inventory) ---


class EventLog:
    """Contract events written one by one, each with a fresh event_id ("latest" ties: the
    greater id wins, so ids are zero-padded in creation order)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def add(
        self, event_type: str, at: dt.datetime, event_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        event = {
            "event_id": event_id or f"evt-{next(self._ids):05d}",
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": at.isoformat(),
            "source": "test",
            **{k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in fields.items()},
        }
        self.events.append(event)
        return event

    def shipment(
        self,
        shipment_id: str,
        planned_arrival: dt.datetime,
        *,
        carrier: str = "CAR-NWS",
        origin: str = DC,
        destination: str = DISTRIBUTOR,
        lines: list[tuple[str, int]] | None = None,
        departed: dt.datetime | None = None,
        arrived: dt.datetime | None = None,
        delivered: tuple[dt.datetime, list[tuple[str, int]], int] | None = None,
        cancelled: dt.datetime | None = None,
        planned_hours: float = 2.0,
    ) -> None:
        """A whole lifecycle; `delivered` = (time, good lines, damaged tires)."""
        planned_departure = planned_arrival - dt.timedelta(hours=planned_hours)
        plan = [{"sku": s, "quantity": q} for s, q in (lines or [(SKU_A, 10)])]
        created_at = planned_departure - dt.timedelta(hours=1)
        self.add(
            "shipment.created", created_at, shipment_id=shipment_id, origin_site_id=origin,
            destination_site_id=destination, carrier_id=carrier, mode="road",
            planned_departure=planned_departure, planned_arrival=planned_arrival, lines=plan,
        )  # fmt: skip
        if departed:
            self.add("shipment.departed", departed, shipment_id=shipment_id)
        if arrived:
            self.add("shipment.arrived", arrived, shipment_id=shipment_id)
        if delivered:
            at, good, damaged = delivered
            self.add(
                "shipment.delivered", at, shipment_id=shipment_id, damaged_quantity=damaged,
                lines=[{"sku": s, "quantity": q} for s, q in good],
            )  # fmt: skip
        if cancelled:
            self.add("shipment.cancelled", cancelled, shipment_id=shipment_id)


def read_sql(path: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        configure(con)
        return con.execute(sql).to_arrow_table().to_pandas()
    finally:
        con.close()


def at(minutes_after_ten: float) -> dt.datetime:
    return dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes_after_ten)


def scenario() -> EventLog:
    """T = 12:00, tolerance 15 min; the current hour is [11:00, 12:00), the previous [10:00,
    11:00). Comments say how each shipment counts in its period."""
    log = EventLog()
    d = at(-60)  # departures long before
    log.shipment("S01", at(70), departed=d, arrived=at(80), delivered=(at(90), [(SKU_A, 10)], 0))
    # on the period's first instant; on time (14 min) but short: not in full
    log.shipment("S02", at(60), departed=d, arrived=at(74), delivered=(at(75), [(SKU_A, 9)], 1))
    log.shipment("S03", at(110), departed=d)  # open, due 12:05 with tolerance: not judged yet
    log.shipment("S04", at(30), departed=d)  # previous hour, open and overdue: late
    log.shipment("S05", at(65), departed=d, cancelled=at(66))  # cancelled: never counted
    log.shipment("S06", at(120), departed=d)  # planned arrival = T: outside the period
    log.shipment("S07", at(50), departed=d, arrived=at(70))  # previous hour, 20 min late
    log.shipment(  # previous hour; the plan repeats a SKU: 5 + 5 planned, 10 delivered
        "S08", at(40), lines=[(SKU_A, 5), (SKU_A, 5), (SKU_B, 3)], departed=d,
        arrived=at(45), delivered=(at(50), [(SKU_A, 10), (SKU_B, 3)], 0),
    )  # fmt: skip
    log.shipment(  # early, more than planned plus damaged tires: on time and in full
        "S09", at(90), carrier="CAR-GAL", departed=d, arrived=at(60),
        delivered=(at(70), [(SKU_A, 12)], 2),
    )  # fmt: skip
    # open; planned + tolerance = 11:59:59.999 < T: overdue, late
    log.shipment("S10", at(105) - dt.timedelta(milliseconds=1), departed=d)
    log.shipment("S11", at(105), departed=d)  # planned + tolerance = T exactly: not yet
    log.shipment("S12", at(65), carrier="CAR-GAL", departed=d, arrived=at(100))  # 35 min late
    log.shipment("S13", at(80), departed=d, arrived=at(85))  # on time, arrived, not received
    return log


@pytest.fixture(scope="module")
def scenario_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path_factory.mktemp("kpi") / "s.duckdb"
    log = scenario()
    store_events(path, log.events, tolerance_minutes=TOLERANCE)
    return path, log.events


def periods(as_of: dt.datetime, period: kpi_queries.Period) -> dict[str, tuple]:
    start = as_of - period.length
    return {"current": (start, as_of), "previous": (start - period.length, start)}


def expected_rates(
    events: list[dict[str, Any]], as_of: dt.datetime, period: kpi_queries.Period, tol: float
) -> dict[str, tuple[float | None, float | None]]:
    return {
        name: (
            oracle.on_time_rate(events, as_of, tol, start, end),
            oracle.otif(events, as_of, tol, start, end),
        )
        for name, (start, end) in periods(as_of, period).items()
    }


def same(a: Any, b: Any) -> bool:
    if a is None or pd.isna(a):
        return b is None or pd.isna(b)
    return b is not None and not pd.isna(b) and a == pytest.approx(b, abs=1e-12)


# --- pure parts ---


def test_periods_are_a_whitelist_with_buckets_that_fit() -> None:
    keys = [p.key for p in kpi_queries.PERIODS]
    assert len(set(keys)) == len(keys)
    assert len({f"Last {p.label}" for p in kpi_queries.PERIODS}) == len(keys), "URL labels"
    assert kpi_queries.DEFAULT_PERIOD in kpi_queries.PERIODS
    for period in kpi_queries.PERIODS:
        assert period.length % period.bucket == dt.timedelta(0)
        assert 5 <= period.length / period.bucket <= 31
        assert 30 <= period.length / period.step <= 100  # stock history points


def test_measured_at_is_the_whole_second() -> None:
    now = dt.datetime(2026, 3, 2, 11, 59, 59, 987654, tzinfo=dt.UTC)
    assert kpi_queries.measured_at(now) == dt.datetime(2026, 3, 2, 11, 59, 59, tzinfo=dt.UTC)


def test_bucket_starts_are_aligned_and_cover_the_period() -> None:
    as_of = dt.datetime(2026, 3, 2, 11, 52, 30, tzinfo=dt.UTC)
    starts = kpi_queries.bucket_starts(as_of, HOUR)
    assert starts[0] == dt.datetime(2026, 3, 2, 10, 50, tzinfo=dt.UTC)
    assert starts[-1] == dt.datetime(2026, 3, 2, 11, 50, tzinfo=dt.UTC)
    assert all(b - a == HOUR.bucket for a, b in itertools.pairwise(starts))
    day = kpi_queries.PERIOD_BY_KEY["7d"]
    assert kpi_queries.bucket_starts(as_of, day)[0].hour == 0  # UTC midnights
    exact = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    assert kpi_queries.bucket_starts(exact, HOUR)[-1] == exact - HOUR.bucket


def test_user_choices_reach_sql_only_as_literals() -> None:
    hostile = "CAR'); DROP TABLE events; --"
    filters = Filters(carrier=(hostile,), status=("late",))
    for build in (
        kpi_queries.period_kpis_sql,
        kpi_queries.in_transit_sql,
        kpi_queries.throughput_sql,
        kpi_queries.lane_transit_sql,
        kpi_queries.carrier_scorecard_sql,
    ):
        sql = build(filters, HOUR, T)
        assert "'CAR''); DROP TABLE events; --'" in sql
        assert hostile not in sql.replace("'CAR''); DROP TABLE events; --'", "")
        assert "TIMESTAMPTZ '2026-03-02 11:00:00.000000+00'" in sql  # T - period
        assert "delivery_status IN" not in sql, "KPIs ignore the status filter"


def test_tile_texts() -> None:
    assert flows.rate_text(0.66666) == "66.7 %"
    assert flows.rate_text(None) == flows.rate_text(float("nan")) == "—"
    assert flows.rate_delta(0.75, 0.5) == "+25.0 pts"
    assert flows.rate_delta(0.5, None) is None
    assert flows.count_delta(1200, 1500) == "-300"
    assert flows.minutes_delta(30.0, 10.0) == "+20.0 min"
    assert flows.minutes_delta(300.0, 0.0) == "+5.0 h"
    assert flows.minutes_delta(0.5, 0.7) == "-12 s"
    assert flows.per_100_delta(12.5, 10.0) == "+2.5"


def throughput_frame() -> pd.DataFrame:
    starts = kpi_queries.bucket_starts(T, HOUR)
    return pd.DataFrame(
        {
            "bucket_start": [pd.Timestamp(s) for s in starts],
            "shipments": list(range(len(starts))),
            "tires": [100 * i for i in range(len(starts))],
        }
    )


def test_throughput_chart_has_units_and_one_bar_per_bucket() -> None:
    fig = flows.throughput(throughput_frame(), HOUR.bucket, HOUR.bucket_label)
    tires, shipments = fig.data
    assert len(tires.x) == len(shipments.x) == 12
    assert fig.layout.yaxis.title.text == "Tires / 5 min"
    assert fig.layout.yaxis2.title.text == "Shipments / 5 min"
    assert fig.layout.xaxis2.title.text == "Delivery time (UTC)"
    assert tires.x[0] == pd.Timestamp(T - HOUR.length) + pd.Timedelta(minutes=2.5)  # middle


def lanes_frame(hours: list[float], over_plan_minutes: list[float]) -> pd.DataFrame:
    n = len(hours)
    return pd.DataFrame(
        {
            "origin_city": ["Kassel"] * n,
            "destination_city": [f"City {i}" for i in range(n)],
            "mode": ["road"] * n,
            "shipments": [3] * n,
            "avg_hours": hours,
            "p90_hours": [h * 1.2 for h in hours],
            "planned_hours": [h - m / 60 for h, m in zip(hours, over_plan_minutes, strict=True)],
            "over_plan_hours": [m / 60 for m in over_plan_minutes],
        }
    )


def test_lane_chart_colours_lanes_over_plan_beyond_tolerance_as_late() -> None:
    fig = flows.lane_transit(lanes_frame([9.0, 6.5, 3.0], [90.0, 10.0, -5.0]), 60.0)
    bars = {trace.name: trace for trace in fig.data if trace.type == "bar"}
    assert bars["Average, within tolerance"].marker.color == theme.ON_TIME.hex
    assert bars["Average, late"].marker.color == theme.LATE.hex
    assert list(bars["Average, late"].y) == ["Kassel → City 0 (road)"]
    assert fig.layout.xaxis.title.text == "Transit time (hours)"
    assert {t.name for t in fig.data} >= {"P90 transit", "Plan"}


def test_short_transit_times_read_in_minutes() -> None:
    fig = flows.lane_transit(lanes_frame([0.15, 0.1], [1.0, 0.5]), 1.0)
    assert fig.layout.xaxis.title.text == "Transit time (minutes)"
    plan = next(t for t in fig.data if t.name == "Plan")
    assert plan.x[-1] == pytest.approx((0.15 - 1 / 60) * 60)  # worst lane drawn on top


# --- SQL against a hand-made scenario ---


def test_period_kpis_match_the_oracle_and_the_hand_count(scenario_db) -> None:
    path, events = scenario_db
    kpis = read_sql(path, kpi_queries.period_kpis_sql(Filters(), HOUR, T)).set_index("period")
    now, before = kpis.loc["current"], kpis.loc["previous"]
    # current: S01, S02, S09, S13 on time; S10 overdue; S12 late -> 4 / 6; OTIF S01, S09
    assert (now["judged"], now["on_time"], now["otif"]) == (6, 4, 2)
    assert (now["arrived"], now["overdue_open"]) == (5, 1)
    assert now["shipments"] == 8  # + S03 and S11, not judged yet; S05 cancelled, S06 outside
    # previous: S04 overdue, S07 late, S08 on time and in full (a repeated SKU summed)
    assert (before["judged"], before["on_time"], before["otif"]) == (3, 1, 1)
    for name, (rate, otif) in expected_rates(events, T, HOUR, TOLERANCE).items():
        assert same(kpis.loc[name, "on_time_rate"], rate), name
        assert same(kpis.loc[name, "otif_rate"], otif), name
    # delivered by delivery time: S01 (11:30, 10), S02 (11:15, 9), S09 (11:10, 12)
    assert (now["delivered_shipments"], now["delivered_tires"]) == (3, 31)
    assert (before["delivered_shipments"], before["delivered_tires"]) == (1, 13)
    assert now["tolerance_minutes"] == TOLERANCE
    assert bool(before["covered"]), "the scenario's events start before 10:00"


IN_FULL = {"S01": True, "S02": False, "S08": True, "S09": True}  # the delivered ones


def in_full_by_shipment(path: Path, relation: str) -> dict[str, bool]:
    frame = read_sql(path, f"SELECT shipment_id, in_full FROM {relation}")
    return dict(zip(frame["shipment_id"], frame["in_full"].astype(bool), strict=True))


def test_in_full_is_kept_with_the_state_as_a_replay_computes_it(scenario_db) -> None:
    """The live state stores OTIF's in-full test; a replay computes it from the line lists.
    Both agree, and a shipment not delivered is not in full."""
    path, _ = scenario_db
    live = in_full_by_shipment(path, "shipments_now")
    replay = in_full_by_shipment(path, f"shipments_asof({timestamp_literal(T)}, {TOLERANCE})")
    assert live == replay
    assert {k: v for k, v in live.items() if v or k in IN_FULL} == IN_FULL


def upgraded_copy(source: Path, path: Path, migration: str, undo: str) -> Path:
    """A copy of the store at `source` made as before `migration` (`undo` removes what it
    added), then opened by the Store, which applies the migration again."""
    shutil.copy(source, path)
    con = duckdb.connect(str(path))
    try:
        con.execute(undo)
        con.execute("DELETE FROM schema_migrations WHERE name = ?", [migration])
    finally:
        con.close()
    Store(path, on_time_tolerance_minutes=TOLERANCE).close()
    return path


def test_an_older_database_gets_in_full_when_it_is_upgraded(scenario_db, tmp_path: Path) -> None:
    """Migration 5 adds the flag to a store written before it and fills it for every shipment."""
    path = upgraded_copy(
        scenario_db[0],
        tmp_path / "old.duckdb",
        "005_in_full.sql",
        "ALTER TABLE shipment_state DROP COLUMN in_full",
    )
    assert in_full_by_shipment(path, "shipments_now") == in_full_by_shipment(
        scenario_db[0], "shipments_now"
    )


def test_period_kpis_count_deliveries_apart_from_the_shipments_due(tmp_path: Path) -> None:
    """Due (by planned arrival) and delivered (by delivery time) are two sets read in one
    scan: a shipment counts in each by its own instant, or in neither."""
    log = EventLog()
    d = at(-120)
    # planned before both periods, delivered in the current one: delivered only
    log.shipment(
        "A",
        at(-30),
        lines=[(SKU_A, 7)],
        departed=d,
        arrived=at(75),
        delivered=(at(80), [(SKU_A, 7)], 0),
    )
    # due in the previous hour, delivered in the current one (late)
    log.shipment(
        "B",
        at(30),
        lines=[(SKU_A, 5)],
        departed=d,
        arrived=at(64),
        delivered=(at(65), [(SKU_A, 5)], 0),
    )
    # due in the current hour, delivered early in the previous one
    log.shipment(
        "C",
        at(90),
        lines=[(SKU_A, 3)],
        departed=d,
        arrived=at(40),
        delivered=(at(55), [(SKU_A, 3)], 0),
    )
    # delivered at exactly T: in neither delivered count; due in the current hour
    log.shipment(
        "D",
        at(115),
        lines=[(SKU_A, 4)],
        departed=d,
        arrived=at(110),
        delivered=(at(120), [(SKU_A, 4)], 0),
    )
    # delivered at the current hour's first instant, planned after T: delivered only
    log.shipment(
        "E",
        at(150),
        lines=[(SKU_A, 2)],
        departed=d,
        arrived=at(59),
        delivered=(at(60), [(SKU_A, 2)], 0),
    )
    path = tmp_path / "k.duckdb"
    store_events(path, log.events, tolerance_minutes=TOLERANCE)
    kpis = read_sql(path, kpi_queries.period_kpis_sql(Filters(), HOUR, T)).set_index("period")
    now, before = kpis.loc["current"], kpis.loc["previous"]
    assert (now["shipments"], now["on_time"], now["otif"]) == (2, 2, 2)  # C, D
    assert (before["shipments"], before["judged"], before["on_time"]) == (1, 1, 0)  # B
    assert (now["delivered_shipments"], now["delivered_tires"]) == (3, 14)  # A, B, E
    assert (before["delivered_shipments"], before["delivered_tires"]) == (1, 3)  # C
    for name, (rate, otif) in expected_rates(log.events, T, HOUR, TOLERANCE).items():
        assert same(kpis.loc[name, "on_time_rate"], rate), name
        assert same(kpis.loc[name, "otif_rate"], otif), name


def test_carrier_filter_and_scorecard_match_the_oracle_per_carrier(scenario_db) -> None:
    path, events = scenario_db
    shipments = oracle.derive_shipments(events, T, TOLERANCE)
    card = read_sql(path, kpi_queries.carrier_scorecard_sql(Filters(), HOUR, T))
    card = card.set_index("carrier_id")
    whole = read_sql(path, kpi_queries.period_kpis_sql(Filters(), HOUR, T)).set_index("period")
    assert card["judged"].sum() == whole.loc["current", "judged"]
    for carrier in ("CAR-NWS", "CAR-GAL"):
        mine = {s["shipment_id"] for s in shipments if s["carrier_id"] == carrier}
        subset = [e for e in events if e.get("shipment_id") in mine]
        expected = expected_rates(subset, T, HOUR, TOLERANCE)
        filtered = read_sql(
            path, kpi_queries.period_kpis_sql(Filters(carrier=(carrier,)), HOUR, T)
        ).set_index("period")
        for name, (rate, otif) in expected.items():
            assert same(filtered.loc[name, "on_time_rate"], rate), (carrier, name)
            assert same(filtered.loc[name, "otif_rate"], otif), (carrier, name)
        assert same(card.loc[carrier, "on_time_rate"], expected["current"][0])
        assert same(card.loc[carrier, "otif_rate"], expected["current"][1])
        assert same(card.loc[carrier, "previous_on_time_rate"], expected["previous"][0])
    # CAR-GAL: S09 (25 min early) and S12 (35 min late); exceptions none
    assert card.loc["CAR-GAL", "avg_delay_minutes"] == pytest.approx((-30 + 35) / 2)
    assert card.loc["CAR-GAL", "exceptions_per_100"] == 0


def test_in_transit_now_and_one_period_earlier_follow_the_contract(scenario_db) -> None:
    path, events = scenario_db
    road = read_sql(path, kpi_queries.in_transit_sql(Filters(), HOUR, T)).set_index("moment")
    for moment, instant in (("now", T), ("earlier", T - HOUR.length)):
        rows = oracle.derive_in_transit(events, instant)
        assert road.loc[moment, "tires"] == sum(r["in_transit"] for r in rows), moment
    # now: S03, S04, S06, S07 (arrived), S10, S11, S12, S13: departed, not received
    assert road.loc["now", "shipments"] == 8


def test_throughput_counts_deliveries_by_delivery_time(scenario_db) -> None:
    path, _ = scenario_db
    buckets = read_sql(path, kpi_queries.throughput_sql(Filters(), HOUR, T))
    assert len(buckets) == 12
    by_start = dict(
        zip(buckets["bucket_start"].dt.strftime("%H:%M"), buckets["tires"], strict=True)
    )
    assert by_start["11:10"] == 12 and by_start["11:15"] == 9 and by_start["11:30"] == 10
    assert buckets["tires"].sum() == 31 and buckets["shipments"].sum() == 3


def test_lane_transit_compares_actual_with_planned_hours(scenario_db) -> None:
    path, _ = scenario_db
    lanes = read_sql(path, kpi_queries.lane_transit_sql(Filters(), HOUR, T))
    assert len(lanes) == 1  # every scenario shipment runs Kassel -> Berlin by road
    lane = lanes.iloc[0]
    # arrived in the current hour: S01, S02, S09, S12, S13, departed 09:00, plans of 2 h
    transit = [2 + 20 / 60, 2 + 14 / 60, 2.0, 2 + 40 / 60, 2 + 25 / 60]
    assert lane["shipments"] == 5
    assert lane["avg_hours"] == pytest.approx(sum(transit) / 5)
    assert lane["planned_hours"] == pytest.approx(2.0)
    assert lane["over_plan_hours"] == pytest.approx(sum(transit) / 5 - 2.0)
    assert lane["p90_hours"] == pytest.approx(pd.Series(transit).quantile(0.9))


# --- the page under AppTest, over a simulated network ---


@pytest.fixture(scope="module")
def network_db(tmp_path_factory: pytest.TempPathFactory) -> DashboardDb:
    return build_dashboard_db(tmp_path_factory.mktemp("kpi-network") / "network.duckdb")


@pytest.fixture
def open_page(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """Run the page on its own against a database, with URL parameters and filters."""
    return functools.partial(run_page, monkeypatch, KPI_PAGE)


def tiles(page: AppTest) -> dict[str, Any]:
    return {m.label: m for m in page.metric}


def test_kpi_page_shows_the_oracles_rates_for_the_period(network_db, open_page) -> None:
    page = open_page(network_db.path, period="Last 5 min")
    assert_clean(page)
    assert page.segmented_control(key="period").value == "5m"
    as_of = page.session_state["kpi_measured_at"]
    assert as_of.microsecond == 0
    expected = expected_rates(
        network_db.events, as_of, kpi_queries.PERIOD_BY_KEY["5m"], TOLERANCE_MINUTES
    )
    (rate, otif), (rate_before, otif_before) = expected["current"], expected["previous"]
    assert rate is not None and rate_before is not None, "both periods hold judged shipments"
    shown = tiles(page)
    assert shown["On-time rate"].value == flows.rate_text(rate)
    assert shown["OTIF"].value == flows.rate_text(otif)
    assert shown["On-time rate"].proto.delta == flows.rate_delta(rate, rate_before)
    assert shown["OTIF"].proto.delta == flows.rate_delta(otif, otif_before)
    caption = page.caption[0].value
    assert f"up to {as_of:%d %b %H:%M:%S} UTC" in caption


def test_kpi_page_in_transit_equals_the_database(network_db, open_page) -> None:
    page = open_page(network_db.path, period="Last 5 min")
    assert_clean(page)
    in_transit = read_sql(network_db.path, "SELECT sum(in_transit) AS t FROM in_transit_now")
    total = int(in_transit["t"].iloc[0])
    oracle_rows = oracle.derive_in_transit(network_db.events, dt.datetime.now(dt.UTC))
    assert total == sum(r["in_transit"] for r in oracle_rows) > 0
    shown = tiles(page)
    assert shown["Tires in transit"].value == f"{total:,}"
    shipments = sum(
        1
        for r in network_db.shipments()
        if r["status"] in ("IN_TRANSIT", "ARRIVED") and r["planned_quantity"] is not None
    )
    assert shown["Shipments in transit"].value == f"{shipments:,}"


def test_kpi_page_follows_the_carrier_filter(network_db, open_page) -> None:
    carrier = "CAR-NWS"
    page = open_page(
        network_db.path, Filters(carrier=(carrier,), status=("late",)), period="Last 15 min"
    )
    assert_clean(page)
    as_of = page.session_state["kpi_measured_at"]
    mine = {s["shipment_id"] for s in network_db.shipments(as_of) if s["carrier_id"] == carrier}
    subset = [e for e in network_db.events if e.get("shipment_id") in mine]
    rate, otif = expected_rates(subset, as_of, kpi_queries.PERIOD_BY_KEY["15m"], TOLERANCE_MINUTES)[
        "current"
    ]
    assert tiles(page)["On-time rate"].value == flows.rate_text(rate)
    assert tiles(page)["OTIF"].value == flows.rate_text(otif)
    card = next(df.value for df in page.dataframe if "Carrier" in df.value.columns)
    assert list(card["Carrier"]) == ["Nordwind Spedition GmbH"]
    assert any("status filter does not apply" in c.value for c in page.caption)


def test_kpi_page_scorecard_adds_up_to_the_headline(network_db, open_page) -> None:
    page = open_page(network_db.path, period="Last 15 min")
    assert_clean(page)
    as_of = page.session_state["kpi_measured_at"]
    card = next(df.value for df in page.dataframe if "Carrier" in df.value.columns)
    kpis = read_sql(
        network_db.path,
        kpi_queries.period_kpis_sql(Filters(), kpi_queries.PERIOD_BY_KEY["15m"], as_of),
    ).set_index("period")
    assert card["Judged"].sum() == kpis.loc["current", "judged"]
    assert card["Shipments"].sum() == kpis.loc["current", "shipments"]
    charts = page.get("plotly_chart")
    assert len(charts) == 2, "throughput and transit vs plan"
    specs = [json.loads(c.proto.spec) for c in charts]
    titles = [s["layout"]["yaxis"]["title"]["text"] for s in specs]
    assert "Tires / minute" in titles


def test_kpi_page_explains_an_empty_database(tmp_path: Path, open_page) -> None:
    path = tmp_path / "empty.duckdb"
    store_events(path, [])
    page = open_page(path)
    assert_clean(page)
    assert tiles(page)["On-time rate"].value == "—"
    assert tiles(page)["Tires in transit"].value == "0"
    infos = " ".join(i.value for i in page.info)
    assert "No shipment was due in the last 24 h" in infos
    assert "Nothing was delivered" in infos
    assert "No carrier had a shipment due" in infos


def test_kpi_page_without_a_database_says_so(tmp_path: Path, open_page) -> None:
    page = open_page(tmp_path / "nowhere.duckdb")
    assert not page.exception
    assert len(page.error) == 1 and "Worker unreachable since" in page.error[0].value
    assert not page.metric


def test_every_filter_is_copied_but_status() -> None:
    filters = Filters(region=("DACH",), carrier=("CAR-NWS",), mode=("road",), status=("late",))
    assert kpi_queries.kpi_filters(filters) == dataclasses.replace(filters, status=())


def on_the_road(network_db: DashboardDb, keep: Callable[[dict[str, Any]], bool]) -> tuple[int, int]:
    """Shipments and tires in transit now among the oracle's shipments that `keep` selects."""
    rows = [
        r
        for r in network_db.shipments()
        if r["status"] in ("IN_TRANSIT", "ARRIVED") and r["planned_quantity"] is not None
    ]
    chosen = [r for r in rows if keep(r)]
    assert 0 < len(chosen) < len(rows), "the filter keeps some shipments, not all"
    return len(chosen), sum(r["planned_quantity"] for r in chosen)


def test_kpi_page_follows_the_plant_filter(network_db, open_page) -> None:
    plant = "PLT-DE-HAN"
    shipments, tires = on_the_road(network_db, lambda r: r["origin_site_id"] == plant)
    page = open_page(network_db.path, Filters(plant=(plant,)), period="Last 15 min")
    assert_clean(page)
    assert tiles(page)["Shipments in transit"].value == f"{shipments:,}"
    assert tiles(page)["Tires in transit"].value == f"{tires:,}"
    as_of = page.session_state["kpi_measured_at"]
    mine = {s["shipment_id"] for s in network_db.shipments(as_of) if s["origin_site_id"] == plant}
    subset = [e for e in network_db.events if e.get("shipment_id") in mine]
    rate, otif = expected_rates(subset, as_of, kpi_queries.PERIOD_BY_KEY["15m"], TOLERANCE_MINUTES)[
        "current"
    ]
    assert tiles(page)["On-time rate"].value == flows.rate_text(rate)
    assert tiles(page)["OTIF"].value == flows.rate_text(otif)


def test_kpi_page_follows_the_segment_filter(network_db, open_page) -> None:
    network = load_network()
    skus = oracle.planned_skus(network_db.events, dt.datetime.now(dt.UTC))
    shipments, tires = on_the_road(
        network_db,
        lambda r: any(network.skus[k].segment == "van" for k in skus.get(r["shipment_id"], ())),
    )
    page = open_page(network_db.path, Filters(segment=("van",)), period="Last 5 min")
    assert_clean(page)
    assert tiles(page)["Shipments in transit"].value == f"{shipments:,}"
    assert tiles(page)["Tires in transit"].value == f"{tires:,}"
    assert any("counted whole" in c.value for c in page.caption)
