-- Days of supply per distributor and SKU at {t}: (on hand + in transit to it) / average daily
-- sales. Shared by the dashboard's inventory page (dashboard/inventory_queries.py) and the
-- low_days_of_supply alert rule, so both compute the same cover.
-- {distributors}: a query of the site_ids to include; {since}: {t} minus the sales window;
-- {window_s}: the window in seconds. Daily sales: tires adjusted with reason 'sold' in
-- ({since}, {t}], divided by the window in days, or by the time since the first stored event
-- when the history is shorter than the window (sales_window_days says which). No sales in the
-- window: no days of supply. Stock, in-transit stock and sales are those of the live state
-- (sales from the stock ledger, which holds every adjustment whose time has come).
WITH distributors AS ({distributors}),
-- Stock follows inventory.sql's rule (the inventory_now view: the latest count plus every
-- change after it), for the distributors only: the view reads the whole ledger, and its full
-- outer join keeps the site filter from reaching the scan. No count is older than
-- first_count, so a change before it counts only for a key without a count: those keys take
-- the ledger's plain sums (no join per change), the counted ones their few recent changes.
counts AS (
    SELECT site_id, sku, count_key.ts AS count_ts, on_hand FROM stock_counts
    WHERE site_id IN (SELECT site_id FROM distributors)
),
first_count AS (SELECT coalesce(min(count_ts), 'infinity'::TIMESTAMPTZ) AS ts FROM counts),
ledger AS (
    SELECT site_id, sku, sum(delta) AS delta FROM stock_changes
    WHERE site_id IN (SELECT site_id FROM distributors)
    GROUP BY site_id, sku
),
since_count AS (
    SELECT ch.site_id, ch.sku, sum(ch.delta) FILTER (WHERE ch.ts > c.count_ts) AS delta
    FROM stock_changes AS ch
    JOIN counts AS c USING (site_id, sku)
    WHERE ch.ts > (SELECT ts FROM first_count)
    GROUP BY ch.site_id, ch.sku
),
stock AS (
    SELECT coalesce(c.site_id, l.site_id) AS site_id, coalesce(c.sku, l.sku) AS sku,
        (CASE WHEN c.site_id IS NULL THEN l.delta
              ELSE coalesce(c.on_hand, 0) + coalesce(s.delta, 0) END)::BIGINT AS on_hand
    FROM counts AS c
    FULL OUTER JOIN ledger AS l USING (site_id, sku)
    LEFT JOIN since_count AS s ON s.site_id = c.site_id AND s.sku = c.sku
),
transit AS (
    SELECT destination_site_id AS site_id, sku, sum(in_transit)::BIGINT AS in_transit
    FROM in_transit_now
    WHERE destination_site_id IN (SELECT site_id FROM distributors)
    GROUP BY destination_site_id, sku
),
sales AS (
    SELECT site_id, sku, (-sum(delta))::BIGINT AS sold
    FROM stock_changes
    WHERE kind = 'adjustment' AND reason = 'sold'
        AND ts > {since} AND ts <= {t}
        AND site_id IN (SELECT site_id FROM distributors)
    GROUP BY site_id, sku
),
span AS (
    SELECT least({window_s}, greatest(epoch({t}) - epoch(min(occurred_at)), 0.0)) / 86400.0
        AS days
    FROM events WHERE occurred_at <= {t}
),
keys AS (
    SELECT site_id, sku FROM stock
    UNION SELECT site_id, sku FROM transit
    UNION SELECT site_id, sku FROM sales
),
cover AS (
    SELECT k.site_id, k.sku,
        coalesce(st.on_hand, 0) AS on_hand, coalesce(tr.in_transit, 0) AS in_transit,
        coalesce(sa.sold, 0) AS sold, span.days AS sales_window_days,
        CASE WHEN span.days > 0 THEN coalesce(sa.sold, 0) / span.days END AS daily_sales
    FROM keys AS k CROSS JOIN span
    LEFT JOIN stock AS st USING (site_id, sku)
    LEFT JOIN transit AS tr USING (site_id, sku)
    LEFT JOIN sales AS sa USING (site_id, sku)
)
SELECT *,
    CASE WHEN daily_sales > 0 THEN (on_hand + in_transit) / daily_sales END AS days_of_supply
FROM cover
