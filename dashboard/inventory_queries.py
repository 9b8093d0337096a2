"""The inventory page's read side: flows between sites, stock over time, in transit, cover.

Like every read in the dashboard, each data function is one SQL run on the worker and cached
for a few seconds (`dashboard.queries.run`). User choices reach SQL only through whitelists
(sites, SKUs, periods, measures) and the literal helpers of `ingest.database`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from dashboard.filters import Filters
from dashboard.kpi_queries import Period, floor_instant
from dashboard.queries import (
    ON_THE_ROAD,
    in_list,
    open_status_sql,
    run,
    shipments_cte,
    site_condition,
    sku_condition,
)
from ingest.database import (
    number_literal,
    render,
    sql_file,
    string_literal,
    timestamp_literal,
)


@dataclass(frozen=True)
class FlowMeasure:
    """What a Sankey link counts: which instant puts a shipment in the window, which tires."""

    key: str
    label: str
    instant: str  # column of the shipments CTE
    quantity: str  # column of the shipments CTE
    meaning: str


FLOW_MEASURES = (
    FlowMeasure(
        "delivered",
        "Delivered",
        "delivered_at",
        "delivered_quantity",
        "tires received in good condition, by delivery time",
    ),
    FlowMeasure(
        "shipped",
        "Shipped",
        "effective_departure_at",
        "planned_quantity",
        "tires that left the origin (the plan's lines), by departure time",
    ),
)
FLOW_MEASURE_BY_KEY = {m.key: m for m in FLOW_MEASURES}

DEFAULT_COVER_THRESHOLD_DAYS = 7.0
HISTORY_SKUS = 5  # SKUs a site's stock history starts with: its largest stocks now
HISTORY_MAX_POINTS = 400  # a safety net: periods are whitelisted with about 60-90 points


def site_filters(filters: Filters) -> Filters:
    """Stock is not a delivery status: the status filter does not apply on this page."""
    return dataclasses.replace(filters, status=())


# --- flows (Sankey) ---


def flows_sql(filters: Filters, period: Period, as_of: dt.datetime, measure: FlowMeasure) -> str:
    """Tires per origin -> destination whose shipments were delivered (or shipped) in
    [T - length, T), with both sites' names and kinds."""
    start, t = timestamp_literal(as_of - period.length), timestamp_literal(as_of)
    instant, quantity = measure.instant, measure.quantity
    return f"""{shipments_cte(site_filters(filters), None)}
SELECT s.origin_site_id, s.destination_site_id,
    any_value(o.name) AS origin_name, any_value(o.kind) AS origin_kind,
    any_value(o.city) AS origin_city,
    any_value(d.name) AS destination_name, any_value(d.kind) AS destination_kind,
    any_value(d.city) AS destination_city,
    count(*) AS shipments, sum(s.{quantity})::BIGINT AS tires
FROM shipments AS s
LEFT JOIN ref_sites AS o ON o.site_id = s.origin_site_id
LEFT JOIN ref_sites AS d ON d.site_id = s.destination_site_id
WHERE s.{instant} >= {start} AND s.{instant} < {t}
    AND s.origin_site_id IS NOT NULL AND s.destination_site_id IS NOT NULL
GROUP BY s.origin_site_id, s.destination_site_id
HAVING sum(s.{quantity}) > 0
ORDER BY tires DESC, s.origin_site_id, s.destination_site_id"""


# --- stock over time ---


def history_ends(as_of: dt.datetime, period: Period) -> list[dt.datetime]:
    """Instants the stock history is read at: whole steps after T - length, then T itself."""
    first = floor_instant(as_of - period.length, period.step) + period.step
    ends: list[dt.datetime] = []
    at = first
    while at < as_of and len(ends) < HISTORY_MAX_POINTS - 1:
        ends.append(at)
        at += period.step
    return [*ends, as_of]


def stock_history_sql(site_id: str, skus: Sequence[str], ends: Sequence[dt.datetime]) -> str:
    """On hand of one site's SKUs at each instant of `ends`, from the ledger anchored at counts.

    The running sum follows the contract's on-hand rule: the latest count at or before the
    instant (ties: the greater event_id), plus every change after it; a change at exactly the
    count's instant is already in the count (ledger rows sort before counts at one instant).
    Shipment movements come from the worker's ledger (`stock_changes`), which applies each
    shipment's current plan and delivered lines; `inventory_asof(b)` gives the same numbers
    unless a plan or delivery was corrected after b. A SKU with no count or change yet at an
    instant has no value there (no row in `inventory_asof` either).
    """
    if not ends:
        raise ValueError("a stock history needs at least one instant")
    site, sku_list = string_literal(site_id), in_list(skus)
    last = timestamp_literal(max(ends))
    instants = "[" + ", ".join(timestamp_literal(e) for e in ends) + "]"
    return f"""WITH ledger AS (
    SELECT sku, occurred_at AS ts, 1 AS ord,
        arg_max(on_hand, event_id) AS counted, NULL::HUGEINT AS delta
    FROM events
    WHERE event_type = 'inventory.counted' AND site_id = {site} AND sku IN {sku_list}
        AND occurred_at <= {last}
    GROUP BY sku, occurred_at
    UNION ALL
    SELECT sku, ts, 0 AS ord, NULL AS counted, sum(delta) AS delta
    FROM stock_changes
    WHERE site_id = {site} AND sku IN {sku_list} AND ts <= {last}
    GROUP BY sku, ts
),
segments AS (
    SELECT *, count(counted) OVER (PARTITION BY sku ORDER BY ts, ord) AS since_count
    FROM ledger
),
points AS (
    SELECT sku, ts, ord,
        (coalesce(max(counted) OVER (PARTITION BY sku, since_count), 0)
         + coalesce(sum(delta) OVER (PARTITION BY sku, since_count ORDER BY ts, ord), 0))::BIGINT
            AS on_hand
    FROM segments
    QUALIFY row_number() OVER (PARTITION BY sku, ts ORDER BY ord DESC) = 1
),
ends AS (SELECT unnest({instants}) AS at),
skus AS (SELECT DISTINCT sku FROM points)
SELECT ends.at, skus.sku, points.on_hand
FROM ends CROSS JOIN skus
ASOF LEFT JOIN points ON points.sku = skus.sku AND ends.at >= points.ts
ORDER BY skus.sku, ends.at"""


