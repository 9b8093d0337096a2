-- Days of supply per distributor and SKU at {t}: (on hand + in transit to it) / average daily
-- sales. Shared by the dashboard's inventory page (dashboard/inventory_queries.py) and the
-- low_days_of_supply alert rule, so both compute the same cover.
-- {distributors}: a query of the site_ids to include; {since}: {t} minus the sales window;
-- {window_s}: the window in seconds. Daily sales: tires adjusted with reason 'sold' in
-- ({since}, {t}], divided by the window in days, or by the time since the first stored event
-- when the history is shorter than the window (sales_window_days says which). No sales in the
-- window: no days of supply. Stock and in-transit stock are the live views.
WITH distributors AS ({distributors}),
stock AS (
    SELECT site_id, sku, on_hand FROM inventory_now
    WHERE site_id IN (SELECT site_id FROM distributors)
),
transit AS (
    SELECT destination_site_id AS site_id, sku, sum(in_transit)::BIGINT AS in_transit
    FROM in_transit_now
    WHERE destination_site_id IN (SELECT site_id FROM distributors)
    GROUP BY destination_site_id, sku
),
sales AS (
    SELECT site_id, sku, (-sum(delta))::BIGINT AS sold
    FROM events
    WHERE event_type = 'inventory.adjusted' AND reason = 'sold'
        AND occurred_at > {since} AND occurred_at <= {t}
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
