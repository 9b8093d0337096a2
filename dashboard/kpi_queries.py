"""The KPI page's read side: on-time rate, OTIF, transit vs plan, in transit, throughput, carriers.

Which shipments a period holds (the definition every KPI here and `tests/oracle.py` share):
a period is [T - length, T) and holds the shipments whose plan's `planned_arrival` falls in it;
cancelled shipments and shipments without a plan are never counted. Of those, the contract's
on-time rate is arrived within tolerance / (arrived + still open with planned arrival +
tolerance < T); OTIF has the same denominator and counts the delivered shipments that arrived
within tolerance and received, for every planned SKU, at least the planned quantity in good
condition. Throughput is counted by delivery time in the period instead (what was received).

T is one instant per page run (the worker's clock to the second, see `measured_at`), given to
every SQL as a literal so the page's numbers agree with each other. Periods are a whitelist;
instants reach SQL through `ingest.database.timestamp_literal`, durations as integers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import pandas as pd

from dashboard.filters import Filters
from dashboard.queries import ON_THE_ROAD, open_status_sql, run, shipments_cte
from ingest.database import timestamp_literal


@dataclass(frozen=True)
class Period:
    """A length of time looking back from T, with the buckets its charts use."""

    key: str
    label: str
    length: dt.timedelta
    bucket: dt.timedelta  # throughput bars
    bucket_label: str  # "minute", "hour", "day": the unit of "... per <bucket_label>"
    step: dt.timedelta  # stock history points

    @property
    def words(self) -> str:
        """'the last 24 h' (for sentences)."""
        return f"the last {self.label}"


_MINUTE = dt.timedelta(minutes=1)
_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)
# The short periods exist for the demo, whose simulator runs 60 times faster than the road.
PERIODS = (
    Period("5m", "5 min", 5 * _MINUTE, _MINUTE, "minute", dt.timedelta(seconds=5)),
    Period("15m", "15 min", 15 * _MINUTE, _MINUTE, "minute", dt.timedelta(seconds=15)),
    Period("1h", "1 h", _HOUR, 5 * _MINUTE, "5 min", _MINUTE),
    Period("6h", "6 h", 6 * _HOUR, 15 * _MINUTE, "15 min", 5 * _MINUTE),
    Period("24h", "24 h", _DAY, _HOUR, "hour", 20 * _MINUTE),
    Period("7d", "7 days", 7 * _DAY, _DAY, "day", 2 * _HOUR),
    Period("30d", "30 days", 30 * _DAY, _DAY, "day", 12 * _HOUR),
)
PERIOD_BY_KEY = {p.key: p for p in PERIODS}
DEFAULT_PERIOD = PERIOD_BY_KEY["24h"]

PERIOD_DEFINITION = (
    "A period holds the shipments whose **planned arrival** lies in it (from T minus the "
    "period up to T, the moment shown); cancelled shipments are left out. **On-time rate** = "
    "shipments arrived within the on-time tolerance / (shipments arrived + shipments not "
    "arrived whose planned arrival + tolerance is already past): an overdue open shipment "
    "counts as late now. **OTIF** has the same denominator and counts the shipments delivered "
    "on time and in full (every planned SKU received in at least the planned quantity, "
    "damaged tires not counted). The change compares with the period of equal length just "
    "before, measured at the same T."
)


def kpi_filters(filters: Filters) -> Filters:
    """KPIs measure delivery status, so the status filter does not apply to them."""
    return dataclasses.replace(filters, status=())


def floor_instant(instant: dt.datetime, step: dt.timedelta) -> dt.datetime:
    """`instant` rounded down to a whole `step` since the Unix epoch (UTC midnight for days)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + (instant.astimezone(dt.UTC) - epoch) // step * step


def measured_at(worker_now: dt.datetime) -> dt.datetime:
    """T of a page run: the worker's clock to the whole second, so the instant the page shows
    is exactly the one its numbers were computed at (and the cache holds for that second)."""
    return floor_instant(worker_now, dt.timedelta(seconds=1))


