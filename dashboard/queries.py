"""The dashboard's only read side: one SQL per data function, run where the data is.

Every query goes to the worker as one SQL text (over Quack the worker evaluates it whole; with
no worker running, the database file is opened read-only for that query and closed again, so
the dashboard never keeps the worker from starting). Quack takes no bound parameters: values a
user chose reach SQL only after a whitelist (`dashboard.filters.clean`) and through the literal
helpers of `ingest.database`. The SQL builders (`*_sql`) are pure and tested on their own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import streamlit as st

from dashboard.filters import FilterOptions, Filters, filter_options
from ingest.config import DEFAULT_DB
from ingest.database import (
    in_list,
    number_literal,
    sql_file,
    string_literal,
    timestamp_literal,
)
from ingest.errors import ReaderError, TiretrackError
from ingest.network import Network, load_network
from ingest.readers import Reader, open_reader

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2  # cache TTL and live fragment period
OPEN_STATUSES = ("PLANNED", "IN_TRANSIT", "ARRIVED")
ON_THE_ROAD = ("IN_TRANSIT", "ARRIVED")  # departed, not yet received: goods are in transit
TOLERANCE_SQL = "(SELECT \"value\"::DOUBLE FROM settings WHERE name = 'on_time_tolerance_minutes')"
DB_ENV = "TIRETRACK_DB"
# What a failed read can raise: our own errors, and driver or OS errors we did not foresee.
READ_FAILURES = (TiretrackError, duckdb.Error, OSError)


class DataUnavailable(ReaderError):
    """The worker's database cannot be read right now; `since` is the first failure."""

    def __init__(self, reason: str, since: dt.datetime) -> None:
        super().__init__(reason)
        self.reason = reason
        self.since = since


# --- where the data is ---


