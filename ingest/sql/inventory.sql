-- On-hand stock per site and SKU: the latest count ({counts}: site_id, sku, count_ts, on_hand)
-- plus every change after it ({changes}: site_id, sku, ts, delta). A change at exactly the
-- count's instant is already in the count. Not clamped at zero. One pass over the changes
-- (their keys and their sum since the count together): they are the big input.
WITH counts AS ({counts}),
since_count AS (
    SELECT ch.site_id, ch.sku,
        sum(ch.delta) FILTER (WHERE c.count_ts IS NULL OR ch.ts > c.count_ts) AS delta
    FROM ({changes}) AS ch
    LEFT JOIN counts AS c USING (site_id, sku)
    GROUP BY ch.site_id, ch.sku
)
SELECT
    coalesce(c.site_id, s.site_id) AS site_id,
    coalesce(c.sku, s.sku) AS sku,
    (coalesce(c.on_hand, 0) + coalesce(s.delta, 0))::BIGINT AS on_hand,
    c.count_ts AS counted_at
FROM counts AS c
FULL OUTER JOIN since_count AS s USING (site_id, sku)
