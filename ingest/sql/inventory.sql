-- On-hand stock per site and SKU: the latest count ({counts}: site_id, sku, count_ts, on_hand)
-- plus every change after it ({changes}: site_id, sku, ts, delta). A change at exactly the
-- count's instant is already in the count. Not clamped at zero.
WITH counts AS ({counts}),
changes AS ({changes}),
keys AS (
    SELECT site_id, sku FROM counts
    UNION
    SELECT site_id, sku FROM changes
),
since_count AS (
    SELECT ch.site_id, ch.sku, sum(ch.delta) AS delta
    FROM changes AS ch
    LEFT JOIN counts AS c USING (site_id, sku)
    WHERE c.count_ts IS NULL OR ch.ts > c.count_ts
    GROUP BY ch.site_id, ch.sku
)
SELECT
    k.site_id,
    k.sku,
    (coalesce(c.on_hand, 0) + coalesce(s.delta, 0))::BIGINT AS on_hand,
    c.count_ts AS counted_at
FROM keys AS k
LEFT JOIN counts AS c USING (site_id, sku)
LEFT JOIN since_count AS s USING (site_id, sku)