def database_path(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> Path:
    """`--db PATH` after `streamlit run app.py --`, else $TIRETRACK_DB, else the default."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db", type=Path)
    known, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if known.db is not None:
        return known.db
    environ = os.environ if env is None else env
    return Path(environ[DB_ENV]) if environ.get(DB_ENV) else DEFAULT_DB


class Source:
    """Reads one database; keeps a Quack connection to the worker and re-opens it when it
    fails (the worker restarted); a file reader lives for one query only."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._lock = threading.Lock()
        self._remote: Reader | None = None
        self.unreachable_since: dt.datetime | None = None
        self.last_source = ""

    def query(self, sql: str) -> pa.Table:
        try:
            table = self._query_once(sql)
        except READ_FAILURES:
            try:  # a worker restarted since the last query: attach to the new one
                table = self._query_once(sql)
            except READ_FAILURES as e:
                with self._lock:
                    self.unreachable_since = self.unreachable_since or dt.datetime.now(dt.UTC)
                    since = self.unreachable_since
                log.warning("database %s unavailable: %s", self.db_path, e)
                raise DataUnavailable(str(e), since) from e
        self.unreachable_since = None
        return table

    def _query_once(self, sql: str) -> pa.Table:
        with self._lock:
            reader = self._remote
        if reader is None:
            reader = open_reader(self.db_path)
            if reader.remote:
                with self._lock:
                    if self._remote is None:
                        self._remote = reader
                    else:  # another session attached first: use that one
                        reader.close()
                        reader = self._remote
        self.last_source = "worker" if reader.remote else "file"
        try:
            return reader.query(sql)
        except READ_FAILURES:
            if reader.remote:
                self._drop(reader)
            raise
        finally:
            if not reader.remote:
                reader.close()

    def _drop(self, reader: Reader) -> None:
        with self._lock:
            if self._remote is reader:
                self._remote = None
        try:
            reader.close()
        except Exception as e:  # noqa: BLE001 (a dead connection may fail to close; keep going)
            log.debug("closing a failed reader: %s", e)


@st.cache_resource(show_spinner=False)
def source(db_path: str) -> Source:
    return Source(Path(db_path))


@st.cache_data(ttl=REFRESH_SECONDS, max_entries=512, show_spinner=False)
def _frame(db_path: str, sql: str) -> pd.DataFrame:
    return source(db_path).query(sql).to_pandas()


def run(sql: str) -> pd.DataFrame:
    """One SQL on the current database, cached for REFRESH_SECONDS."""
    return _frame(str(database_path()), sql)


def current_source() -> Source:
    return source(str(database_path()))


@st.cache_resource(show_spinner=False)
def reference_network() -> Network:
    return load_network()


def options() -> FilterOptions:
    return filter_options(reference_network())


# --- SQL fragments ---


def chosen_skus_sql(filters: Filters) -> str | None:
    """`SELECT sku FROM ref_skus ...`: the SKUs the `sku` and `segment` filters keep (both must
    hold), or None when neither is set."""
    where = []
    if filters.sku:
        where.append(f"sku IN {in_list(filters.sku)}")
    if filters.segment:
        where.append(f"segment IN {in_list(filters.segment)}")
    return f"SELECT sku FROM ref_skus WHERE {' AND '.join(where)}" if where else None


def sku_condition(filters: Filters, column: str) -> str:
    """SQL true when the SKU in `column` (a row's own SKU) passes the sku and segment filters."""
    chosen = chosen_skus_sql(filters)
    return "TRUE" if chosen is None else f"{column} IN ({chosen})"


def site_condition(filters: Filters, site: str) -> str:
    """SQL true when the `ref_sites` row aliased `site` passes region, plant and distributor
    (`filters.site_matches` in SQL: a site filter narrows only the sites of its kind)."""
    where = []
    if filters.region:
        where.append(f"{site}.region IN {in_list(filters.region)}")
    if filters.plant:
        where.append(f"({site}.kind <> 'plant' OR {site}.site_id IN {in_list(filters.plant)})")
    if filters.distributor:
        where.append(
            f"({site}.kind <> 'distributor' OR {site}.site_id IN {in_list(filters.distributor)})"
        )
    return " AND ".join(where) or "TRUE"


def open_status_sql(statuses: Sequence[str], alias: str = "") -> str:
    """SQL true for a shipment (a `shipments` row, `alias.` before its columns) in one of these
    open statuses. Neither delivered nor cancelled is implied by every open status (see
    shipment_status in ingest/sql/macros.sql); said first, on the columns as stored, it reaches
    the scan of the state table, which then skips the closed shipments (most of them)."""
    if not set(statuses) <= set(OPEN_STATUSES):
        raise ValueError(f"not open statuses: {statuses}")
    return (
        f"{alias}delivered_at IS NULL AND {alias}cancelled_at IS NULL "
        f"AND {alias}status IN {in_list(statuses)}"
    )


def instant_sql(as_of: dt.datetime | None) -> str:
    """T: the worker's clock for live views, or a replay instant."""
    return "now()" if as_of is None else timestamp_literal(as_of)


# A shipment's delivery status (theme.py has the colours): the SQL is shared with the worker's
# late / at_risk alert rules, so the dashboard and the alerts agree on what is late.
DELIVERY_STATUS_SQL = sql_file("delivery_status.sql")


def region_condition(filters: Filters, origin: str, destination: str) -> str:
    """SQL true when the site in `origin` or the one in `destination` (site_id columns) lies in
    a chosen region; TRUE without a region filter. Subqueries rather than joins to `ref_sites`:
    a query that names its sites after aggregating need not join every shipment to them."""
    if not filters.region:
        return "TRUE"
    in_regions = f"(SELECT site_id FROM ref_sites WHERE region IN {in_list(filters.region)})"
    return f"({origin} IN {in_regions} OR {destination} IN {in_regions})"


def shipments_cte(filters: Filters, as_of: dt.datetime | None, *, names: bool = True) -> str:
    """`WITH ... shipments AS (...)`: filtered shipments with delivery status, names, places.
    Plant filters the origin, distributor the destination; segment and SKU keep a shipment
    when any line of its plan is of a chosen SKU (its quantities stay the whole shipment's).
    `names=False` leaves out the carrier's and sites' names and places (three joins per
    shipment), for a query that aggregates first and names only its groups."""
    t = instant_sql(as_of)
    relation = "shipments_now" if as_of is None else f"shipments_asof({t}, {TOLERANCE_SQL})"
    where = [region_condition(filters, "sh.origin_site_id", "sh.destination_site_id")]
    if filters.carrier:
        where.append(f"sh.carrier_id IN {in_list(filters.carrier)}")
    if filters.mode:
        where.append(f"sh.mode IN {in_list(filters.mode)}")
    if filters.plant:
        where.append(f"sh.origin_site_id IN {in_list(filters.plant)}")
    if filters.distributor:
        where.append(f"sh.destination_site_id IN {in_list(filters.distributor)}")
    chosen_skus = chosen_skus_sql(filters)
    if chosen_skus is not None:  # any planned line of a chosen SKU
        where.append(
            "list_has_any(list_transform(sh.planned_lines, lambda l: l.sku), "
            f"(SELECT list(sku) FROM ({chosen_skus})))"
        )
    status_where = f"delivery_status IN {in_list(filters.status)}" if filters.status else "TRUE"
    # Live, a query reading `shipments` twice scans the state table twice, each time for the
    # columns and rows it needs only: cheaper than materializing every column once. A replay
    # is computed once (DuckDB's default for a CTE read twice).
    inline = "NOT MATERIALIZED " if as_of is None else ""
    names_sql = joins = ""
    if names:
        names_sql = """,
        c.name AS carrier_name,
        o.name AS origin_name, o.city AS origin_city, o.region AS origin_region,
        o.lat AS origin_lat, o.lon AS origin_lon,
        d.name AS destination_name, d.city AS destination_city, d.region AS destination_region,
        d.lat AS destination_lat, d.lon AS destination_lon"""
        joins = """
    LEFT JOIN ref_carriers AS c ON c.carrier_id = sh.carrier_id
    LEFT JOIN ref_sites AS o ON o.site_id = sh.origin_site_id
    LEFT JOIN ref_sites AS d ON d.site_id = sh.destination_site_id"""
    return f"""WITH tol AS (SELECT {TOLERANCE_SQL} AS minutes),
classified AS {inline}(
    SELECT sh.*, {DELIVERY_STATUS_SQL.format(t=t)} AS delivery_status{names_sql}
    FROM {relation} AS sh CROSS JOIN tol{joins}
    WHERE {" AND ".join(where)}
),
shipments AS {inline}(SELECT * FROM classified WHERE {status_where})"""


# How bad a delivery status is (higher is worse): the map draws the worst trucks last.
STATUS_RANK_SQL = """CASE delivery_status WHEN 'late' THEN 4 WHEN 'at_risk' THEN 3
    WHEN 'exception' THEN 2 WHEN 'on_time' THEN 1 ELSE 0 END"""


# --- live map ---


def trucks_sql(filters: Filters, as_of: dt.datetime | None = None) -> str:
    """Shipments on the road with a known position; the worst drawn last (on top)."""
    return f"""{shipments_cte(filters, as_of)}
SELECT shipment_id, status, delivery_status, carrier_id, carrier_name, mode,
    origin_site_id, origin_city, destination_site_id, destination_city,
    planned_arrival, eta, delay_minutes, last_lat, last_lon, last_position_at,
    last_speed_kmh, last_exception_code, last_exception_severity, last_exception_message,
    planned_quantity
FROM shipments
WHERE {open_status_sql(ON_THE_ROAD)} AND last_lat IS NOT NULL AND last_lon IS NOT NULL
ORDER BY {STATUS_RANK_SQL}, shipment_id"""


def sites_sql(filters: Filters, as_of: dt.datetime | None = None) -> str:
    """Reference sites with their stock on hand at T: the sites region, plant and distributor
    keep, the stock of the SKUs segment and SKU keep."""
    stock = "inventory_now" if as_of is None else f"inventory_asof({instant_sql(as_of)})"
    where = f"WHERE {site_condition(filters, 'r')}"
    return f"""WITH stock AS (
    SELECT site_id, sum(on_hand)::BIGINT AS on_hand, count(*) AS skus FROM {stock}
    WHERE {sku_condition(filters, "sku")}
    GROUP BY site_id
)
SELECT r.site_id, r.name, r.kind, r.city, r.country, r.region, r.lat, r.lon,
    coalesce(stock.on_hand, 0) AS on_hand, coalesce(stock.skus, 0) AS skus
FROM ref_sites AS r LEFT JOIN stock USING (site_id)
{where}
ORDER BY on_hand DESC, r.site_id"""


def lanes_sql(filters: Filters, as_of: dt.datetime | None = None) -> str:
    """Tires in transit per origin -> destination (the plan's lines of shipments on the road,
    the contract's in-transit rule), for the shipments the filters select."""
    return f"""{shipments_cte(filters, as_of)}
SELECT origin_site_id, destination_site_id,
    any_value(origin_city) AS origin_city, any_value(destination_city) AS destination_city,
    any_value(origin_lat) AS origin_lat, any_value(origin_lon) AS origin_lon,
    any_value(destination_lat) AS destination_lat, any_value(destination_lon) AS destination_lon,
    sum(planned_quantity)::BIGINT AS in_transit, count(*) AS shipments,
    count(*) FILTER (WHERE delivery_status = 'late') AS late_shipments
FROM shipments
WHERE {open_status_sql(ON_THE_ROAD)} AND origin_lat IS NOT NULL AND destination_lat IS NOT NULL
GROUP BY origin_site_id, destination_site_id
HAVING sum(planned_quantity) > 0
ORDER BY in_transit DESC"""


def replay_window_sql() -> str:
    return """SELECT min(occurred_at) AS first_event_at,
    least(max(occurred_at), now()) AS last_event_at, now() AS checked_at
FROM events"""


def trucks(filters: Filters, as_of: dt.datetime | None = None) -> pd.DataFrame:
    return run(trucks_sql(filters, as_of))


def sites(filters: Filters, as_of: dt.datetime | None = None) -> pd.DataFrame:
    return run(sites_sql(filters, as_of))


def lanes(filters: Filters, as_of: dt.datetime | None = None) -> pd.DataFrame:
    return run(lanes_sql(filters, as_of))


@dataclass(frozen=True)
class ReplayWindow:
    first: dt.datetime
    last: dt.datetime


def replay_window() -> ReplayWindow | None:
    """The span of event time a replay can show; None before the first event."""
    row = run(replay_window_sql()).iloc[0]
    if pd.isna(row["first_event_at"]):
        return None
    return ReplayWindow(row["first_event_at"].to_pydatetime(), row["last_event_at"].to_pydatetime())


# --- one shipment: choice, summary, events ---

MAX_SHIPMENT_ID = 64  # the contract's limit; a longer id from a URL cannot exist


def open_shipments_sql(filters: Filters, as_of: dt.datetime | None = None) -> str:
    """Open shipments at T with what a planner searches them by; the worst first."""
    return f"""{shipments_cte(filters, as_of)}
SELECT shipment_id, status, delivery_status, carrier_id, carrier_name, mode,
    origin_city, destination_city
FROM shipments
WHERE {open_status_sql(OPEN_STATUSES)}
ORDER BY {STATUS_RANK_SQL} DESC, shipment_id"""


def shipment_sql(shipment_id: str, as_of: dt.datetime | None = None) -> str:
    """One shipment's state at T, whatever the filters (a link opens it even when filtered out)."""
    return f"""{shipments_cte(Filters(), as_of)}
SELECT shipment_id, status, delivery_status, carrier_id, carrier_name, mode,
    origin_site_id, origin_name, origin_city, origin_lat, origin_lon,
    destination_site_id, destination_name, destination_city, destination_lat, destination_lon,
    planned_departure, planned_arrival, departed_at, arrived_at, delivered_at, cancelled_at,
    eta, eta_reason, delay_minutes, is_late, planned_quantity, delivered_quantity,
    damaged_quantity, planned_lines, delivered_lines,
    last_lat, last_lon, last_position_at, last_speed_kmh,
    last_exception_code, last_exception_severity, last_exception_message, last_exception_at,
    exception_count, {TOLERANCE_SQL} AS tolerance_minutes
FROM shipments
WHERE shipment_id = {string_literal(shipment_id)}"""


def shipment_events_sql(shipment_id: str, as_of: dt.datetime | None = None) -> str:
    """Every accepted event of one shipment up to T, in event time (the contract's order).
    None is older than the shipment's first folded event (see SHIPMENT_EVENTS_JOIN): that
    bound lets the scan skip older row groups."""
    shipment = string_literal(shipment_id)
    return f"""SELECT event_id, event_type, occurred_at, source, lat, lon, speed_kmh, heading_deg,
    origin_site_id, destination_site_id, carrier_id, mode, planned_departure, planned_arrival,
    lines, damaged_quantity, eta, reason, code, severity, message, estimated_delay_minutes
FROM events
WHERE shipment_id = {shipment} AND occurred_at <= {instant_sql(as_of)}
    AND occurred_at >= coalesce(
        (SELECT first_event_at FROM shipment_state WHERE shipment_id = {shipment}),
        '-infinity'::TIMESTAMPTZ)
ORDER BY occurred_at, event_id"""


def open_shipments(filters: Filters, as_of: dt.datetime | None = None) -> pd.DataFrame:
    return run(open_shipments_sql(filters, as_of))


def shipment(shipment_id: str, as_of: dt.datetime | None = None) -> pd.Series | None:
    """The shipment at T, or None when it does not exist (yet) at T."""
    if not 0 < len(shipment_id) <= MAX_SHIPMENT_ID or "\x00" in shipment_id:
        return None
    frame = run(shipment_sql(shipment_id, as_of))
    return None if frame.empty else frame.iloc[0]


def shipment_events(shipment_id: str, as_of: dt.datetime | None = None) -> pd.DataFrame:
    return run(shipment_events_sql(shipment_id, as_of))


# --- delays and exceptions ---


# Events `e` of shipments `s`. No event of a shipment is older than its first folded event (an
# event waiting for its time is newer than every folded one), so the second condition changes
# nothing but lets the scan of events skip the row groups older than every shipment joined.
SHIPMENT_EVENTS_JOIN = "s.shipment_id = e.shipment_id AND e.occurred_at >= s.first_event_at"


def open_shipments_cte(filters: Filters) -> str:
    """`shipments` (live) plus `open_shipments`: the open ones, computed once, for the queries
    that join them to their exception events."""
    return f"""{shipments_cte(filters, None)},
open_shipments AS MATERIALIZED (SELECT * FROM shipments WHERE {open_status_sql(OPEN_STATUSES)})"""


# Exception events `e` of the open shipments `s` (open_shipments_cte), up to now. The bound on
# occurred_at repeats SHIPMENT_EVENTS_JOIN's for all shipments at once, as one value: DuckDB
# then skips the row groups of events older than every open shipment at the scan, which the
# join's per-row condition does not let it do (most of the table at 10M events).
OPEN_EXCEPTIONS_SQL = f"""events AS e JOIN open_shipments AS s ON {SHIPMENT_EVENTS_JOIN}
WHERE e.event_type = 'shipment.exception' AND e.occurred_at <= now()
    AND e.occurred_at >= (SELECT min(first_event_at) FROM open_shipments)"""


def exception_queue_sql(filters: Filters, limit: int = 500) -> str:
    """Exceptions of shipments still open: critical first, then the oldest first."""
    return f"""{open_shipments_cte(filters)}
SELECT e.severity, e.code, minutes_between(now(), e.occurred_at) AS age_minutes,
    e.occurred_at, e.message, e.estimated_delay_minutes,
    s.shipment_id, s.status, s.delivery_status, s.carrier_id, s.carrier_name,
    s.origin_city, s.destination_city, s.eta, s.delay_minutes
FROM {OPEN_EXCEPTIONS_SQL}
ORDER BY CASE e.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
    e.occurred_at, e.event_id
LIMIT {int(limit)}"""


def exception_summary_sql(filters: Filters) -> str:
    """Open shipments' exceptions per code and severity (the queue's shape, never truncated)."""
    return f"""{open_shipments_cte(filters)}
SELECT e.code, e.severity, count(*) AS exceptions,
    count(DISTINCT e.shipment_id) AS shipments
FROM {OPEN_EXCEPTIONS_SQL}
GROUP BY e.code, e.severity
ORDER BY e.code, e.severity"""


def late_shipments_sql(filters: Filters, limit: int = 500) -> str:
    """Open shipments late or at risk, the biggest delay first, with the likeliest cause."""
    return f"""{shipments_cte(filters, None)}
SELECT shipment_id, delivery_status, status, carrier_id, carrier_name, mode,
    origin_city, destination_city, planned_arrival, eta, delay_minutes,
    CASE WHEN last_exception_code IS NOT NULL
         THEN last_exception_code || coalesce(': ' || last_exception_message, '')
         ELSE eta_reason END AS cause,
    last_position_at, planned_quantity
FROM shipments
WHERE {open_status_sql(OPEN_STATUSES)} AND delivery_status IN ('late', 'at_risk')
ORDER BY delay_minutes DESC, shipment_id
LIMIT {int(limit)}"""


def open_status_counts_sql(filters: Filters) -> str:
    return f"""{shipments_cte(filters, None)}
SELECT delivery_status, count(*) AS shipments
FROM shipments WHERE {open_status_sql(OPEN_STATUSES)}
GROUP BY delivery_status"""


def delay_by_carrier_sql(filters: Filters) -> str:
    """Delay at arrival per carrier, summarised on the worker (box-plot statistics)."""
    return f"""{shipments_cte(filters, None)}
SELECT carrier_id, any_value(carrier_name) AS carrier_name, count(*) AS shipments,
    quantile_cont(delay_minutes, 0.05) AS p05, quantile_cont(delay_minutes, 0.25) AS q1,
    quantile_cont(delay_minutes, 0.5) AS median, quantile_cont(delay_minutes, 0.75) AS q3,
    quantile_cont(delay_minutes, 0.95) AS p95, avg(delay_minutes) AS mean,
    avg(is_late::INTEGER) AS late_share
FROM shipments
WHERE arrived_at IS NOT NULL AND delay_minutes IS NOT NULL AND carrier_id IS NOT NULL
GROUP BY carrier_id
ORDER BY carrier_id"""


def exception_queue(filters: Filters) -> pd.DataFrame:
    return run(exception_queue_sql(filters))


def exception_summary(filters: Filters) -> pd.DataFrame:
    return run(exception_summary_sql(filters))


def late_shipments(filters: Filters) -> pd.DataFrame:
    return run(late_shipments_sql(filters))


def open_status_counts(filters: Filters) -> dict[str, int]:
    frame = run(open_status_counts_sql(filters))
    return {
        str(k): int(v)
        for k, v in zip(frame["delivery_status"], frame["shipments"], strict=True)
        if isinstance(k, str)
    }


def delay_by_carrier(filters: Filters) -> pd.DataFrame:
    return run(delay_by_carrier_sql(filters))


# Stale trackers: shipments on the road whose telematics went quiet. A shipment that has not
# reported a position since it left counts from its departure.
def stale_trackers_sql(
    filters: Filters, threshold_minutes: float, as_of: dt.datetime | None = None, limit: int = 500
) -> str:
    """In-transit shipments (departed; not arrived, delivered or cancelled) silent for longer
    than the threshold at T, in event-time (wall-clock) minutes; the longest silent first."""
    t = instant_sql(as_of)
    return f"""{shipments_cte(filters, as_of)},
silent AS (
    SELECT *, coalesce(last_position_at, departed_at) AS last_seen_at,
        minutes_between({t}, coalesce(last_position_at, departed_at)) AS silent_minutes
    FROM shipments
    WHERE {open_status_sql(("IN_TRANSIT",))}
)
SELECT shipment_id, delivery_status, carrier_id, carrier_name, mode,
    origin_site_id, origin_city, destination_site_id, destination_city,
    departed_at, last_position_at, last_seen_at, silent_minutes, last_lat, last_lon,
    eta, delay_minutes, planned_quantity, count(*) OVER () AS total
FROM silent
WHERE silent_minutes > {number_literal(threshold_minutes)}
ORDER BY silent_minutes DESC, shipment_id
LIMIT {int(limit)}"""


def lane_transit_sql(filters: Filters) -> str:
    """Delivered history per lane (origin, destination, mode): transit time percentiles against
    the shipments' own plans, and the share that arrived within the on-time tolerance. The
    lanes are named after aggregating (a site's city is one per site_id)."""
    return f"""{shipments_cte(filters, None, names=False)},
history AS (
    SELECT origin_site_id, destination_site_id, mode,
        minutes_between(arrived_at, effective_departure_at) / 60.0 AS transit_hours,
        minutes_between(planned_arrival, planned_departure) / 60.0 AS planned_hours,
        delay_minutes <= tol.minutes AS on_time
    FROM shipments CROSS JOIN tol
    WHERE status = 'DELIVERED' AND origin_site_id IS NOT NULL
        AND destination_site_id IS NOT NULL AND mode IS NOT NULL
        AND arrived_at IS NOT NULL AND effective_departure_at IS NOT NULL
),
lanes AS (
    SELECT origin_site_id, destination_site_id, mode, count(*) AS delivered,
        quantile_cont(transit_hours, [0.5, 0.9]) AS transit_quantiles,
        median(planned_hours) AS planned_hours,
        count(*) FILTER (WHERE on_time) AS on_time,
        avg(on_time::INTEGER) AS on_time_share
    FROM history
    GROUP BY origin_site_id, destination_site_id, mode
)
SELECT l.origin_site_id, l.destination_site_id, l.mode,
    o.city AS origin_city, d.city AS destination_city, l.delivered,
    l.transit_quantiles[1] AS p50_hours, l.transit_quantiles[2] AS p90_hours,
    l.planned_hours, l.on_time, l.on_time_share
FROM lanes AS l
LEFT JOIN ref_sites AS o ON o.site_id = l.origin_site_id
LEFT JOIN ref_sites AS d ON d.site_id = l.destination_site_id
ORDER BY l.delivered DESC, l.origin_site_id, l.destination_site_id, l.mode"""


def stale_trackers(filters: Filters, threshold_minutes: float) -> pd.DataFrame:
    return run(stale_trackers_sql(filters, threshold_minutes))


def lane_transit(filters: Filters) -> pd.DataFrame:
    return run(lane_transit_sql(filters))


# --- pipeline health ---


FRESHNESS_SQL = "SELECT last_event_at, last_batch_at, now() AS checked_at FROM ingest_stats"

INGEST_STATS_SQL = """SELECT s.messages, s.accepted, s.duplicates, s.rejected, s.out_of_order,
    s.unknown_references, s.batches, s.last_event_at, s.last_batch_at, s.started_at,
    (SELECT count(*) FROM events WHERE ingested_at > now() - INTERVAL 60 SECOND) / 60.0
        AS accepted_per_s,
    now() AS checked_at
FROM ingest_stats AS s"""

KAFKA_POSITIONS_SQL = """SELECT topic, "partition", next_offset, high_watermark, lag,
    at_end_since, updated_at
FROM kafka_positions ORDER BY topic, "partition\""""


def dead_letters_sql(limit: int = 50) -> str:
    """The newest rejected messages; the value as text (invalid UTF-8 shown escaped)."""
    return f"""SELECT received_at, topic, "partition", "offset", reason,
    left(coalesce(try(decode("value")), "value"::VARCHAR), 400) AS value_text,
    octet_length("value") AS value_bytes
FROM dead_letters
ORDER BY received_at DESC, topic, "partition", "offset" DESC
LIMIT {int(limit)}"""


DEAD_LETTER_REASONS_SQL = """SELECT reason, count(*) AS messages, max(received_at) AS latest
FROM dead_letters GROUP BY reason ORDER BY messages DESC, reason LIMIT 15"""

DATA_QUALITY_SQL = """SELECT field, "value", count(*) AS events, max(detected_at) AS latest
FROM data_quality_issues GROUP BY field, "value" ORDER BY events DESC, field, "value" LIMIT 20"""


@dataclass(frozen=True)
class Freshness:
    last_event_at: dt.datetime | None
    last_batch_at: dt.datetime | None
    checked_at: dt.datetime
    source: str  # "worker" (live over Quack) or "file" (no worker running)


def _instant(value: object) -> dt.datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def freshness() -> Freshness:
    row = run(FRESHNESS_SQL).iloc[0]
    checked = _instant(row["checked_at"]) or dt.datetime.now(dt.UTC)
    return Freshness(
        _instant(row["last_event_at"]),
        _instant(row["last_batch_at"]),
        checked,
        current_source().last_source,
    )


def ingest_stats() -> pd.Series:
    return run(INGEST_STATS_SQL).iloc[0]


def kafka_positions() -> pd.DataFrame:
    return run(KAFKA_POSITIONS_SQL)


def dead_letters(limit: int = 50) -> pd.DataFrame:
    return run(dead_letters_sql(limit))


def dead_letter_reasons() -> pd.DataFrame:
    return run(DEAD_LETTER_REASONS_SQL)


def data_quality_issues() -> pd.DataFrame:
    return run(DATA_QUALITY_SQL)


def tolerance_minutes() -> float | None:
    """The worker's on-time tolerance (minutes), as the live views use it."""
    value = run(f"SELECT {TOLERANCE_SQL} AS minutes").iloc[0]["minutes"]
    return None if pd.isna(value) else float(value)
