-- Days of supply per distributor and SKU at {t}: (on hand + in transit to it) / average daily
-- sales. Shared by the dashboard's inventory page (dashboard/inventory_queries.py) and the
-- low_days_of_supply alert rule, so both compute the same cover.
-- {distributors}: a query of the site_ids to include; {since}: {t} minus the sales window;
-- {window_s}: the window in seconds. Daily sales: tires adjusted with reason 'sold' in
-- ({since}, {t}], divided by the window in days, or by the time since the first stored event
-- when the history is shorter than the window (sales_window_days says which). No sales in the
-- window: no days of supply. Stock, in-transit stock and sales are those of the live state
-- (sales from the stock ledger, which holds every adjustment whose time has come, and its
-- hourly sums).
WITH distributors AS ({distributors}),
-- Stock: the live on-hand levels (stock_levels, inventory.sql's rule folded batch by batch).
stock AS (
    SELECT site_id, sku, on_hand FROM stock_levels
    WHERE site_id IN (SELECT site_id FROM distributors)
),
transit AS (
    SELECT destination_site_id AS site_id, sku, sum(in_transit)::BIGINT AS in_transit
    FROM in_transit_now
    WHERE destination_site_id IN (SELECT site_id FROM distributors)
    GROUP BY destination_site_id, sku
),
-- Sales: whole hours from stock_sales_by_hour, less the sales of the first hour up to {since}
-- and of the last one after {t} (two narrow ranges of the ledger; the second is empty when {t}
-- is now, its zone maps skip nearly all of the first). `sales` keeps only keys that sold.
sales AS (
    SELECT site_id, sku, sum(sold)::BIGINT AS sold
    FROM (
        SELECT site_id, sku, sales, sold FROM stock_sales_by_hour
        WHERE "hour" BETWEEN epoch_hour({since}) AND epoch_hour({t})
        UNION ALL
        SELECT site_id, sku, -1, delta FROM stock_changes
        WHERE kind = 'adjustment' AND reason = 'sold'
            AND ts >= hour_start(epoch_hour({since})) AND ts <= {since}
        UNION ALL
        SELECT site_id, sku, -1, delta FROM stock_changes
        WHERE kind = 'adjustment' AND reason = 'sold'
            AND ts > {t} AND ts < hour_start(epoch_hour({t}) + 1)
    )
    WHERE site_id IN (SELECT site_id FROM distributors)
    GROUP BY site_id, sku
    HAVING sum(sales) > 0
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