def bucket_starts(as_of: dt.datetime, period: Period) -> list[dt.datetime]:
    """Starts of the whole buckets that overlap [T - length, T), oldest first."""
    first = floor_instant(as_of - period.length, period.bucket)
    count = -(-(as_of - first) // period.bucket)  # ceiling: the bucket holding T is partial
    return [first + i * period.bucket for i in range(max(count, 1))]


def _instants(values: list[dt.datetime]) -> str:
    return "[" + ", ".join(timestamp_literal(v) for v in values) + "]"


def _periods_cte(as_of: dt.datetime, period: Period) -> str:
    """`periods(period, starts, ends)`: the chosen period and the one of equal length before."""
    start, before = as_of - period.length, as_of - 2 * period.length
    return f"""periods(period, starts, ends) AS (VALUES
    ('current', {timestamp_literal(start)}, {timestamp_literal(as_of)}),
    ('previous', {timestamp_literal(before)}, {timestamp_literal(start)})
)"""


def _period_of(column: str, as_of: dt.datetime, period: Period) -> str:
    """SQL: 'current' or 'previous' for an instant `column` in that period (see `_periods_cte`),
    else NULL. A CASE, not a join with `periods`: a shipment is in at most one of them."""
    start, t = timestamp_literal(as_of - period.length), timestamp_literal(as_of)
    before = timestamp_literal(as_of - 2 * period.length)
    return (
        f"CASE WHEN {column} >= {start} AND {column} < {t} THEN 'current' "
        f"WHEN {column} >= {before} AND {column} < {start} THEN 'previous' END"
    )


def _in_periods(column: str, as_of: dt.datetime, period: Period) -> str:
    """SQL true for an instant `column` in either period: literal bounds reach the scan."""
    before = timestamp_literal(as_of - 2 * period.length)
    return f"{column} >= {before} AND {column} < {timestamp_literal(as_of)}"


def _judged_sql(as_of: dt.datetime) -> str:
    """Columns of a shipment `s` (with `tol`) judged at T (the oracle's rule). `otif`: on time
    and in full (`in_full`, kept with the shipment's state: see `lines_in_full` in
    ingest/sql/macros.sql)."""
    return f"""s.arrived_at IS NOT NULL AS arrived,
        s.arrived_at IS NOT NULL AND s.delay_minutes <= tol.minutes AS on_time,
        CASE WHEN s.status = 'DELIVERED' AND s.arrived_at IS NOT NULL
                  AND s.delay_minutes <= tol.minutes
             THEN s.in_full ELSE FALSE END AS otif,
        s.arrived_at IS NULL
            AND minutes_between({timestamp_literal(as_of)}, s.planned_arrival) > tol.minutes
            AS overdue,
        minutes_between(s.arrived_at, s.effective_departure_at) / 60.0 AS transit_hours,
        minutes_between(s.planned_arrival, s.planned_departure) / 60.0 AS planned_hours"""


def _due_cte(filters: Filters, as_of: dt.datetime, period: Period) -> str:
    """`due`: shipments of both periods by planned arrival (`period` says which), judged at T.
    Without names: the queries on it name their groups after aggregating."""
    return f"""{shipments_cte(kpi_filters(filters), None, names=False)},
due AS (
    SELECT {_period_of("s.planned_arrival", as_of, period)} AS period, s.*,
        {_judged_sql(as_of)}
    FROM shipments AS s CROSS JOIN tol
    WHERE {_in_periods("s.planned_arrival", as_of, period)} AND s.status <> 'CANCELLED'
)"""


def period_kpis_sql(filters: Filters, period: Period, as_of: dt.datetime) -> str:
    """One row per period ('current', 'previous'): the on-time rate and OTIF with their counts,
    transit time against plan, exceptions, and what was delivered (by delivery time).
    `covered`: the stored events reach back to the period's start (counts are comparable).
    The shipments due and those delivered in either period come from one scan (`scoped`)."""
    due_period = (
        f"CASE WHEN s.status <> 'CANCELLED' "
        f"THEN {_period_of('s.planned_arrival', as_of, period)} END"
    )
    return f"""{shipments_cte(kpi_filters(filters), None, names=False)},
{_periods_cte(as_of, period)},
scoped AS MATERIALIZED (
    SELECT {due_period} AS due_period,
        {_period_of("s.delivered_at", as_of, period)} AS delivered_period,
        s.exception_count, s.delay_minutes, s.delivered_quantity,
        {_judged_sql(as_of)}
    FROM shipments AS s CROSS JOIN tol
    WHERE ({_in_periods("s.planned_arrival", as_of, period)} AND s.status <> 'CANCELLED')
        OR ({_in_periods("s.delivered_at", as_of, period)})
),
rates AS (
    SELECT due_period AS period, count(*) AS shipments,
        count(*) FILTER (arrived) AS arrived,
        count(*) FILTER (on_time) AS on_time,
        count(*) FILTER (overdue) AS overdue_open,
        count(*) FILTER (otif) AS otif,
        sum(exception_count) AS exceptions,
        avg(transit_hours - planned_hours) FILTER (arrived) AS transit_over_plan_hours,
        avg(delay_minutes) FILTER (arrived) AS avg_delay_minutes
    FROM scoped WHERE due_period IS NOT NULL GROUP BY due_period
),
delivered AS (
    SELECT delivered_period AS period, count(*) AS delivered_shipments,
        sum(delivered_quantity)::BIGINT AS delivered_tires
    FROM scoped WHERE delivered_period IS NOT NULL GROUP BY delivered_period
)
SELECT p.period, p.starts, p.ends, tol.minutes AS tolerance_minutes,
    coalesce((SELECT min(occurred_at) FROM events) <= p.starts, FALSE) AS covered,
    coalesce(r.shipments, 0) AS shipments, coalesce(r.arrived, 0) AS arrived,
    coalesce(r.on_time, 0) AS on_time, coalesce(r.overdue_open, 0) AS overdue_open,
    coalesce(r.otif, 0) AS otif,
    coalesce(r.arrived, 0) + coalesce(r.overdue_open, 0) AS judged,
    r.on_time / nullif(r.arrived + r.overdue_open, 0) AS on_time_rate,
    r.otif / nullif(r.arrived + r.overdue_open, 0) AS otif_rate,
    r.transit_over_plan_hours, r.avg_delay_minutes,
    100.0 * r.exceptions / nullif(r.shipments, 0) AS exceptions_per_100,
    coalesce(d.delivered_shipments, 0) AS delivered_shipments,
    coalesce(d.delivered_tires, 0) AS delivered_tires
FROM periods AS p CROSS JOIN tol
LEFT JOIN rates AS r USING (period)
LEFT JOIN delivered AS d USING (period)
ORDER BY p.starts DESC"""


def _on_the_road(filters: Filters, as_of: dt.datetime | None) -> str:
    """Shipments and tires in transit (the contract's rule: a plan, gone, not yet received)."""
    return f"""{shipments_cte(kpi_filters(filters), as_of)}
SELECT count(*) AS shipments, coalesce(sum(planned_quantity), 0)::BIGINT AS tires
FROM shipments
WHERE {open_status_sql(ON_THE_ROAD)} AND planned_quantity IS NOT NULL"""


def in_transit_sql(filters: Filters, period: Period, as_of: dt.datetime) -> str:
    """In transit now and one period earlier (as of T - length, from that moment's events);
    `covered` says whether the stored events reach back that far (else no comparison)."""
    earlier = as_of - period.length
    covered = (
        f"coalesce((SELECT min(occurred_at) FROM events) <= {timestamp_literal(earlier)}, FALSE)"
    )
    return f"""SELECT 'now' AS moment, TRUE AS covered, now_.*
FROM ({_on_the_road(filters, None)}) AS now_
UNION ALL
SELECT 'earlier' AS moment, {covered} AS covered, then_.*
FROM ({_on_the_road(filters, earlier)}) AS then_"""


def throughput_sql(filters: Filters, period: Period, as_of: dt.datetime) -> str:
    """Shipments and tires delivered per bucket of the period (by delivery time), zeros kept."""
    start, t = timestamp_literal(as_of - period.length), timestamp_literal(as_of)
    step_us = period.bucket // dt.timedelta(microseconds=1)
    return f"""{shipments_cte(kpi_filters(filters), None)},
buckets AS (SELECT unnest({_instants(bucket_starts(as_of, period))}) AS bucket_start),
delivered AS (
    SELECT delivered_at, delivered_quantity FROM shipments
    WHERE delivered_at >= {start} AND delivered_at < {t}
)
SELECT b.bucket_start, count(d.delivered_at) AS shipments,
    coalesce(sum(d.delivered_quantity), 0)::BIGINT AS tires
FROM buckets AS b
LEFT JOIN delivered AS d ON d.delivered_at >= b.bucket_start
    AND d.delivered_at < b.bucket_start + to_microseconds({int(step_us)})
GROUP BY b.bucket_start
ORDER BY b.bucket_start"""


def lane_transit_sql(filters: Filters, period: Period, as_of: dt.datetime) -> str:
    """Per lane (origin, destination, mode): actual transit time of the period's arrived
    shipments against their plan (planned departure to planned arrival), in hours."""
    return f"""{_due_cte(filters, as_of, period)},
lanes AS (
    SELECT origin_site_id, destination_site_id, mode,
        count(*) AS shipments,
        count(*) FILTER (on_time) AS on_time,
        avg(transit_hours) AS avg_hours,
        quantile_cont(transit_hours, 0.9) AS p90_hours,
        avg(planned_hours) AS planned_hours,
        avg(transit_hours - planned_hours) AS over_plan_hours
    FROM due
    WHERE period = 'current' AND arrived
    GROUP BY origin_site_id, destination_site_id, mode
)
SELECT l.origin_site_id, l.destination_site_id, l.mode,
    o.city AS origin_city, d.city AS destination_city,
    l.shipments, l.on_time, l.avg_hours, l.p90_hours, l.planned_hours, l.over_plan_hours
FROM lanes AS l
LEFT JOIN ref_sites AS o ON o.site_id = l.origin_site_id
LEFT JOIN ref_sites AS d ON d.site_id = l.destination_site_id
ORDER BY l.over_plan_hours DESC, l.shipments DESC, l.origin_site_id, l.destination_site_id,
    l.mode"""


def carrier_scorecard_sql(filters: Filters, period: Period, as_of: dt.datetime) -> str:
    """Per carrier over the period: shipments due, on-time rate, OTIF, average delay of the
    arrived ones, exceptions per 100 shipments, and the on-time rate of the period before."""
    judged_now = "count(*) FILTER (period = 'current' AND (arrived OR overdue))"
    judged_before = "count(*) FILTER (period = 'previous' AND (arrived OR overdue))"
    return f"""{_due_cte(filters, as_of, period)},
carriers AS (
    SELECT carrier_id,
        count(*) FILTER (period = 'current') AS shipments,
        {judged_now} AS judged,
        count(*) FILTER (period = 'current' AND on_time) AS on_time,
        count(*) FILTER (period = 'current' AND otif) AS otif,
        count(*) FILTER (period = 'current' AND on_time) / nullif({judged_now}, 0) AS on_time_rate,
        count(*) FILTER (period = 'current' AND otif) / nullif({judged_now}, 0) AS otif_rate,
        avg(delay_minutes) FILTER (period = 'current' AND arrived) AS avg_delay_minutes,
        100.0 * sum(exception_count) FILTER (period = 'current')
            / nullif(count(*) FILTER (period = 'current'), 0) AS exceptions_per_100,
        count(*) FILTER (period = 'previous' AND on_time) / nullif({judged_before}, 0)
            AS previous_on_time_rate
    FROM due
    WHERE carrier_id IS NOT NULL
    GROUP BY carrier_id
    HAVING count(*) FILTER (period = 'current') > 0
)
SELECT k.carrier_id, c.name AS carrier_name, k.shipments, k.judged, k.on_time, k.otif,
    k.on_time_rate, k.otif_rate, k.avg_delay_minutes, k.exceptions_per_100,
    k.previous_on_time_rate
FROM carriers AS k LEFT JOIN ref_carriers AS c USING (carrier_id)
ORDER BY k.on_time_rate ASC NULLS LAST, k.shipments DESC, k.carrier_id"""


# --- cached data functions (one SQL each) ---


def period_kpis(filters: Filters, period: Period, as_of: dt.datetime) -> pd.DataFrame:
    return run(period_kpis_sql(filters, period, as_of))


def in_transit(filters: Filters, period: Period, as_of: dt.datetime) -> pd.DataFrame:
    return run(in_transit_sql(filters, period, as_of))


def throughput(filters: Filters, period: Period, as_of: dt.datetime) -> pd.DataFrame:
    return run(throughput_sql(filters, period, as_of))


def lane_transit(filters: Filters, period: Period, as_of: dt.datetime) -> pd.DataFrame:
    return run(lane_transit_sql(filters, period, as_of))


def carrier_scorecard(filters: Filters, period: Period, as_of: dt.datetime) -> pd.DataFrame:
    return run(carrier_scorecard_sql(filters, period, as_of))