def site_stock_sql(site_id: str) -> str:
    """The site's SKUs now, the most tires first (picks the SKUs a history starts with)."""
    return f"""SELECT i.sku, i.on_hand, k.segment, k.description
FROM inventory_now AS i LEFT JOIN ref_skus AS k USING (sku)
WHERE i.site_id = {string_literal(site_id)}
ORDER BY i.on_hand DESC, i.sku"""


# --- in transit per lane and SKU ---


def in_transit_lanes_sql(filters: Filters) -> str:
    """Tires on the road now per origin -> destination and SKU (the contract's in-transit rule:
    the plan's lines of shipments that left and are not yet received or cancelled). Segment
    and SKU keep the lines of the chosen SKUs only."""
    return f"""{shipments_cte(site_filters(filters), None)},
lines AS (
    SELECT shipment_id, origin_site_id, destination_site_id, origin_city, destination_city,
        unnest(planned_lines) AS line
    FROM shipments
    WHERE {open_status_sql(ON_THE_ROAD)} AND planned_lines IS NOT NULL
)
SELECT l.origin_site_id, l.destination_site_id,
    any_value(l.origin_city) AS origin_city, any_value(l.destination_city) AS destination_city,
    l.line.sku AS sku, any_value(k.segment) AS segment,
    sum(l.line.quantity)::BIGINT AS tires, count(DISTINCT l.shipment_id) AS shipments
FROM lines AS l LEFT JOIN ref_skus AS k ON k.sku = l.line.sku
WHERE {sku_condition(filters, "l.line.sku")}
GROUP BY l.origin_site_id, l.destination_site_id, l.line.sku
HAVING sum(l.line.quantity) > 0
ORDER BY tires DESC, l.origin_site_id, l.destination_site_id, sku"""


# --- days of supply ---


def days_of_supply_sql(
    filters: Filters, sales_window: Period, threshold_days: float, as_of: dt.datetime
) -> str:
    """Per distributor and SKU: (on hand + in transit to it) / average daily sales.

    Daily sales: tires adjusted with reason 'sold' in (T - window, T], divided by the window in
    days, or by the time since the first stored event when the history is shorter than the
    window. No sales in the window: no days of supply (never highlighted). Region and
    distributor choose the distributors, segment and SKU the SKUs; plant, carrier and mode do
    not apply: cover counts every tire on its way, wherever it comes from and whoever carries it.
    """
    sites = Filters(region=filters.region, distributor=filters.distributor)
    cover = render(
        sql_file("days_of_supply.sql"),  # shared with the worker's low_days_of_supply alert
        distributors="SELECT site_id FROM ref_sites AS r "
        f"WHERE kind = 'distributor' AND {site_condition(sites, 'r')}",
        t=timestamp_literal(as_of),
        since=timestamp_literal(as_of - sales_window.length),
        window_s=number_literal(sales_window.length.total_seconds()),
    )
    return f"""WITH cover AS ({cover})
SELECT c.site_id, d.name, d.city, d.country, c.sku, r.segment, r.description,
    c.on_hand, c.in_transit, c.sold, c.sales_window_days, c.daily_sales, c.days_of_supply,
    coalesce(c.days_of_supply < {number_literal(threshold_days)}, FALSE) AS below_threshold
FROM cover AS c
JOIN ref_sites AS d USING (site_id)
LEFT JOIN ref_skus AS r USING (sku)
WHERE {sku_condition(filters, "c.sku")}
ORDER BY below_threshold DESC, days_of_supply ASC NULLS LAST, c.site_id, c.sku"""


# --- cached data functions (one SQL each) ---


def flows(
    filters: Filters, period: Period, as_of: dt.datetime, measure: FlowMeasure
) -> pd.DataFrame:
    return run(flows_sql(filters, period, as_of, measure))


def stock_history(site_id: str, skus: Sequence[str], ends: Sequence[dt.datetime]) -> pd.DataFrame:
    return run(stock_history_sql(site_id, skus, ends))


def site_stock(site_id: str) -> pd.DataFrame:
    return run(site_stock_sql(site_id))


def in_transit_lanes(filters: Filters) -> pd.DataFrame:
    return run(in_transit_lanes_sql(filters))


def days_of_supply(
    filters: Filters, sales_window: Period, threshold_days: float, as_of: dt.datetime
) -> pd.DataFrame:
    return run(days_of_supply_sql(filters, sales_window, threshold_days, as_of))
