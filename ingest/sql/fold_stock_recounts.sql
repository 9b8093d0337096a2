-- Keys counted in this batch: their latest count (stock_counts, folded already) plus the
-- ledger's changes after it. The ledger is read from the earliest of those counts on, which its
-- zone maps mostly skip: counts arrive about as they happen.
INSERT INTO stock_levels
WITH recounted AS (
    SELECT c.site_id, c.sku, c.count_key.ts AS count_ts, c.on_hand
    FROM stock_counts AS c
    SEMI JOIN apply_events AS a
        ON a.event_type = 'inventory.counted' AND a.site_id = c.site_id AND a.sku = c.sku
)
SELECT r.site_id, r.sku, r.count_ts, r.on_hand + coalesce(sum(ch.delta), 0), 0
FROM recounted AS r
LEFT JOIN (
    SELECT site_id, sku, ts, delta FROM stock_changes
    WHERE ts > (SELECT min(count_ts) FROM recounted)
) AS ch ON ch.site_id = r.site_id AND ch.sku = r.sku AND ch.ts > r.count_ts
GROUP BY r.site_id, r.sku, r.count_ts, r.on_hand
ON CONFLICT (site_id, sku) DO UPDATE SET
    count_ts = excluded.count_ts, on_hand = excluded.on_hand;
